"""The LangGraph backend's worker: finds runs to advance and drives their LangGraph threads.

LangGraph resumes nothing by itself. The worker claims runs from the bridge's runs table
(new ones, ones whose timer is due or that got a signal, and ones whose worker died, which
is recovery) and, for each, reads the thread's latest checkpoint to decide how to advance
it:

- no checkpoint: invoke the entrypoint with the run's input (a run that crashed before
  LangGraph saved its input checkpoint starts again, as nothing durable happened);
- a final checkpoint: the thread finished but the bridge had not recorded it (a crash in
  between): record its output;
- a pending interrupt: answer the wait once its signal has arrived or its timer is due
  (`Store.settle_wait`, written before the resume), or park the run;
- otherwise (killed mid-run, or blocked by a NonDeterminismError): `invoke(None)`, which
  re-runs the entrypoint and replays finished steps from their task writes.

Leases, fencing and dead-owner detection work as in the sql backend's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langgraph.types import Command

from backends.langgraph._graph import (
    WAIT_MARK,
    Abandoned,
    Execution,
    invoke,
    record_from_json,
    wait_answer,
)
from backends.langgraph._store import SETTLED, owner_id
from bridge import codec
from bridge._replay import StepRecord
from bridge.backend import Status, Worker
from bridge.errors import StorageError
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from langgraph.checkpoint.base import CheckpointTuple

    from backends.langgraph._backend import LangGraphBackend


log = logging.getLogger("bridge.langgraph.worker")

# LangGraph's channels in a checkpoint (langgraph/_internal/_constants.py: private there, but
# part of the stored checkpoint format).
END_CHANNEL = "__end__"
RETURN_CHANNEL = "__return__"
INTERRUPT_CHANNEL = "__interrupt__"

# Look for dead owners on this host every few polls (every second at the default poll
# interval): a restarted worker takes a killed one's runs over that quickly.
_DEAD_OWNER_CHECK_POLLS = 5
# Stop starting work this fraction of a lease before it runs out: clocks of workers on
# different hosts are close, not equal.
_LEASE_MARGIN = 0.2


def thread_config(id: str) -> dict[str, Any]:
    """LangGraph's config for the thread of run `id`: the thread id is the workflow id."""
    return {"configurable": {"thread_id": id}}


def task_records(tup: CheckpointTuple | None) -> list[StepRecord]:
    """The finished steps LangGraph holds for a checkpoint: its step tasks' writes."""
    if tup is None:
        return []
    found = (
        record_from_json(v) for _, channel, v in tup.pending_writes if channel == RETURN_CHANNEL
    )
    return [r for r in found if r is not None]


def journal(own: list[StepRecord], finished: list[StepRecord]) -> list[StepRecord]:
    """The run's whole journal: the bridge's rows, overridden by LangGraph's finished steps
    (a step that retried has a retrying row of its own and its final record in LangGraph)."""
    by_idx = {r.idx: r for r in own}
    by_idx.update((r.idx, r) for r in finished)
    return [by_idx[i] for i in sorted(by_idx)]


def pending_wait(tup: CheckpointTuple) -> tuple[int, str] | None:
    """(journal index, interrupt id) of the wait the thread is interrupted on, if any."""
    for _, channel, value in tup.pending_writes:
        if channel != INTERRUPT_CHANNEL:
            continue
        for item in value:
            question = getattr(item, "value", None)
            if isinstance(question, dict) and WAIT_MARK in question:
                return int(question[WAIT_MARK]), str(item.id)
    return None


class _RunJournal:
    """The RunJournal of one run: the bridge's own rows, written synchronously."""

    def __init__(self, worker: LangGraphWorker, id: str) -> None:
        self._worker = worker
        self._id = id

    async def write(self, *records: StepRecord) -> None:
        self._worker.backend.store.write_steps(records)

    def lease_ok(self) -> bool:
        return self._worker.lease_ok(self._id)

    async def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        # Part of the RunJournal protocol for JournaledContext.wait_for_signal, which
        # GraphContext replaces: here a wait is an interrupt that the worker answers.
        raise NotImplementedError("the LangGraph backend answers waits through interrupts")


