"""The LangGraph backend's worker: finds runs to advance and drives their LangGraph threads.

LangGraph resumes nothing by itself. The worker claims runs from the bridge's runs table
(new ones, ones whose timer is due or that got a signal, and ones whose worker died, which
is recovery) and, for each, reads the thread's latest checkpoint to decide how to advance
it:

- no checkpoint: invoke the entrypoint with the run's input (a run that crashed before
  LangGraph saved its input checkpoint starts again, as nothing durable happened);
- a final checkpoint: the thread finished but the bridge had not recorded it (a crash in
  between): record its output; or its segment ended (`_graph.SEGMENT_STEPS`): keep the
  segment's task writes in the bridge's rows and start the next segment;
- a pending interrupt: answer the wait once its signal has arrived or its timer is due
  (`Store.settle_wait`, written before the resume), or park the run;
- otherwise (killed mid-run, or blocked by a NonDeterminismError): `invoke(None)`, which
  re-runs the entrypoint and replays finished steps from their task writes.

Claiming, leases, fencing, dead-owner detection and storage errors are the shared loop's
(`bridge.journal.worker`); this module adds only the advancing of a thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langgraph.types import Command

from backends.langgraph._graph import (
    PENDING,
    SEGMENT_END,
    SEGMENT_FROM,
    SEGMENT_STEPS,
    WAIT_MARK,
    Abandoned,
    Execution,
    defer_answer,
    invoke,
    record_from_json,
    updates_answer,
    wait_answer,
)
from backends.langgraph._store import SETTLED, Store
from bridge import codec
from bridge.backend import Status
from bridge.errors import StorageError
from bridge.journal.context import (
    CHILD,
    UPDATE,
    UPDATE_ACCEPTED,
    JournaledContext,
    StepRecord,
)
from bridge.journal.store import archive_id, generation_of
from bridge.journal.worker import JournalWorker, RunJournal
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from langgraph.checkpoint.base import CheckpointTuple

    from backends.langgraph._backend import LangGraphBackend


log = logging.getLogger("bridge.langgraph.worker")

# LangGraph's channels in a checkpoint (langgraph/_internal/_constants.py: private there, but
# part of the stored checkpoint format).
END_CHANNEL = "__end__"
START_CHANNEL = "__start__"
RETURN_CHANNEL = "__return__"
INTERRUPT_CHANNEL = "__interrupt__"


def thread_config(id: str) -> dict[str, Any]:
    """LangGraph's config for thread `id` (see `thread_id`)."""
    return {"configurable": {"thread_id": id}}


def thread_id(id: str, own: Sequence[StepRecord]) -> str:
    """The LangGraph thread of run `id`'s current generation, from its bridge rows `own`:
    the workflow id for the first (as before continue-as-new existed), then
    `archive_id(id, n)`, so each generation starts on an empty thread and a crash between
    a continuation and the next generation's start can never resume the old thread."""
    generation = generation_of(own)
    return id if generation == 0 else archive_id(id, generation)


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


def final_output(tup: CheckpointTuple) -> dict[str, Any]:
    """The entrypoint's return value when `tup` is a final checkpoint, else {}.

    A thread whose segments ended (`_graph.SEGMENT_STEPS`) runs the entrypoint once per
    segment, and a segment's input checkpoint still holds the previous run's `__end__`
    value; only a checkpoint in which `__end__` was written at or after the last input
    (`__start__`) is final."""
    values, versions = tup.checkpoint["channel_values"], tup.checkpoint["channel_versions"]
    if END_CHANNEL not in values:
        return {}
    start = versions.get(START_CHANNEL)
    if start is not None and versions.get(END_CHANNEL, start) < start:
        return {}
    return dict(values[END_CHANNEL])


