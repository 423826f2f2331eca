"""Completion events: a finished run published on the bus, whichever engine ran it.

The convention (kept identical by the SQL backend, which writes these events in the
transaction that finishes the run): type `bridge.workflow.completed.v1` or
`bridge.workflow.failed.v1`, source `bridge.workflows`, id `{workflow_id}/completed` or
`{workflow_id}/failed`, subject the workflow id, data `{"workflow_id", "workflow", "engine",
"result"}` or `{..., "error"}`. The id is deterministic, so the same run published twice (by
two watchers, or by a watcher and the outbox) is one event to every transport.

Engines without an in-transaction outbox get theirs from a `CompletionWatcher`, which awaits
each run the router or a dispatcher started and publishes when it finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.backend import Status, WorkflowDescription
from bridge.bus.envelope import Event
from bridge.bus.transport import Transport
from bridge.errors import WorkflowNotFoundError
from bridge.tracing import TRACEPARENT, TRACESTATE

if TYPE_CHECKING:
    from bridge.client import Client

__all__ = [
    "WORKFLOW_COMPLETED",
    "WORKFLOW_FAILED",
    "WORKFLOW_SOURCE",
    "CompletionWatcher",
    "completion_event",
    "event_for",
]

WORKFLOW_COMPLETED = "bridge.workflow.completed.v1"
WORKFLOW_FAILED = "bridge.workflow.failed.v1"
WORKFLOW_SOURCE = "bridge.workflows"

log = logging.getLogger("bridge.bus")

_CANCELLED = {"error_type": "WorkflowCancelledError", "message": "the run was cancelled"}


def completion_event(
    *,
    workflow_id: str,
    workflow: str,
    engine: str,
    status: Status,
    result: Any = None,
    error: dict[str, Any] | None = None,
    time: datetime | None = None,
    trace: Mapping[str, str] | None = None,
) -> Event:
    """The event for a run that ended with `status` (COMPLETED, or FAILED / CANCELLED,
    both published as failed: a cancelled run did not produce its result). `trace` is the
    run's W3C trace context (its start headers), carried as the event's `traceparent` and
    `tracestate` so a consumer of the completion continues the run's trace."""
    if not status.is_terminal:
        raise ValueError(f"workflow {workflow_id!r} is {status.value}, not finished")
    ok = status is Status.COMPLETED
    data: dict[str, Any] = {"workflow_id": workflow_id, "workflow": workflow, "engine": engine}
    if ok:
        data["result"] = result
    else:
        data["error"] = error or (_CANCELLED if status is Status.CANCELLED else {})
    extra: dict[str, Any] = {"time": time} if time is not None else {}
    carried = {k: v for k, v in (trace or {}).items() if k in (TRACEPARENT, TRACESTATE)}
    if carried:
        extra["extensions"] = carried
    return Event(
        id=f"{workflow_id}/{'completed' if ok else 'failed'}",
        source=WORKFLOW_SOURCE,
        type=WORKFLOW_COMPLETED if ok else WORKFLOW_FAILED,
        subject=workflow_id,
        data=data,
        **extra,
    )


def event_for(desc: WorkflowDescription, *, engine: str) -> Event:
    """The completion event of a finished run's description."""
    return completion_event(
        workflow_id=desc.id,
        workflow=desc.name,
        engine=engine,
        status=desc.status,
        result=desc.result,
        error=desc.error,
        time=desc.updated_at if desc.updated_at.tzinfo is not None else None,
    )


class CompletionWatcher:
    """Awaits runs and publishes each one's completion event once it finishes.

    One task per watched id (watching an id twice is one watch). `on_closed(id, status)` is
    called after the event is published, so a route is only closed once its event is out.
    A blocked run (NonDeterminismError) is not finished: it is checked again every
    `blocked_recheck` seconds until fixed code finishes it.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        on_closed: Callable[[str, Status], None] | None = None,
        blocked_recheck: float = 5.0,
        retry_delay: float = 1.0,
    ) -> None:
        self.transport = transport
        self._on_closed = on_closed
        self._blocked_recheck = blocked_recheck
        self._retry_delay = retry_delay
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, client: Client, workflow_id: str, *, engine: str) -> None:
        if workflow_id in self._tasks:
            return
        task = asyncio.create_task(
            self._watch(client, workflow_id, engine), name=f"bridge-completion:{workflow_id}"
        )
        self._tasks[workflow_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(workflow_id, None))

    @property
    def watching(self) -> int:
        return len(self._tasks)

    async def _watch(self, client: Client, workflow_id: str, engine: str) -> None:
        while True:
            try:
                desc = await client.backend.wait(workflow_id, timeout=None)
                if desc.blocked:
                    await asyncio.sleep(self._blocked_recheck)
                    continue
                await self.transport.publish(event_for(desc, engine=engine))
                if self._on_closed is not None:
                    self._on_closed(workflow_id, desc.status)
                return
            except WorkflowNotFoundError:
                # Routed but never started (the starter died between the two writes): there
                # is nothing to publish until someone starts it, and a start watches it anew.
                log.warning(
                    "not watching %r on %s: the engine has no such run", workflow_id, engine
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                # A storage or transport hiccup must not lose the completion: try again.
                log.exception("publishing the completion of %r failed; retrying", workflow_id)
                await asyncio.sleep(self._retry_delay)

    async def close(self) -> None:
        """Stop watching (runs still open are watched again by whoever restarts)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
