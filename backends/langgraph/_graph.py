"""The LangGraph program every bridge workflow runs as, and the Context it gives workflows.

One `@entrypoint` (checkpointed by the backend's saver) runs a bridge workflow on the
LangGraph thread whose id is the workflow id. Inside it:

- `ctx.run` is a call of the `@task` `bridge_step`. LangGraph numbers task calls by
  position and, when the entrypoint re-runs after a crash or an interrupt, answers the
  calls it has a write for from that write, so finished steps are not run again. The task
  runs the activity (with the bridge's retry policy, timeout and idempotency key) and
  returns the step's journal record (name, argument digest, result or error), which
  becomes LangGraph's task write. The durable saver commits that write before the
  workflow continues (`_saver.py`).
- `ctx.sleep` and `ctx.wait_for_signal` (one name or several) are `interrupt()`, and so is a
  `ctx.wait_condition` that nothing in the execution can make true any more (a condition
  that waits for another branch's wait does not interrupt: that branch's interrupt ends
  the execution, and the condition is evaluated again when it resumes). The worker answers
  an interrupt with `Command(resume=...)` once the bridge's timer is due or a signal has arrived,
  having first written the answer to the bridge's journal, so it is the same if the
  resume has to be repeated after a crash.
- LangGraph numbers a task's interrupts by the order they are called and resumes one per
  invocation, so of several waits interrupted at once (branches of `ctx.gather`) only the
  first can be answered. The first interrupt lists them all (`pending_interrupt`); when
  another one can be answered the worker answers the first with `DEFER`, which makes it
  interrupt again after the others, so the next one comes first.
- An answer takes effect only once every other branch of the execution is blocked, one
  answer at a time in the order they were given (`JournaledContext._hold_answer`), as the branches
  ran when the wait interrupted; a condition the journal has as met is met again when
  the other branches make it true (`_condition_held`). Otherwise a replayed wait or
  condition, which returns at once, would let its branch take the others' journal indices.
- Everything else of `JournaledContext` (step numbering, divergence checks, patches,
  compensation, the replay-safe clock and randomness) is the shared code of
  `bridge.journal.context`, so these rules are the sql backend's rules.

LangGraph matches task writes and interrupt answers by position only. The context checks
every recorded step against the call now made (kind, name, argument digest, index) and
raises NonDeterminismError on a difference, which LangGraph by itself would not notice.

A long run is cut into segments (`SEGMENT_STEPS`). LangGraph keeps every task write of
the thread's current checkpoint as a pending write and scans them, and every task future
of the invocation, on each task call, so one checkpoint holding a whole run made a step
cost grow with the run's length (quadratic runs). Once a segment has taken
`SEGMENT_STEPS` operations, the next new step, if nothing else of the execution is
pending, ends the entrypoint with `{"segment_end": index}` instead of running; the worker
copies the segment's task writes into the bridge's rows and invokes the entrypoint again
on the same thread with `segment_from` = that index, which LangGraph starts as a new
checkpoint with no pending writes. Operations below `segment_from` are answered from the
bridge's rows by the shared journal code (the sql backend's replay, no LangGraph task or
interrupt), the others go through LangGraph as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any, NoReturn

from langchain_core.runnables.config import var_child_runnable_config
from langgraph.errors import GraphInterrupt
from langgraph.func import entrypoint, task
from langgraph.pregel import Pregel
from langgraph.types import Interrupt, interrupt

from backends.langgraph._saver import DurableSaverMixin
from backends.langgraph._store import CANCELLED, SETTLED
from bridge import codec
from bridge.activity import ActivityDefinition, as_activity, seconds
from bridge.backend import Status
from bridge.errors import ChildWorkflowError, NonDeterminismError
from bridge.journal.context import (
    ACTIVITY,
    COMPLETED,
    CONDITION,
    FAILED,
    SIGNAL,
    SLEEP,
    TIMED_OUT,
    WAITING,
    JournaledContext,
    Outcome,
    RunJournal,
    StepRecord,
    Suspend,
    _describe_step,
    drive,
    signal_label,
    signal_value,
)
from bridge.workflow import WorkflowDefinition, note_step_answer, signal_names

#: Seconds between a queued step's asks for its concurrency permit (`_wait_for_permit`).
_PERMIT_POLL = 0.1
#: Marks a task write as a bridge journal record (and the record format's version).
RECORD_MARK = "bridge_step"
#: Marks an interrupt as a bridge wait.
WAIT_MARK = "bridge_wait"

_FINAL = (COMPLETED, FAILED)
#: The output of a condition's row while it waits on an interrupt of its own (see
#: `GraphContext._condition_parks`); kept when the worker settles the row.
PAUSED = {"paused": True}

#: Operations a segment takes before it ends at its next new step (see the module
#: docstring). LangGraph's own cost per task call grows with the segment (about 0.75 us per
#: earlier task write on the reference machine) and every segment end replays the run so
#: far from the bridge's rows (10-30 us per step); 500 keeps both below a fifth of a
#: step's cost at 10,000 steps (bench/RESULTS.md, "LangGraph backend: segments").
SEGMENT_STEPS = 500
#: The entrypoint's input key: the first journal index of this segment (0 or absent: the
#: run's first segment). Kept in LangGraph's input checkpoint, so a resumed segment knows it.
SEGMENT_FROM = "segment_from"
#: The entrypoint's output key when a segment ended: the index of the step not yet taken.
SEGMENT_END = "segment_end"


def record_to_json(rec: StepRecord) -> dict[str, Any]:
    """A final step record as the step task's return value (JSON data)."""
    return {
        RECORD_MARK: 1,
        "workflow_id": rec.workflow_id,
        "idx": rec.idx,
        "kind": rec.kind,
        "name": rec.name,
        "status": rec.status,
        "digest": rec.digest,
        "args": rec.args,
        "output": rec.output,
        "error": rec.error,
        "attempt": rec.attempt,
        "attempts": rec.attempts,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
    }