def pending_wait(tup: CheckpointTuple) -> tuple[int, str, list[int]] | None:
    """(journal index, interrupt id, indices of the other interrupted waits) of the wait the
    thread is interrupted on, if any. Only that one, the first interrupt of the execution,
    can be answered (LangGraph resumes a task's interrupts in the order they were called);
    the others are listed in its question (`_graph.pending_interrupt`)."""
    for _, channel, value in tup.pending_writes:
        if channel != INTERRUPT_CHANNEL:
            continue
        for item in value:
            question = getattr(item, "value", None)
            if isinstance(question, dict) and WAIT_MARK in question:
                idx = int(question[WAIT_MARK])
                others = [int(i) for i in question.get(PENDING) or () if int(i) != idx]
                return idx, str(item.id), others
    return None


class LangGraphWorker(JournalWorker):
    #: Operations per segment of a run's LangGraph thread (`_graph.SEGMENT_STEPS`).
    segment_steps: int = SEGMENT_STEPS

    def __init__(
        self, backend: LangGraphBackend, workflows: Sequence[WorkflowDefinition[..., Any]]
    ) -> None:
        super().__init__(backend, workflows)
        self.backend: LangGraphBackend = backend
        self.store: Store = backend.store
        self._executions: dict[str, Execution] = {}

    def context_of(self, id: str) -> JournaledContext | None:
        execution = self._executions.get(id)
        return execution.context if execution is not None else None

    async def execute(self, row: Any) -> None:
        try:
            while not await self._advance(row):
                pass
        finally:
            self._executions.pop(row.id, None)

    async def _advance(self, row: Any) -> bool:
        """Take run `row` one LangGraph invocation further; True once this worker is done
        with it (finished, parked or blocked)."""
        store = self.store
        own = store.load_steps(row.id)
        thread = thread_id(row.id, own)
        tup = store.saver.get_tuple(thread_config(thread))
        steps = journal(own, task_records(tup))
        command: Any
        if tup is None:
            command = {"workflow_id": row.id, "workflow": row.name, "args": codec.loads(row.input)}
        elif SEGMENT_END in (end := final_output(tup)):
            kept = self._next_segment(row, tup)
            if kept is None:
                return True
            steps = journal(own, kept)
            command = {
                "workflow_id": row.id,
                "workflow": row.name,
                "args": codec.loads(row.input),
                SEGMENT_FROM: int(end[SEGMENT_END]),
            }
        elif end:
            return self._finish(row, end, thread)
        elif (wait := pending_wait(tup)) is None:
            command = None  # resume after a crash (or a code fix): finished steps replay
        else:
            idx, interrupt_id, others = wait
            rec = next((r for r in steps if r.idx == idx), None)
            if rec is None:
                raise StorageError(
                    f"workflow {row.id!r} waits at step {idx}, which its journal does not "
                    f"have; the bridge tables and LangGraph's checkpoints of {store.url} are "
                    f"out of step (restored separately?)"
                )
            settled = rec if rec.status in SETTLED else store.settle_wait(rec)
            open_updates = [
                r.idx for r in steps if r.kind == UPDATE and r.status == UPDATE_ACCEPTED
            ]
            # A wait after an unfinished update's row is inside its handler: it delivers no
            # update (`JournaledContext.deliver_updates`), so none may resume it.
            inside = any(u < idx for u in open_updates)
            if settled is None and not inside and (open_updates or store.pending_updates(row.id)):
                # Resume the wait only to deliver the run's updates (or to finish one whose
                # handler a crash cut short: the same answer again); it interrupts again.
                command = Command(resume={interrupt_id: updates_answer(idx)})
            elif settled is None and self._settle_other(store, steps, others):
                # Another wait can be answered: only the first interrupt can (LangGraph
                # resumes a task's interrupts in the order they were called), so defer it;
                # it interrupts again after the others, and the next one comes first.
                command = Command(resume={interrupt_id: defer_answer(idx)})
            elif settled is None:
                child = rec.kind == CHILD
                store.park(
                    row.id,
                    self.owner,
                    waiting_for=(
                        f"child workflow {rec.args['id']}"
                        if child
                        else None
                        if rec.kind == "sleep"
                        else rec.name
                    ),
                    wake_on_update=not inside,
                    children=[
                        str(r.args["id"])
                        for r in steps
                        if r.kind == CHILD and (r.idx == idx or r.idx in others)
                    ],
                )
                return True
            else:
                steps = [settled if r.idx == idx else r for r in steps]
                command = Command(resume={interrupt_id: wait_answer(settled)})
        execution = Execution(
            definition=self.definitions[row.name],
            journal=RunJournal(self, row.id),
            steps=steps,
            started_at=row.created_at,
            attempt=row.executions,
            cancel_requested=bool(row.cancel_requested),
            saver=store.saver,
            segment_steps=self.segment_steps,
        )
        self._executions[row.id] = execution
        try:
            out = await invoke(self.backend.program, execution, command, thread)
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
        if SEGMENT_END in out.value:
            return False  # the next segment: begun by the next turn, from the checkpoint
        return self._finish(row, out.value, thread)

    def _next_segment(self, row: Any, end: CheckpointTuple) -> list[StepRecord] | None:
        """The thread's segment ended at its final checkpoint `end`: write its finished
        steps (the task writes of the checkpoint the entrypoint ran on, `end`'s parent) to
        the bridge's rows, in one transaction fenced by the lease; the rows written, or
        None when the lease was lost.
        The next segment then starts on the same thread as a new LangGraph run, whose
        checkpoint has no pending write. Repeating this after a crash writes the same rows
        again (a settled row is never overwritten), so the step is idempotent; once the
        next segment's input checkpoint exists, the thread no longer ends here."""
        store = self.store
        kept: list[StepRecord] = []
        config = end.parent_config
        # The functional API runs the whole segment on its input checkpoint, so this reads
        # one checkpoint; it walks back to the segment's input all the same.
        while config is not None and (tup := store.saver.get_tuple(config)) is not None:
            kept.extend(task_records(tup))
            if (tup.metadata or {}).get("source") == "input":
                break
            config = tup.parent_config
        if not store.keep_segment(row.id, self.owner, kept):
            log.warning("workflow %s ended a segment after its lease was taken over", row.id)
            return None
        return kept

    @staticmethod
    def _settle_other(store: Store, steps: Sequence[StepRecord], others: list[int]) -> bool:
        """Settle (durably, see `Store.settle_wait`) the other waits that interrupted with
        the first one; True when one of them is answered."""
        waits = [r for r in steps if r.idx in others]
        settled = [r if r.status in SETTLED else store.settle_wait(r) for r in waits]
        return any(r is not None for r in settled)

    def _finish(self, row: Any, value: dict[str, Any], thread: str) -> bool:
        if value.get("continue_with") is not None:
            return self._continue(row, value["continue_with"], thread)
        held = self.store.finish(
            row.id,
            self.owner,
            status=Status(value["status"]),
            result=value.get("result"),
            error=value.get("error"),
        )
        if not held:
            log.warning("workflow %s finished after its lease was taken over", row.id)
        return True

    def _continue(self, row: Any, input: dict[str, Any], thread: str) -> bool:
        """The generation on `thread` continued as new: keep its whole journal (the bridge's
        rows and LangGraph's task writes) under its archive id and make the run PENDING
        with `input`; the next generation runs on a thread of its own."""
        store = self.store
        own = store.load_steps(row.id)
        finished = [r for tup in store.saver.list(thread_config(thread)) for r in task_records(tup)]
        if not store.continue_as_new(
            row.id, self.owner, input=input, journal=journal(own, finished)
        ):
            log.warning("workflow %s continued after its lease was taken over", row.id)
            return True
        # The thread's journal is kept in the bridge's rows now; its checkpoints only take
        # room. Dropping them is best effort: left behind, they are never read again.
        with contextlib.suppress(Exception):
            store.saver.delete_thread(thread)
        return True
