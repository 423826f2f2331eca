"""The `Backend` every journal backend shares: start, describe, wait, signal, cancel, list.

A backend subclasses `JournalBackend` with class-level knobs (`name`, its settings
`section`, its worker class) and `open_store()`; the langgraph backend also overrides
`journal(id)` to merge LangGraph's task writes into the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from bridge import codec, interceptors
from bridge.backend import Backend, ScheduleDescription, Status, WorkflowDescription
from bridge.config import JournalSettings, Settings
from bridge.errors import (
    TimeoutWaitingError,
    UpdateFailedError,
    UpdateNotFoundError,
    UpdateRejectedError,
    WorkflowClosedError,
)
from bridge.history import HistoryEvent, utc
from bridge.journal.context import COMPLETED, FAILED, StepRecord, replay_for_query
from bridge.journal.history import build_history
from bridge.journal.schedules import Schedules
from bridge.journal.store import JournalStore
from bridge.journal.worker import JournalWorker
from bridge.search import decode_attributes, parse
from bridge.workflow import WorkflowDefinition, answer_query, lookup_workflow

# A waiter re-reads the run (a worker in another process may finish it) after a pause
# that starts short and doubles up to a cap, so hundreds of waiters cost little; a local
# worker wakes its run's waiters at once instead.
_WAIT_POLL_FIRST = 0.02
_WAIT_POLL_MAX = 0.25


class JournalBackend(Backend):
    """A backend whose runs live in a `JournalStore`; see the module docstring."""

    #: The settings section of this backend ("sql", "langgraph").
    section: ClassVar[str]
    worker_class: ClassVar[type[JournalWorker]]
    capabilities = frozenset(
        {
            "heartbeats",
            "execution_timeout",
            "signals",
            "signal_timeout",
            "durable_sleep",
            "gather",
            "patched",
            "compensation",
            "cancellation",
            "multi_worker",
            "history_export",
            "queries",
            "updates",
            "wait_condition",
            "continue_as_new",
            "child_workflows",
            "crash_resume",
            "idempotent_start",
            "non_determinism_detection",
        }
    )

    def __init__(self, *, settings: Settings) -> None:
        super().__init__(settings=settings)
        self.journal_settings: JournalSettings = getattr(settings, self.section)
        #: The interceptor chain of this client or worker (`bridge.interceptors`).
        self.interceptors = interceptors.load(settings)
        self.store = self.open_store(self.interceptors)
        #: The schedules table and the scheduler its workers run (`bridge.journal.schedules`).
        self.schedules = Schedules(self.store, backend=self.name)
        self._workers: set[JournalWorker] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def open_store(self, chain: Sequence[interceptors.Interceptor]) -> JournalStore:
        """The store on `journal_settings`, calling `chain` in its transactions."""
        raise NotImplementedError

    def journal(self, id: str) -> list[StepRecord]:
        """Run `id`'s whole journal, for its history."""
        return self.store.load_steps(id)

    # -- in-process wake-ups ------------------------------------------------------------
    def attach(self, worker: JournalWorker) -> None:
        self._workers.add(worker)

    def detach(self, worker: JournalWorker) -> None:
        self._workers.discard(worker)

    def _wake_workers(self) -> None:
        for w in self._workers:
            w.wake()

    def wake_workers(self) -> None:
        """Wake this process's workers (a run started or woke another: a child, a parent)."""
        self._wake_workers()

    def notify(self, id: str) -> None:
        """A local worker finished or parked run `id`: wake its local waiters."""
        for fut in self._waiters.pop(id, []):
            if not fut.done():
                fut.set_result(None)

    # -- Backend ------------------------------------------------------------------------
    async def start(
        self,
        workflow: WorkflowDefinition[..., Any],
        args: dict[str, Any],
        *,
        id: str,
        execution_timeout: float | None = None,
        search_attributes: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bool:
        """Create the run (with its durable deadline when `execution_timeout` is given, its
        search attributes and its start `headers`, `JournalStore.create_run`) and wake
        this process's workers."""
        created = self.store.create_run(
            id,
            workflow.name,
            args,
            execution_timeout=execution_timeout,
            search_attributes=search_attributes,
            headers=headers,
        )
        self._wake_workers()
        return created

    async def describe(self, id: str) -> WorkflowDescription:
        row = self.store.get_run(id)
        return self._describe(row, self.store.read_attributes([id]).get(id))

    async def wait(self, id: str, *, timeout: float | None) -> WorkflowDescription:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _WAIT_POLL_FIRST
        while True:
            # The attributes are read once, at the end: a poll needs only the run's row.
            row = self.store.get_run(id)
            desc = self._describe(row)
            if desc.status.is_terminal or desc.blocked:
                return self._describe(row, self.store.read_attributes([id]).get(id))
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutWaitingError(
                    f"workflow {id!r} is still {desc.status.value.lower()} after {timeout}s"
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(id, []).append(fut)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        fut, pause if remaining is None else min(pause, remaining)
                    )
            finally:
                pending = self._waiters.get(id, [])
                if fut in pending:
                    pending.remove(fut)
                if not pending:
                    self._waiters.pop(id, None)
            pause = min(pause * 2, _WAIT_POLL_MAX)

    async def signal(self, id: str, name: str, payload: Any) -> None:
        self.store.add_signal(id, name, payload)
        self._wake_workers()

    async def cancel(self, id: str) -> None:
        self.store.request_cancel(id)
        self._wake_workers()

    async def query(self, id: str, name: str, args: Sequence[Any]) -> Any:
        """Answer query `name` from the run's live context when a worker of this process
        executes it past its journal; otherwise (a run parked, finished, held by another
        process, or being replayed) from a replay of its journal in this process, which
        needs the workflow registered here and writes nothing."""
        for worker in self._workers:
            ctx = worker.context_of(id)
            if ctx is not None and not ctx.is_replaying:
                return answer_query(ctx.query_handlers, id, name, args)
        run = self.store.get_run(id)
        ctx = await replay_for_query(
            lookup_workflow(run.name),
            workflow_id=id,
            steps=self.journal(id),
            args=codec.loads(run.input),
            started_at=run.created_at,
            cancel_requested=bool(run.cancel_requested),
        )
        return answer_query(ctx.query_handlers, id, name, args)

    async def update(
        self,
        id: str,
        name: str,
        args: Sequence[Any],
        *,
        update_id: str,
        timeout: float | None = None,
    ) -> Any:
        """Record the request (once per `update_id`), wake the run, and wait for a worker
        to reject it or to journal it and settle its row (`JournaledContext.deliver_updates`).

        The outcome is read from the journal, so asking again with the same id (after a
        timeout, a crash of this process or of the worker) returns the first result and
        never runs the handler again."""
        self.store.add_update(id, update_id, name, args)
        self._wake_workers()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _WAIT_POLL_FIRST
        while True:
            state, found = self.store.update_outcome(id, update_id)
            if state == "rejected":
                error = UpdateNotFoundError if found.get("not_found") else UpdateRejectedError
                if error is UpdateNotFoundError:
                    raise UpdateNotFoundError(str(found.get("message", "")))
                raise UpdateRejectedError(
                    str(found.get("message", "")),
                    error_type=str(found.get("error_type", "")),
                    reason=str(found.get("reason", "")),
                )
            if state == "accepted" and found is not None and found.status == COMPLETED:
                return found.output
            if state == "accepted" and found is not None and found.status == FAILED:
                error_info = found.error or {}
                raise UpdateFailedError(
                    f"update {name!r} of workflow {id!r} failed: "
                    f"{error_info.get('error_type', 'Error')}: {error_info.get('message', '')}",
                    error_type=str(error_info.get("error_type", "")),
                    reason=str(error_info.get("message", "")),
                )
            run = self.store.get_run(id)
            if Status(run.status).is_terminal:
                if self.store.update_outcome(id, update_id)[0] != state:
                    continue  # settled just before the run ended: read it again
                if state == "accepted":
                    raise UpdateFailedError(
                        f"update {name!r} of workflow {id!r} was accepted but the run "
                        f"ended ({run.status.lower()}) before its handler finished",
                        error_type="WorkflowClosedError",
                    )
                raise WorkflowClosedError(
                    id,
                    run.status,
                    f"deliver update {name!r} (update id {update_id!r}) to",
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutWaitingError(
                    f"update {name!r} (update id {update_id!r}) of workflow {id!r} has no "
                    f"outcome after {timeout}s (it is {state}); call again with the same "
                    f"update id to keep waiting: it is applied at most once"
                )
            await asyncio.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, _WAIT_POLL_MAX)

    async def history(self, id: str) -> list[HistoryEvent]:
        run = self.store.get_run(id)
        return build_history(run, self.journal(id))

    async def list(
        self, *, status: Status | None = None, limit: int = 100, query: str | None = None
    ) -> list[WorkflowDescription]:
        """The newest runs, filtered by `status` and by `query` (`bridge.search`), which
        the store runs as SQL over the attributes table."""
        rows = self.store.list_runs(status, limit, None if query is None else parse(query))
        attributes = self.store.read_attributes([r.id for r in rows])
        return [self._describe(r, attributes.get(r.id)) for r in rows]

    def worker(self, *, workflows: Sequence[WorkflowDefinition[..., Any]]) -> JournalWorker:
        return self.worker_class(self, workflows)

    async def close(self) -> None:
        self.store.close()

    def _describe(
        self, row: Any, attributes: dict[str, dict[str, Any]] | None = None
    ) -> WorkflowDescription:
        return WorkflowDescription(
            id=row.id,
            name=row.name,
            status=Status(row.status),
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
            backend=self.name,
            result=codec.loads(row.result),
            error=codec.loads(row.error),
            waiting_for=row.waiting_for,
            blocked=bool(row.blocked),
            search_attributes=decode_attributes(attributes or {}),
        )

    # -- schedules (`bridge.journal.schedules`) -----------------------------------------
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
        self.schedules.create(
            id,
            workflow.name,
            args,
            cron=cron,
            overlap=overlap,
            catchup_window=catchup_window,
            paused=paused,
            timezone=timezone,
        )

    async def describe_schedule(self, id: str) -> ScheduleDescription:
        return self.schedules.describe(id)

    async def list_schedules(self) -> list[ScheduleDescription]:
        return self.schedules.list()

    async def pause_schedule(self, id: str, note: str | None = None) -> None:
        self.schedules.pause(id, note)

    async def resume_schedule(self, id: str) -> None:
        self.schedules.resume(id)
        self._wake_workers()

    async def delete_schedule(self, id: str) -> None:
        self.schedules.delete(id)

    async def trigger_schedule(self, id: str) -> None:
        self.schedules.trigger(id)
        self._wake_workers()

    async def backfill_schedule(self, id: str, start: datetime, end: datetime) -> None:
        self.schedules.backfill(id, start, end)
        self._wake_workers()