def record_from_json(data: Any) -> StepRecord | None:
    """The record a step task returned, or None for a value that is not one."""
    if not isinstance(data, dict) or data.get(RECORD_MARK) != 1:
        return None
    fields = {k: v for k, v in data.items() if k != RECORD_MARK}
    return StepRecord(**fields)


def wait_answer(rec: StepRecord) -> dict[str, Any]:
    """What the worker resumes a waiting thread with: the settled wait, as JSON data."""
    return {
        WAIT_MARK: rec.idx,
        "status": rec.status,
        "output": rec.output,
        "at": rec.finished_at,
        # A child's failure (`ChildWorkflowError` JSON); absent from older answers.
        "error": rec.error,
    }


#: The status of an interrupt answer that settles nothing: the worker resumed the thread so
#: that the wait delivers the run's pending updates (`GraphContext._pause`), after which the
#: wait interrupts again. Recorded by LangGraph like any answer, so a replay applies the
#: journaled updates at the same interrupt.
UPDATES = "updates"


def updates_answer(idx: int) -> dict[str, Any]:
    """The answer that resumes the thread waiting at `idx` to deliver updates."""
    return {WAIT_MARK: idx, "status": UPDATES, "output": None, "at": None}


#: The status of an interrupt answer that settles nothing and delivers nothing: the worker
#: resumed the thread's first pending interrupt only so that another wait of the execution,
#: which is settled, can be answered next. LangGraph numbers a task's interrupts by the order
#: they are called and resumes one per invocation, so only the first one called can be
#: answered; the deferred wait interrupts again once the other waits were reached
#: (`JournaledContext._hold_answer`), which puts the next pending wait first.
DEFER = "defer"


def defer_answer(idx: int) -> dict[str, Any]:
    """The answer that makes the wait at `idx` interrupt again, after the other waits."""
    return {WAIT_MARK: idx, "status": DEFER, "output": None, "at": None}


