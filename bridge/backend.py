"""The contract between the neutral client and an engine, plus the shapes both sides share.

A backend is a small object that starts, signals, cancels and describes runs, and makes
workers. `bridge.Client` does the engine-independent work (argument encoding, registration
checks, result decoding) so every backend receives already-validated JSON data.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.history import HistoryEvent
from bridge.workflow import WorkflowDefinition

__all__ = [
    "SCHEDULE_OVERLAPS",
    "Backend",
    "ScheduleDescription",
    "ScheduleOverlap",
    "Status",
    "Worker",
    "WorkflowDescription",
]

#: What a schedule does when a fire comes while a run it started is still open (Temporal's
#: ScheduleOverlapPolicy SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER, TERMINATE_OTHER,
#: ALLOW_ALL).
ScheduleOverlap = Literal[
    "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"
]
SCHEDULE_OVERLAPS: tuple[str, ...] = get_args(ScheduleOverlap)


class Status(enum.StrEnum):
    PENDING = "PENDING"  # waiting for a worker
    RUNNING = "RUNNING"  # a worker holds it
    WAITING = "WAITING"  # suspended on a timer or a signal; no worker holds it
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


@dataclass(frozen=True)
class WorkflowDescription:
    """The state of one run. `result` is JSON data (the client decodes it to its type)."""

    id: str
    name: str
    status: Status
    created_at: datetime
    updated_at: datetime
    backend: str
    result: Any = None
    error: dict[str, Any] | None = None
    waiting_for: str | None = None
    #: Stopped by a NonDeterminismError: kept, not failed, until fixed code resumes it.
    blocked: bool = False
    #: The migration router's name for the engine that owns the run (`[engines.NAME]` or a
    #: backend's name); set by a routing client, None from a single engine's client.
    engine: str | None = None
    #: The run's search attributes by name (`bridge.search`), Python values; empty when it
    #: has none or the backend keeps none.
    search_attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleDescription:
    """A schedule and what it has done, the same on every engine.

    `args` is the JSON data the scheduled runs start with; `running` the ids of runs it
    started that are still open, `recent` the ids of its latest runs (oldest first).
    Run ids are `<schedule id>-<fire time, RFC 3339 UTC>`, as Temporal names them."""

    id: str
    workflow: str
    cron: str
    args: dict[str, Any]
    overlap: str
    catchup_window: float
    paused: bool
    backend: str
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    #: Runs started, fires skipped by the overlap policy, fires missed past the catch-up
    #: window (while no worker ran, on the embedded engines).
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    #: A fire waiting for the open run to end (overlap "buffer_one", "buffer_all",
    #: "cancel_other").
    buffered: bool = False
    running: tuple[str, ...] = ()
    recent: tuple[str, ...] = ()
    #: The IANA time zone the cron's times are read in.
    timezone: str = "UTC"
    note: str | None = None


class Worker(abc.ABC):
    """Runs workflows for a backend. Use `async with worker:` or `await worker.run()`."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Run until `stop()` is called."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    async def __aenter__(self) -> Worker:
        import asyncio

        self._background = asyncio.ensure_future(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        await self._background


class Backend(abc.ABC):
    """One engine. Arguments and results cross this boundary as JSON-compatible data."""

    name: ClassVar[str]
    #: What this engine supports; the compatibility harness skips scenarios it lacks.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: True for an engine whose native threads can crash the interpreter's teardown once a
    #: client was used; the `bridge` command then ends its process without that teardown,
    #: after flushing its output.
    unsafe_teardown: ClassVar[bool] = False

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def start(
        self,
        workflow: WorkflowDefinition[..., Any],
        args: dict[str, Any],
        *,
        id: str,
        execution_timeout: float | None = None,
    ) -> bool:
        """Start a run unless `id` exists; True when this call created it.

        `execution_timeout` (seconds, > 0) is the run's deadline, counted from its start:
        once it passes, the run is cancelled at its next operation (or woken from a wait to
        see it) and ends FAILED with error type `WorkflowTimeoutError`, on every engine. It
        is kept with the run, so it holds across worker restarts and continue-as-new. It
        applies only when this call creates the run.

        The client passes the keyword only when a timeout is asked for, so a backend
        written before timeouts existed (`start(self, workflow, args, *, id)`) keeps
        working; asked of such a backend, the client refuses with a ConfigError.

        A backend that keeps search attributes also takes `search_attributes=` (a new
        run's attributes, `bridge.search.encode_attributes` JSON), passed the same way."""

    @abc.abstractmethod
    async def describe(self, id: str) -> WorkflowDescription: ...

    @abc.abstractmethod
    async def wait(self, id: str, *, timeout: float | None) -> WorkflowDescription:
        """Block until run `id` is finished; its final description."""

    @abc.abstractmethod
    async def signal(self, id: str, name: str, payload: Any) -> None: ...

    @abc.abstractmethod
    async def cancel(self, id: str) -> None: ...

    @abc.abstractmethod
    async def history(self, id: str) -> list[HistoryEvent]: ...

    @abc.abstractmethod
    async def list(
        self, *, status: Status | None = None, limit: int = 100
    ) -> list[WorkflowDescription]:
        """The newest `limit` runs (with `status`, when given).

        A backend that keeps search attributes also takes `query=` (a `bridge.search`
        query the client has validated) and returns only the runs it matches; the client
        passes it only when asked, so a backend written before it keeps working."""

    @abc.abstractmethod
    def worker(self, *, workflows: Sequence[WorkflowDefinition[..., Any]]) -> Worker: ...

    async def close(self) -> None:
        """Release connections; the default has nothing to release."""

    async def run_dev_server(
        self, *, data_dir: Path, port: int, on_ready: Callable[[str, str | None], None]
    ) -> None:
        """Run a local server of this engine until cancelled (`bridge dev NAME`), keeping its
        state under `data_dir`; `on_ready(address, web_ui_address)` is called once it serves.

        Engines that run in-process (sql) have no server, hence the default.
        """
        raise ConfigError(f"the {self.name} backend has no local server to start")

    async def query(self, id: str, name: str, args: Sequence[Any]) -> Any:
        """Answer query `name` (with JSON `args`) of run `id` from the run's state, changing
        nothing; the answer as JSON data. Unknown names raise NotRegisteredError naming
        the run, the name and the run's queries (`bridge.workflow.answer_query`).

        Not abstract, so a backend written before queries existed keeps working, hence the
        default.
        """
        raise ConfigError(
            f"the {self.name} backend does not support queries (query {name!r} of workflow "
            f"{id!r}); use a backend that does (sql, langgraph, temporal)"
        )

    async def update(
        self,
        id: str,
        name: str,
        args: Sequence[Any],
        *,
        update_id: str,
        timeout: float | None = None,
    ) -> Any:
        """Deliver update `name` (with JSON `args`) to run `id` and return its handler's
        result as JSON data, exactly once per `update_id` (a second call with the same id
        answers the first result without running the handler again). Raises
        UpdateNotFoundError, UpdateRejectedError (nothing journaled), UpdateFailedError
        (the handler raised), WorkflowClosedError (a finished run, for a new update id),
        TimeoutWaitingError (`timeout` passed first; the update may still be applied).

        Not abstract, so a backend written before updates existed keeps working, hence the
        default.
        """
        raise ConfigError(
            f"the {self.name} backend does not support updates (update {name!r} of workflow "
            f"{id!r}); use a backend that does (sql, langgraph, temporal)"
        )

    async def replay(self, history: str, workflow: WorkflowDefinition[..., Any]) -> int:
        """Replay a history recorded by this engine (its own JSON export) against the current
        code of `workflow`; the number of events replayed, or NonDeterminismError.

        Only engines that keep their own history format can do this, hence the default.
        """
        raise ConfigError(f"the {self.name} backend cannot replay recorded histories")

    async def export_history(self, id: str) -> str:
        """Run `id`'s history in this engine's own JSON format, the one `replay` reads
        (recorded as a replay artefact by `bridge.testing.replay`).

        Only engines that keep their own history format have one, hence the default.
        """
        raise ConfigError(f"the {self.name} backend keeps no history format of its own")

    # -- schedules (`Client.schedule`) ----------------------------------------------------
    # Not abstract, so a backend written before schedules existed keeps working; each
    # default refuses with the same error.
    def _no_schedules(self, id: str) -> ConfigError:
        return ConfigError(
            f"the {self.name} backend does not support schedules (schedule {id!r}); use a "
            f"backend that does (sql, langgraph, temporal)"
        )

    async def create_schedule(
        self,
        workflow: WorkflowDefinition[..., Any],
        args: dict[str, Any],
        *,
        id: str,
        cron: str,
        overlap: str,
        catchup_window: float,
        paused: bool,
        timezone: str = "UTC",
    ) -> None:
        """Create schedule `id`: start `workflow(args)` at each time of `cron` (5 fields,
        read in the IANA `timezone`). Raises ScheduleAlreadyExistsError for a taken id.
        The client passes `timezone` only when it is not UTC, so a backend written before
        it existed keeps working for UTC schedules."""
        raise self._no_schedules(id)

    async def describe_schedule(self, id: str) -> ScheduleDescription:
        raise self._no_schedules(id)

    async def list_schedules(self) -> list[ScheduleDescription]:
        raise self._no_schedules("*")

    async def pause_schedule(self, id: str, note: str | None = None) -> None:
        raise self._no_schedules(id)

    async def resume_schedule(self, id: str) -> None:
        """Fire again from now on; times that passed while paused are not caught up."""
        raise self._no_schedules(id)

    async def delete_schedule(self, id: str) -> None:
        """Remove the schedule; runs it started go on."""
        raise self._no_schedules(id)

    async def trigger_schedule(self, id: str) -> None:
        """Fire now, under the schedule's overlap policy (also while paused)."""
        raise self._no_schedules(id)

    async def backfill_schedule(self, id: str, start: datetime, end: datetime) -> None:
        """Take the fires of times in [`start`, `end`] now, as if they had just passed,
        under the schedule's overlap policy (Temporal's ScheduleBackfill)."""
        raise self._no_schedules(id)