class LangGraphWorker(Worker):
    def __init__(
        self, backend: LangGraphBackend, workflows: Sequence[WorkflowDefinition[..., Any]]
    ) -> None:
        self.backend = backend
        self.definitions = {w.name: w for w in workflows}
        self.owner = owner_id()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._executions: dict[str, Execution] = {}
        # When each held lease runs out by this worker's own account; past it another worker
        # may claim the run, so this one must not start a side effect or write its journal.
        self._lease_until: dict[str, float] = {}
        self._margin = backend.settings.langgraph.lease_seconds * _LEASE_MARGIN
        self._stopping = False
        self._wake: asyncio.Event | None = None

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def lease_ok(self, id: str) -> bool:
        return time.time() < self._lease_until.get(id, 0.0) - self._margin

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        settings = self.backend.settings.langgraph
        names = list(self.definitions)
        self._wake = asyncio.Event()
        self.backend.attach(self)
        heartbeat_every = settings.lease_seconds / 3
        dead_check_every = settings.poll_interval * _DEAD_OWNER_CHECK_POLLS
        last_heartbeat = last_dead_check = 0.0
        unblocked = False
        try:
            while not self._stopping:
                delay = settings.poll_interval
                try:
                    if names and not unblocked:
                        self.backend.store.unblock(names)
                        unblocked = True
                    now = time.monotonic()
                    if now - last_heartbeat >= heartbeat_every:
                        self._heartbeat()
                        last_heartbeat = now
                    if now - last_dead_check >= dead_check_every:
                        self.backend.store.expire_dead_owners()
                        last_dead_check = now
                    delay = self._claim_and_spawn(names, settings.max_concurrency)
                    next_timer = self.backend.store.next_timer()
                    if next_timer is not None:
                        delay = min(delay, max(0.0, next_timer - time.time()))
                except StorageError as exc:
                    # The database is locked or away: keep the runs held, try again shortly.
                    log.warning("worker cannot reach its database: %s", exc)
                delay = min(delay, heartbeat_every)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
        finally:
            self.backend.detach(self)
            await self._shutdown()

    def _claim_and_spawn(self, names: list[str], max_concurrency: int) -> float:
        """Claim what this worker has room for; the delay before the next look."""
        free = max_concurrency - len(self._tasks)
        if free <= 0 or not names:
            return self.backend.settings.langgraph.poll_interval
        claimed_at = time.time()
        claimed = self.backend.store.claim(self.owner, names, free)
        for row in claimed:
            self._lease_until[row.id] = claimed_at + self.backend.settings.langgraph.lease_seconds
            self._tasks[row.id] = asyncio.ensure_future(self._execute(row))
        if claimed and len(claimed) == free:
            return 0.0
        return self.backend.settings.langgraph.poll_interval

    def _heartbeat(self) -> None:
        renewed_at = time.time()
        try:
            held = self.backend.store.heartbeat(self.owner, list(self._tasks))
        except StorageError as exc:
            log.warning("lease renewal failed: %s", exc)
            return
        until = renewed_at + self.backend.settings.langgraph.lease_seconds
        for id in held:
            self._lease_until[id] = until
        for id, task in list(self._tasks.items()):
            execution = self._executions.get(id)
            ctx = execution.context if execution is not None else None
            if id not in held:
                log.warning("lost the lease of workflow %s; another worker took it", id)
                task.cancel()
            elif held[id] and ctx is not None and not ctx.cancelled_by_request:
                ctx.cancelled_by_request = True
                task.cancel()

    async def _execute(self, row: Any) -> None:
        try:
            while not await self._advance(row):
                pass
        except asyncio.CancelledError:
            pass  # shutdown or a lost lease: the thread is intact, the run resumes elsewhere
        except Exception as exc:
            # Infrastructure trouble (the database): hand the run back, do not fail it.
            log.error("workflow %s interrupted: %s", row.id, exc)
            with contextlib.suppress(StorageError):
                self.backend.store.release(self.owner, [row.id])
        finally:
            self._tasks.pop(row.id, None)
            self._executions.pop(row.id, None)
            self._lease_until.pop(row.id, None)
            self.backend.notify(row.id)
            self.wake()

    async def _advance(self, row: Any) -> bool:
        """Take run `row` one LangGraph invocation further; True once this worker is done
        with it (finished, parked or blocked)."""
        store = self.backend.store
        tup = store.saver.get_tuple(thread_config(row.id))
        steps = journal(store.load_steps(row.id), task_records(tup))
        command: Any
        if tup is None:
            command = {"workflow_id": row.id, "workflow": row.name, "args": codec.loads(row.input)}
        elif END_CHANNEL in tup.checkpoint["channel_values"]:
            return self._finish(row, tup.checkpoint["channel_values"][END_CHANNEL])
        elif (wait := pending_wait(tup)) is None:
            command = None  # resume after a crash (or a code fix): finished steps replay
        else:
            idx, interrupt_id = wait
            rec = next((r for r in steps if r.idx == idx), None)
            if rec is None:
                raise StorageError(
                    f"workflow {row.id!r} waits at step {idx}, which its journal does not "
                    f"have; the bridge tables and LangGraph's checkpoints of {store.url} are "
                    f"out of step (restored separately?)"
                )
            settled = rec if rec.status in SETTLED else store.settle_wait(rec)
            if settled is None:
                store.park(
                    row.id, self.owner, waiting_for=None if rec.kind == "sleep" else rec.name
                )
                return True
            steps = [settled if r.idx == idx else r for r in steps]
            command = Command(resume={interrupt_id: wait_answer(settled)})
        execution = Execution(
            definition=self.definitions[row.name],
            journal=_RunJournal(self, row.id),
            steps=steps,
            started_at=row.created_at,
            attempt=row.executions,
            cancel_requested=bool(row.cancel_requested),
            saver=store.saver,
        )
        self._executions[row.id] = execution
        try:
            out = await invoke(self.backend.program, execution, command, row.id)
        except Abandoned as exc:
            outcome = exc.outcome
            log.error("workflow %s stopped: %s", row.id, (outcome.error or {}).get("message"))
            store.park(
                row.id,
                self.owner,
                waiting_for=outcome.waiting_for,
                error=outcome.error,
                blocked=True,
            )
            return True
        if out.interrupts:
            return False  # a wait: answer it at once if it can be, else park
        return self._finish(row, out.value)

    def _finish(self, row: Any, value: dict[str, Any]) -> bool:
        held = self.backend.store.finish(
            row.id,
            self.owner,
            status=Status(value["status"]),
            result=value.get("result"),
            error=value.get("error"),
        )
        if not held:
            log.warning("workflow %s finished after its lease was taken over", row.id)
        return True

    async def _shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StorageError):
            self.backend.store.release(self.owner)