class Abandoned(BaseException):
    """Ends an execution without LangGraph recording anything, as a crash would.

    Raised by the entrypoint when the workflow hit a NonDeterminismError: the thread keeps
    its checkpoint and task writes, and a worker with fixed code resumes it with
    `invoke(None)`. A BaseException, because LangGraph records an `Exception` as the task's
    error.
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("execution abandoned")
        self.outcome = outcome


class GraphContext(JournaledContext):
    """JournaledContext whose steps are LangGraph task calls and whose waits are interrupts."""

    def __init__(
        self,
        *,
        workflow_id: str,
        journal: RunJournal,
        steps: list[StepRecord],
        started_at: float,
        attempt: int,
        cancel_requested: bool,
        saver: DurableSaverMixin,
        thread: str | None = None,
        segment_from: int = 0,
        segment_steps: int = SEGMENT_STEPS,
    ) -> None:
        super().__init__(
            workflow_id=workflow_id,
            journal=journal,
            steps=steps,
            started_at=started_at,
            attempt=attempt,
            cancel_requested=cancel_requested,
        )
        self._saver = saver
        # Operations below this index were run in earlier segments: every one is settled
        # in the bridge's rows, and LangGraph's thread has no task write or interrupt of
        # theirs any more, so they replay as on the sql backend (`JournaledContext`).
        self._segment_from = segment_from
        self._segment_steps = segment_steps
        # Indices below this were all settled when last looked at (`_segment_full`), and
        # the first index at which to look again.
        self._settled_below = segment_from
        self._look_at = segment_from + segment_steps
        #: The index of the step this execution ended its segment at (see `_segment_full`).
        self.segment_end: int | None = None
        # The task the workflow's first operation ran in, and whether an operation ran in
        # another one (a branch of `ctx.gather`, an update handler): see `_take_index`.
        self._main_task: asyncio.Task[Any] | None = None
        self._concurrent = False
        # The LangGraph thread of this generation (the workflow id for the first one),
        # which the saver keys its background write failures by.
        self._thread = thread or workflow_id
        # Task calls and interrupts are made in the entrypoint's own context, so a step
        # started from inside a graph the workflow runs (a ToolNode calling an activity
        # tool) is still numbered among the entrypoint's tasks.
        self._root = contextvars.copy_context()
        self._live: dict[int, tuple[str, ActivityDefinition[..., Any], dict[str, Any], str]] = {}
        #: The first interrupt this execution raised: the entrypoint re-raises it.
        self.interrupt: GraphInterrupt | None = None
        #: The journal indices of the waits that interrupted in this execution, in order.
        self.interrupted: list[int] = []

    def _take_index(self) -> int:
        """The next journal index; notes when operations run in more than one task.

        Branches interleave differently when replayed from the bridge's rows (a replayed
        step returns at once) than through LangGraph (a replayed task resolves a few
        event-loop turns later, as it did live), so an execution that ran branches side by
        side never ends its segment: its next segment would replay them from the rows in
        another order and see a divergence."""
        task = asyncio.current_task()
        if self._main_task is None:
            self._main_task = task
        elif task is not self._main_task:
            self._concurrent = True
        return super()._take_index()

    # -- steps --------------------------------------------------------------------------
    def run(
        self, activity: ActivityDefinition[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[Any]:
        defn = as_activity(activity, what=f"ctx.run in workflow {self._id!r}")
        idx = self._take_index()
        data = defn.shape.encode_args(args, kwargs)  # SerializationError here, at the call site
        return self._start(idx, ACTIVITY, defn, data)

    async def _step(
        self, idx: int, kind: str, defn: ActivityDefinition[..., Any], data: dict[str, Any]
    ) -> Any:
        return await self._start(idx, kind, defn, data)

    def _start(
        self, idx: int, kind: str, defn: ActivityDefinition[..., Any], data: dict[str, Any]
    ) -> Awaitable[Any]:
        """Call the step task now, so LangGraph numbers task calls in step order (and
        `ctx.gather` starts every branch before awaiting any); settle it when awaited."""
        if idx < self._segment_from:
            return JournaledContext._step(self, idx, kind, defn, data)
        digest = codec.digest(data)
        try:
            rec = self._recorded(idx, kind, defn.name, digest, data)
        except BaseException as exc:  # divergence or a delivered cancel, raised when awaited
            return _raise(exc)
        if rec is None and self._segment_full(idx):
            self.segment_end = idx
            return _raise(Suspend(wake_at=None, waiting_for=None))
        replayed = rec is not None and rec.status in _FINAL
        self._live[idx] = (kind, defn, data, digest)
        future = self._root.run(bridge_step, idx)
        return self._settle(idx, kind, defn, data, digest, future, replayed=replayed)

    async def _settle(
        self,
        idx: int,
        kind: str,
        defn: ActivityDefinition[..., Any],
        data: dict[str, Any],
        digest: str,
        future: Awaitable[Any],
        *,
        replayed: bool,
    ) -> Any:
        self._inflight += 1
        try:
            out = await future
        finally:
            self._inflight -= 1
            self._progress()
        self._saver.raise_failure(self._thread)  # the result must be on disk before going on
        rec = record_from_json(out)
        if rec is None or (rec.idx, rec.kind, rec.name, rec.digest) != (
            idx,
            kind,
            defn.name,
            digest,
        ):
            recorded = _describe_step(rec.kind, rec.name, rec.args) if rec else f"the value {out!r}"
            raise NonDeterminismError(
                self._id, idx, recorded=recorded, current=_describe_step(kind, defn.name, data)
            )
        self._steps[idx] = rec
        if rec.finished_at is not None:
            self._clock = max(self._clock, rec.finished_at)
        note_step_answer(replayed=replayed)
        return self._settled(kind, defn, data, rec)

    def _segment_full(self, idx: int) -> bool:
        """True when the new step at `idx` should start the next segment instead: this one
        took `SEGMENT_STEPS` operations and nothing else of the execution is pending (no
        step under way or held answer, no open wait, child or update, no interrupt, no
        cancellation being delivered), so every operation below `idx` is settled in the
        bridge's rows and no other branch can take an index in this segment, and no
        operation of the execution so far ran in another task (`_take_index`). Otherwise
        the segment goes on (a long loop beside an open wait stays in one segment), and
        this looks again some steps later, so a long-open row is not scanned per step."""
        if idx < self._look_at or self._concurrent:
            return False
        if (
            self._inflight
            or self._applying
            or self.interrupt is not None
            or self._cancel_pending
            or self.cancelled_by_request
            or self.past_deadline()
        ):
            self._look_at = idx + 1
            return False
        below = self._settled_below
        while below < idx and _settled(self._steps.get(below)):
            below += 1
        self._settled_below = below
        if below < idx:
            self._look_at = idx + max(1, self._segment_steps // 8)
            return False
        return True

    async def execute(self, idx: int) -> dict[str, Any]:
        """The body of the step task: attempts until a final record, which it returns."""
        kind, defn, data, digest = self._live.pop(idx)
        rec = self._steps.get(idx)
        if rec is not None and rec.status in _FINAL:
            return record_to_json(rec)  # recorded, though LangGraph had lost its write
        with _outside_langgraph():
            permit = (
                None if defn.concurrency is None else await self._wait_for_permit(idx, defn, data)
            )
            final = await self._attempts(idx, kind, defn, data, digest, rec)
        # Patch markers taken before this step go to disk no later than its result.
        await self.flush()
        if permit is not None:
            await self._journal.release_permit(*permit)
        return record_to_json(final)

    async def _wait_for_permit(
        self, idx: int, defn: ActivityDefinition[..., Any], data: dict[str, Any]
    ) -> tuple[str, str]:
        """The concurrency permit (`bridge.Limit`) step `idx` runs under, waited for in
        this task: the step's place in the queue is durable, but parking the run as the
        sql journal does would end the invocation with this task called and unanswered,
        and LangGraph pairs task writes with calls by position. So the task asks again
        every `_PERMIT_POLL` seconds; the run's lease stays with this worker meanwhile."""
        limit = defn.concurrency
        assert limit is not None
        key, holder = limit.permit_key(defn.name, data), f"{self._id}#{idx}"
        while not await self._journal.acquire_permit(key, holder, limit.max):
            self._fence()
            await asyncio.sleep(_PERMIT_POLL)
        return key, holder

    # -- waits --------------------------------------------------------------------------
    async def sleep(self, duration: float | timedelta) -> None:
        if self._next < self._segment_from:
            return await super().sleep(duration)
        secs = seconds(duration, what="ctx.sleep duration") or 0.0
        idx = self._take_index()
        rec = self._recorded(idx, SLEEP, "sleep", None, None)
        if rec is None:
            now = time.time()
            rec = StepRecord(
                workflow_id=self._id,
                idx=idx,
                kind=SLEEP,
                name="sleep",
                status=WAITING,
                args={"seconds": secs},
                started_at=now,
                fire_at=now + secs,
            )
            await self._write(rec)  # the timer is armed before the thread stops
        await self._pause(rec)

    async def wait_for_signal(self, name: Any, *, timeout: float | timedelta | None = None) -> Any:
        if self._next < self._segment_from:
            return await super().wait_for_signal(name, timeout=timeout)
        names = signal_names(name, where=f"workflow {self._id!r}")
        secs = seconds(timeout, what="wait_for_signal timeout")
        label = signal_label(name, names)
        idx = self._take_index()
        rec = self._recorded(idx, SIGNAL, label, None, None)
        if rec is None:
            rec = self._signal_wait(idx, label, names, secs)
            await self._write(rec)
        answer = await self._pause(rec)
        if answer["status"] == TIMED_OUT:
            return None
        self._progress()
        return signal_value(names, answer["output"])

    async def wait_condition(
        self, condition: Callable[[], bool], *, timeout: float | timedelta | None = None
    ) -> bool:
        """The journal's condition wait, except that a condition which interrupted (see
        `_condition_parks`) interrupts again on every replay, answered or not, because
        LangGraph pairs answers with interrupts by their order."""
        if self._next < self._segment_from:
            return await super().wait_condition(condition, timeout=timeout)
        rec = self._steps.get(self._next)
        if (
            rec is not None
            and rec.kind == CONDITION
            and rec.status == COMPLETED
            and rec.output != PAUSED
        ):
            idx = self._take_index()
            self._recorded(idx, CONDITION, CONDITION, None, None)
            await self.deliver_updates()
            return await self._condition_held(condition)
        if rec is None or rec.kind != CONDITION or rec.output != PAUSED:
            return await super().wait_condition(condition, timeout=timeout)
        idx = self._take_index()
        self._recorded(idx, CONDITION, CONDITION, None, None)
        return (await self._pause(rec, condition))["status"] == COMPLETED

    async def child_result(self, idx: int, defn: WorkflowDefinition[..., Any]) -> Any:
        """A child's wait is an interrupt, like every wait here, answered or not (LangGraph
        pairs answers with interrupts by order): the worker answers it once the child has
        ended (`Store.settle_wait` journals the outcome first), or with a cancel, which
        also asks the child to cancel."""
        if idx < self._segment_from:
            return await super().child_result(idx, defn)
        rec = self._steps[idx]
        answer = await self._pause(rec)
        self._progress()
        if answer["status"] == COMPLETED:
            return defn.shape.decode_result(answer["output"])
        raise ChildWorkflowError.from_json(answer.get("error") or {})

    async def _condition_parks(self, rec: StepRecord, condition: Callable[[], bool]) -> bool:
        """Nothing in this execution can change the state any more. When another branch
        interrupted, that interrupt ends the execution and the condition is evaluated
        again when it is answered; otherwise the condition interrupts itself, and the
        worker answers it when its timer is due (False) or a cancel comes."""
        if self.interrupt is not None:
            raise Suspend(wake_at=rec.fire_at, waiting_for="a condition")
        rec = replace(rec, output=PAUSED)
        await self._write(rec)
        return (await self._pause(rec, condition))["status"] == COMPLETED

    async def _pause(
        self, rec: StepRecord, condition: Callable[[], bool] | None = None
    ) -> dict[str, Any]:
        """One `interrupt()`: LangGraph's answer to this wait, or Suspend until there is one.

        Every wait interrupts, answered or not, because LangGraph pairs answers with
        interrupts by their order in the entrypoint. An `UPDATES` answer settles nothing:
        the wait delivers the run's updates (`deliver_updates`) and interrupts again; a
        condition wait whose condition the updates made true completes then (its row
        keeps the PAUSED mark, so a replay takes the same interrupts).
        """
        while True:
            self._saver.raise_failure(self._thread)
            question = {
                WAIT_MARK: rec.idx,
                "kind": rec.kind,
                "name": rec.name,
                "fire_at": rec.fire_at,
            }
            try:
                answer = self._root.run(interrupt, question)
            except GraphInterrupt as exc:
                if self.interrupt is None:
                    self.interrupt = exc
                self.interrupted.append(rec.idx)
                waiting_for = {SLEEP: None, CONDITION: "a condition"}.get(rec.kind, rec.name)
                raise Suspend(wake_at=rec.fire_at, waiting_for=waiting_for) from None
            if not isinstance(answer, dict) or answer.get(WAIT_MARK) != rec.idx:
                raise NonDeterminismError(
                    self._id,
                    rec.idx,
                    recorded=f"an interrupt answered with {answer!r}",
                    current=_describe_step(rec.kind, rec.name, None),
                )
            await self._hold_answer()
            if answer["status"] == DEFER:
                continue
            if answer["status"] != UPDATES:
                break
            await self.deliver_updates()
            if condition is not None and condition():
                if self._steps.get(rec.idx, rec).status not in _FINAL:
                    await self._write(replace(rec, status=COMPLETED, finished_at=time.time()))
                return {WAIT_MARK: rec.idx, "status": COMPLETED, "output": PAUSED, "at": None}
        self._steps[rec.idx] = replace(
            rec,
            status=answer["status"],
            output=answer["output"],
            error=answer.get("error"),
            finished_at=answer["at"],
        )
        if answer["at"] is not None:
            self._clock = max(self._clock, answer["at"])
        if answer["status"] == CANCELLED:
            # Delivered here, once: not again at the next operation past the journal. The
            # worker also answers a wait this way when the run's execution deadline passed
            # (`Store.settle_wait`); `deliver_cancel` tells the two apart.
            self.deliver_cancel()
        return answer


