"""Concurrency permits (`bridge.Limit`) on Temporal: one semaphore workflow per key.

Temporal has no limit by key across workers (a worker's `max_concurrent_activities` counts
its own slots, a task queue's rate limit counts starts per second). The Temporal samples'
answer is a lock workflow that hands out permits in order; this is that pattern, counted:
`bridge.permits` (workflow id `bridge-permits:<key>`) holds at most `limit` holders and a
first come, first served queue, in its own durable state.

An attempt of a limited activity asks for a permit with an update-with-start (the workflow
is started by the first caller) whose handler returns once the holder is granted; the
attempt then runs and gives the permit back with a signal. The holder is the step
(`<workflow id>#<step>`), so a retry, or the attempt a new worker makes after one died,
finds the permit already granted. The queue wait happens inside the attempt, so on Temporal
it counts toward the activity's start-to-close timeout, unlike on the journal engines,
where a queued step parks its run. A holder whose workflow is terminated while it holds a
permit keeps it (no code of that run runs again); `release` it by signal if that happens.

The semaphore continues as new when Temporal suggests it and no caller is waiting, carrying
its holders and queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity, workflow
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

__all__ = ["PERMITS_WORKFLOW", "PermitsWorkflow", "held_permit"]

#: The workflow type of the semaphores; `bridge list` leaves them out.
PERMITS_WORKFLOW = "bridge.permits"
_ID_PREFIX = "bridge-permits:"


@workflow.defn(name=PERMITS_WORKFLOW)
class PermitsWorkflow:
    """The holders and queue of one key's permits (see the module docstring)."""

    @workflow.init
    def __init__(self, state: dict[str, Any]) -> None:
        # In __init__ (workflow.init), not in run: the update-with-start that created the
        # workflow, and others sent with it, run their handlers before `run` begins.
        self._limit = int(state.get("limit", 1))
        self._held: list[str] = list(state.get("held", []))
        self._queue: list[str] = list(state.get("queue", []))

    @workflow.run
    async def run(self, state: dict[str, Any]) -> None:
        self._grant()
        await workflow.wait_condition(
            lambda: (
                workflow.info().is_continue_as_new_suggested()
                and not self._queue
                and workflow.all_handlers_finished()
            )
        )
        workflow.continue_as_new({"limit": self._limit, "held": self._held, "queue": self._queue})

    @workflow.update
    async def acquire(self, holder: str, limit: int) -> None:
        """Returns once `holder` holds a permit (at once when it already does)."""
        self._limit = limit  # the code's current limit: a deploy that changes it applies
        if holder not in self._held and holder not in self._queue:
            self._queue.append(holder)
        self._grant()
        await workflow.wait_condition(lambda: holder in self._held)

    @workflow.signal
    def release(self, holder: str) -> None:
        """Give back `holder`'s permit, or take it out of the queue."""
        if holder in self._held:
            self._held.remove(holder)
        if holder in self._queue:
            self._queue.remove(holder)
        self._grant()

    @workflow.query
    def state(self) -> dict[str, Any]:
        return {"limit": self._limit, "held": list(self._held), "queue": list(self._queue)}

    def _grant(self) -> None:
        while self._queue and len(self._held) < self._limit:
            self._held.append(self._queue.pop(0))


@contextlib.asynccontextmanager
async def held_permit(key: str, holder: str, limit: int) -> AsyncIterator[None]:
    """Hold a permit of `key` for the body of the `async with`, from inside an activity."""
    client = activity.client()
    id = f"{_ID_PREFIX}{key}"
    start = WithStartWorkflowOperation(
        PermitsWorkflow.run,
        {"limit": limit},
        id=id,
        task_queue=activity.info().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    await client.execute_update_with_start_workflow(
        PermitsWorkflow.acquire,
        args=[holder, limit],
        start_workflow_operation=start,
    )
    try:
        yield
    finally:
        await client.get_workflow_handle(id).signal(PermitsWorkflow.release, holder)
