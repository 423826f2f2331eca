"""`bridge.connect()` and the Client: the one API for every backend.

The client validates and encodes on the caller's side, so a bad argument fails at `start`
with the parameter's name, before anything reaches an engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge import codec
from bridge.backend import Backend, Status, Worker, WorkflowDescription
from bridge.config import Settings, load_settings
from bridge.errors import (
    NotRegisteredError,
    WorkflowBlockedError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from bridge.history import HistoryEvent
from bridge.plugins import registry
from bridge.workflow import WorkflowDefinition, as_workflow, lookup_workflow, registered_workflows

__all__ = ["Client", "WorkflowHandle", "connect"]


async def connect(config: Settings | Mapping[str, Any] | None = None) -> Client:
    """A client for the configured backend (bridge.toml, pyproject, BRIDGE_* env)."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    backend = registry().create(settings.backend, settings)
    return Client(backend=backend, settings=settings)


@dataclass(frozen=True)
class WorkflowHandle:
    """A started run, by id."""

    client: Client
    id: str
    created: bool

    async def result(self, *, timeout: float | None = None) -> Any:
        return await self.client.result(self.id, timeout=timeout)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self.client.signal(self.id, name, payload)

    async def cancel(self) -> None:
        await self.client.cancel(self.id)

    async def describe(self) -> WorkflowDescription:
        return await self.client.describe(self.id)

    async def history(self) -> list[HistoryEvent]:
        return await self.client.history(self.id)


class Client:
    """Start, signal, cancel and inspect runs; make workers."""

    def __init__(self, *, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings

    @property
    def backend_name(self) -> str:
        return self.backend.name

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.backend.close()

    async def start(
        self, workflow: WorkflowDefinition[..., Any], *args: Any, id: str | None = None
    ) -> WorkflowHandle:
        """Start `workflow(*args)` as run `id`. An existing id is not started again: the
        handle points at that run (and its recorded result, if it finished)."""
        defn = as_workflow(workflow)
        encoded = defn.shape.encode_args(args, {})
        run_id = id or str(uuid.uuid4())
        created = await self.backend.start(defn, encoded, id=run_id)
        return WorkflowHandle(client=self, id=run_id, created=created)

    async def execute(
        self,
        workflow: WorkflowDefinition[..., Any],
        *args: Any,
        id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Start (or reattach to) a run and wait for its result; needs a running worker."""
        handle = await self.start(workflow, *args, id=id)
        return await handle.result(timeout=timeout)

    async def result(self, id: str, *, timeout: float | None = None) -> Any:
        """The run's result, decoded to the workflow's return type when it is registered
        here; raises WorkflowFailedError / WorkflowCancelledError for those outcomes."""
        desc = await self.backend.wait(id, timeout=timeout)
        return self.outcome(desc)

    def outcome(self, desc: WorkflowDescription) -> Any:
        """The decoded result of a finished (or blocked) run, or its error raised."""
        if desc.blocked:
            raise WorkflowBlockedError(desc.id, str((desc.error or {}).get("message", "")))
        if desc.status is Status.FAILED:
            error = desc.error or {}
            raise WorkflowFailedError(
                desc.id, str(error.get("error_type", "Error")), str(error.get("message", ""))
            )
        if desc.status is Status.CANCELLED:
            raise WorkflowCancelledError(desc.id)
        try:
            defn = lookup_workflow(desc.name)
        except NotRegisteredError:
            return desc.result
        return defn.shape.decode_result(desc.result)

    async def signal(self, id: str, name: str, payload: Any = None) -> None:
        """Deliver signal `name` to run `id`; it is kept until the workflow waits for it."""
        data = codec.to_jsonable(payload, where=f"signal {name!r} payload")
        await self.backend.signal(id, name, data)

    async def cancel(self, id: str) -> None:
        await self.backend.cancel(id)

    async def describe(self, id: str) -> WorkflowDescription:
        return await self.backend.describe(id)

    async def history(self, id: str) -> list[HistoryEvent]:
        return await self.backend.history(id)

    async def list(
        self, *, status: Status | str | None = None, limit: int = 100
    ) -> list[WorkflowDescription]:
        wanted = Status(status.upper()) if isinstance(status, str) else status
        return await self.backend.list(status=wanted, limit=limit)

    def worker(self, workflows: Sequence[WorkflowDefinition[..., Any]] | None = None) -> Worker:
        """A worker for `workflows` (default: every workflow registered in this process)."""
        chosen = (
            [as_workflow(w) for w in workflows]
            if workflows is not None
            else list(registered_workflows().values())
        )
        return self.backend.worker(workflows=chosen)