def _settled(rec: StepRecord | None) -> bool:
    """True for a row nothing will change any more (an index with no row is an operation
    still under way: its row is being written)."""
    return rec is not None and rec.status in SETTLED


@contextlib.contextmanager
def _outside_langgraph() -> Iterator[None]:
    """Run workflow and activity code without LangGraph's config of this execution.

    Code the user runs (a graph invoked by the workflow, a LangChain tool, an activity)
    then behaves as on any other backend: a LangGraph graph it invokes is a graph of its
    own, not a subgraph checkpointed into this thread. The bridge's own task calls and
    interrupts use the entrypoint's context, kept by GraphContext.
    """
    token = var_child_runnable_config.set(None)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


async def _raise(exc: BaseException) -> NoReturn:
    raise exc


class Execution:
    """One invocation of one run: what the entrypoint and its step tasks need to know.

    The Context is made inside the entrypoint's body, where LangGraph's config for the
    entrypoint is the current one (task calls and interrupts are made against it).
    """

    def __init__(
        self,
        *,
        definition: WorkflowDefinition[..., Any],
        journal: RunJournal,
        steps: list[StepRecord],
        started_at: float,
        attempt: int,
        cancel_requested: bool,
        saver: DurableSaverMixin,
        segment_steps: int = SEGMENT_STEPS,
    ) -> None:
        self.definition = definition
        self.segment_steps = segment_steps
        self._journal = journal
        self._steps = steps
        self._started_at = started_at
        self._attempt = attempt
        self._cancel_requested = cancel_requested
        self.saver = saver
        self.context: GraphContext | None = None
        self.outcome: Outcome | None = None
        #: The LangGraph thread this execution runs on (set by `invoke`).
        self.thread: str | None = None

    async def body(self, start: dict[str, Any]) -> dict[str, Any]:
        """The entrypoint's body: the workflow, its ending mapped to LangGraph's terms."""
        ctx = self.context = GraphContext(
            workflow_id=start["workflow_id"],
            journal=self._journal,
            steps=self._steps,
            started_at=self._started_at,
            attempt=self._attempt,
            cancel_requested=self._cancel_requested,
            saver=self.saver,
            thread=self.thread,
            segment_from=int(start.get(SEGMENT_FROM) or 0),
            segment_steps=self.segment_steps,
        )
        with _outside_langgraph():
            outcome = self.outcome = await drive(self.definition, ctx, start["args"])
        if outcome.blocked:
            raise Abandoned(outcome)
        if outcome.status is Status.WAITING:
            if ctx.interrupt is None and ctx.segment_end is not None:
                # The segment is full: the worker keeps its steps in the bridge's rows and
                # starts the next one at this index (`_worker.LangGraphWorker._next_segment`).
                self.saver.raise_failure(self.thread or ctx.workflow_id)
                return {"status": outcome.status.value, SEGMENT_END: ctx.segment_end}
            if ctx.interrupt is None:
                raise RuntimeError(f"workflow {ctx.workflow_id!r} suspended without a wait")
            raise pending_interrupt(ctx.interrupt, ctx.interrupted)
        self.saver.raise_failure(self.thread or ctx.workflow_id)
        if outcome.continue_with is not None:
            # The thread ends here; the worker moves this generation's journal aside and
            # starts the next one on a thread of its own (`_worker.thread_id`).
            return {"status": outcome.status.value, "continue_with": outcome.continue_with}
        return {"status": outcome.status.value, "result": outcome.result, "error": outcome.error}


