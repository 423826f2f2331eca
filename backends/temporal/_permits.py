"""Concurrency permits (`bridge.Limit`) and rate buckets (`bridge.RateLimit`) on Temporal.

Rate buckets: `bridge.rate` (workflow id `bridge-rate:<key>`) keeps a token bucket; an
attempt reserves its slot with an update-with-start whose answer is the time the slot
begins, and waits for it in the activity. The workflow's clock is the start of the task
that answers, earlier than the moment the answer reaches the activity by the round trip,
so every slot is set `SLOT_LEAD` seconds later than the bucket says: the spacing between
slots is the bucket's, and an attempt answered late does not start closer to the next.

Concurrency permits: one semaphore workflow per key.
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

from bridge.concurrency import reserve

__all__ = [
    "BRIDGE_WORKFLOWS",
    "PERMITS_WORKFLOW",
    "RATE_WORKFLOW",
    "PermitsWorkflow",
    "RateWorkflow",
    "held_permit",
    "take_token",
]

#: The workflow type of the semaphores; `bridge list` leaves them out.
PERMITS_WORKFLOW = "bridge.permits"
_ID_PREFIX = "bridge-permits:"
#: The workflow type of the rate buckets.
RATE_WORKFLOW = "bridge.rate"
_RATE_PREFIX = "bridge-rate:"
#: How much later than the bucket's time a slot begins (see the module docstring): more
#: than an update's round trip on a loaded worker, little beside a rate-limited call.
SLOT_LEAD = 0.25


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


@workflow.defn(name=RATE_WORKFLOW)
class RateWorkflow:
    """One token bucket (see the module docstring); its clock is the workflow's."""

    @workflow.init
    def __init__(self, state: dict[str, Any]) -> None:
        self._tokens: float | None = state.get("tokens")
        self._updated = float(state.get("updated_at", 0.0))

    @workflow.run
    async def run(self, state: dict[str, Any]) -> None:
        await workflow.wait_condition(
            lambda: (
                workflow.info().is_continue_as_new_suggested() and workflow.all_handlers_finished()
            )
        )
        workflow.continue_as_new({"tokens": self._tokens, "updated_at": self._updated})

    @workflow.update
    def take(self, per_second: float, burst: int) -> float:
        """Reserve the next token: the time (epoch seconds) the caller may use it from."""
        now = workflow.now().timestamp()
        tokens = float(burst) if self._tokens is None else self._tokens
        updated = now if self._tokens is None else self._updated
        self._tokens, ready_at = reserve(tokens, updated, now, per_second, burst)
        self._updated = now
        return ready_at + SLOT_LEAD


#: Registered by every bridge worker beside the workflow class that runs user code.
BRIDGE_WORKFLOWS = (PermitsWorkflow, RateWorkflow)


async def take_token(key: str, per_second: float, burst: int) -> float:
    """Reserve a token of bucket `key` from inside an activity: the time to start at."""
    start = WithStartWorkflowOperation(
        RateWorkflow.run,
        {},
        id=f"{_RATE_PREFIX}{key}",
        task_queue=activity.info().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await activity.client().execute_update_with_start_workflow(
        RateWorkflow.take, args=[per_second, burst], start_workflow_operation=start
    )