#: The key of the first interrupt's question listing every wait that interrupted with it.
PENDING = "pending"


def pending_interrupt(first: GraphInterrupt, waits: list[int]) -> GraphInterrupt:
    """The execution's first interrupt, its question listing every wait that interrupted
    (`waits`), so the worker knows all the waits it may answer (`_worker.pending_wait`)."""
    found = first.args[0] if first.args else ()
    if len(found) != 1 or not isinstance(found[0].value, dict):
        return first
    item = found[0]
    value = {**item.value, PENDING: list(waits)}
    return GraphInterrupt(
        (Interrupt(value=value, id=item.id, response_schema=item.response_schema),)
    )


_EXECUTION: contextvars.ContextVar[Execution] = contextvars.ContextVar("bridge_lg_execution")


async def _bridge_step(step: int) -> dict[str, Any]:
    """Run journal step `step` of the current execution; its final record is the result."""
    ctx = _EXECUTION.get().context
    assert ctx is not None  # the entrypoint made it before calling any step
    return await ctx.execute(step)


bridge_step = task(name="bridge_step")(_bridge_step)


def build_program(saver: DurableSaverMixin) -> Pregel:
    """The entrypoint, bound to `saver` (LangGraph binds the checkpointer when decorating)."""

    async def bridge_workflow(start: dict[str, Any]) -> dict[str, Any]:
        return await _EXECUTION.get().body(start)

    return entrypoint(checkpointer=saver)(bridge_workflow)  # type: ignore[arg-type]


async def invoke(program: Pregel, execution: Execution, command: Any, thread_id: str) -> Any:
    """Run `execution` as one LangGraph invocation of thread `thread_id`."""
    execution.thread = thread_id
    token = _EXECUTION.set(execution)
    try:
        return await program.ainvoke(
            command,
            {"configurable": {"thread_id": thread_id}},
            durability="sync",
            version="v2",
        )
    finally:
        _EXECUTION.reset(token)
