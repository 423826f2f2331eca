"""The replaying Context shared by backends that keep their own journal (sql, langgraph).

A run is executed by calling the workflow function from the top every time a worker picks
it up. Each journaled operation takes the next index; if the journal has a row there, the
recorded outcome is returned (after checking the step's name and argument digest), otherwise
the operation runs live and its row is made durable *before* the workflow sees the result.
Waiting (timers, signals, conditions) ends the execution with `Suspend`, so nothing is held
in memory.

The same context answers queries of runs no worker holds (`replay_for_query`): with
`replay_only` it runs the workflow against the recorded rows and stops (`EndOfJournal`) at
the first operation the journal has not decided, where a live run would take a step or
wait; it writes nothing and runs no activity, so a query never changes a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random as _random
import time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from bridge import codec
from bridge._execute import error_info, is_retryable, retry_delay, run_attempt
from bridge._liveness import Liveness
from bridge.activity import ActivityDefinition, as_activity, seconds
from bridge.backend import Status
from bridge.concurrency import PERMIT_WAIT
from bridge.errors import (
    ActivityError,
    ChildWorkflowError,
    CompensationError,
    NonDeterminismError,
    StorageError,
    UpdateNotFoundError,
    UpdateRejectedError,
    WorkflowTimeoutError,
)
from bridge.history import utc
from bridge.limits import check_id, check_payload
from bridge.search import SearchAttribute, encode_attributes
from bridge.workflow import (
    ChildHandle,
    Context,
    ContinueAsNew,
    Signal,
    WorkflowDefinition,
    _current_context,
    call_update_handler,
    check_child_call,
    default_child_id,
    flatten_awaitables,
    note_step_answer,
    signal_names,
    validate_update,
)

if TYPE_CHECKING:
    from bridge.interceptors import Interceptor

__all__ = [
    "DEADLINE",
    "DEADLINE_IDX",
    "HEADERS",
    "HEADERS_IDX",
    "EndOfJournal",
    "JournaledContext",
    "Outcome",
    "RunJournal",
    "StepRecord",
    "Suspend",
    "drive",
    "replay_for_query",
    "UPDATE",
    "UPDATE_ACCEPTED",
    "UPDATE_REJECTED",
    "UPDATE_REQUEST",
]

#: The kind of a generation's first journal row, at index -1 (no operation takes it): which
#: generation of the run this journal is, and the id its previous generation is kept under.
CONTINUED = "continued"
#: The kind of the row at index `DEADLINE_IDX` a run started with an execution timeout has
#: (no operation takes it): `fire_at` is the run's deadline, `args` the timeout in seconds.
#: Kept as a journal row with a timer of its own, not as a column, so the deadline is
#: durable and wakes a parked run without a schema migration.
DEADLINE = "deadline"
DEADLINE_IDX = -2
# Step kinds and statuses as stored.
ACTIVITY, SLEEP, SIGNAL, PATCH, COMPENSATION, CONDITION = (
    "activity",
    "sleep",
    "signal",
    "patch",
    "compensation",
    "condition",
)
#: The kind of an accepted update's row: `name` the update, `args` {"update_id", "args"};
#: status `accepted` while its handler runs, then completed (output) or failed (error).
UPDATE, UPDATE_ACCEPTED = "update", "accepted"
#: The signals-table name of an update request (see `JournalStore.add_update`), and the
#: `consumed_step` of one that was rejected (no journal row has it).
UPDATE_REQUEST = "__bridge_update__"
UPDATE_REJECTED = -1000
#: A child workflow this run started (`ctx.start_child`): `name` the child's workflow, `args`
#: {"id", "args", "policy"}; WAITING while the parent has not seen it end, then completed
#: (output: its result) or failed (error: a ChildWorkflowError's JSON). The child run is
#: created in the transaction that writes this row, so a replay never starts it twice.
#: `child_signal` / `child_cancel` rows record a signal or cancel sent to it, once.
CHILD, CHILD_SIGNAL, CHILD_CANCEL = "child", "child_signal", "child_cancel"
#: The kind of the row at index `PARENT_IDX` a child run has (no operation takes it): `args`
#: {"parent_id", "idx", "policy"}, read when the child ends to wake its parent, and by the
#: history (`workflow_started` details). A row, like the deadline, so no schema change.
PARENT, PARENT_IDX = "parent", -3
#: The kind of the row at index `HEADERS_IDX` a run started with headers has (no operation
#: takes it): `args` the start's headers (`StartCall.headers`: the caller's W3C trace
#: context), handed to every attempt and copied to the run's children and its next
#: generations. A row, like the deadline, so no schema change.
HEADERS, HEADERS_IDX = "headers", -4
#: The kind of a `ctx.upsert_search_attributes` row (no activity): `args` {"attributes":
#: `bridge.search.encode_attributes` JSON}. The store applies it to the attributes table in
#: the transaction that writes the row (`JournalStore._upsert_steps`).
ATTRIBUTES = "attributes"  # at most 16 characters: the `kind` column
#: Kinds whose rows are waits: a WAITING row arms a timer, settling it disarms the timer.
WAIT_KINDS = (SLEEP, SIGNAL, CONDITION)
#: Kinds whose rows the store applies beyond the row itself (a wait's timer, the
#: attributes table an ATTRIBUTES row sets): every backend writes them through the store's
#: `_upsert_steps`, never through the sql backend's raw hot path.
APPLIED_KINDS = (*WAIT_KINDS, ATTRIBUTES)
COMPLETED, FAILED, RETRYING, WAITING, TIMED_OUT = (
    "completed",
    "failed",
    "retrying",
    "waiting",
    "timed_out",
)
FINAL_STEP_STATUSES = frozenset({COMPLETED, FAILED, TIMED_OUT})
#: A wait answered with the run's cancellation (the langgraph backend's rows; the sql
#: journal delivers a cancel at the next operation instead, and never writes it).
WAIT_CANCELLED = "cancelled"
# How many turns of the event loop a condition gives the run's other branches to reach
# their next operation before it decides that nothing in this execution can change the
# state it reads (each turn lets every ready task run once).
_QUIET_TURNS = 3
#: Event-loop turns with no progress after which a held answer counts the execution as
#: blocked (more than a condition's quiet turns, so a condition settles first).
_GATE_TURNS = 8
#: The `attempt` of a sleep or signal wait whose answer came in a later execution than the
#: one that began it (the run parked there): only such an answer is held on replay
#: (`_hold_answer`); one there at once let its branch run on in the same execution.
ANSWERED_LATER = 2


@dataclass(frozen=True)
class StepRecord:
    """One journal row. `args`, `output` and `error` are JSON-compatible data."""

    workflow_id: str
    idx: int
    kind: str
    name: str
    status: str
    digest: str = ""
    args: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempt: int = 1
    attempts: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float | None = None
    fire_at: float | None = None


class RunJournal(Protocol):
    """What a backend provides to the replaying context for one run."""

    #: The worker's interceptor chain (`bridge.interceptors.load(settings)`), through which
    #: every activity attempt of the run is made.
    interceptors: Sequence[Interceptor]

    async def write(self, *records: StepRecord) -> None:
        """Make `records` durable (upserts by index; final rows are never overwritten)."""

    def lease_ok(self) -> bool:
        """False once this worker may have lost the run to another one; the context then
        starts no further side effect and writes nothing more."""

    async def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        """Atomically consume the oldest pending signal named `record.name` and write
        `record` completed with its payload; or write `record` as it is and return
        (False, None) when none is pending."""

    async def pending_updates(self) -> list[dict[str, Any]]:
        """The run's update requests not yet accepted or rejected, oldest first: each
        `{"seq", "update_id", "name", "args"}`."""

    async def reject_update(self, seq: int, refusal: dict[str, Any]) -> None:
        """Record that request `seq` was refused (nothing is journaled)."""

    async def accept_update(self, seq: int, *records: StepRecord) -> None:
        """Write `records` (the update's row last) and mark request `seq` accepted by it,
        in one transaction."""

    async def start_child(self, *records: StepRecord) -> StepRecord:
        """Write `records` (the `child` row last) and create the child run it names, in one
        transaction; the row as written (failed when the child's id was in use)."""

    async def settle_child(self, record: StepRecord) -> StepRecord:
        """The `child` row `record` settled with the child's outcome when the child has
        ended (written), else `record` as it is."""

    async def cancel_child(self, child_id: str) -> None:
        """Ask child run `child_id` to cancel (nothing when it has ended)."""

    async def command_child(self, *records: StepRecord) -> StepRecord:
        """Write `records` (a `child_signal`/`child_cancel` row last) and deliver it to the
        child in one transaction; that row as written (failed when the child has ended)."""

    async def acquire_permit(self, key: str, holder: str, limit: int) -> bool:
        """True when step `holder` holds a concurrency permit of `key` (`bridge.Limit`),
        False when it was queued for one (the run parks; a grant wakes it)."""

    async def release_permit(self, key: str, holder: str) -> None:
        """Give back `holder`'s permit of `key` and grant the next queued step."""

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        """Reserve a token of rate bucket `key` (`bridge.RateLimit`): the time (epoch
        seconds) from which the attempt may start."""


class Suspend(BaseException):
    """Ends an execution that must wait; a BaseException so `except Exception` in user
    code cannot swallow it."""

    def __init__(self, *, wake_at: float | None, waiting_for: str | None) -> None:
        super().__init__(waiting_for or "timer")
        self.wake_at = wake_at
        self.waiting_for = waiting_for


class EndOfJournal(BaseException):
    """Ends a replay-only execution (a query's) where a live run would go past its journal:
    take a step, or wait. A BaseException for the same reason as `Suspend`."""


class _NoWrites:
    """The `RunJournal` of a replay-only execution: it runs nothing and writes nothing."""

    interceptors: Sequence[Interceptor] = ()

    async def write(self, *records: StepRecord) -> None:
        raise EndOfJournal

    def lease_ok(self) -> bool:
        return True

    async def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        raise EndOfJournal

    async def pending_updates(self) -> list[dict[str, Any]]:
        raise EndOfJournal

    async def reject_update(self, seq: int, refusal: dict[str, Any]) -> None:
        raise EndOfJournal

    async def accept_update(self, seq: int, *records: StepRecord) -> None:
        raise EndOfJournal

    async def start_child(self, *records: StepRecord) -> StepRecord:
        raise EndOfJournal

    async def settle_child(self, record: StepRecord) -> StepRecord:
        raise EndOfJournal

    async def cancel_child(self, child_id: str) -> None:
        raise EndOfJournal

    async def command_child(self, *records: StepRecord) -> StepRecord:
        raise EndOfJournal

    async def acquire_permit(self, key: str, holder: str, limit: int) -> bool:
        raise EndOfJournal

    async def release_permit(self, key: str, holder: str) -> None:
        raise EndOfJournal

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        raise EndOfJournal


def _describe_step(kind: str, name: str, args: Any) -> str:
    text = codec.dumps(args) if args is not None else ""
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{kind} {name!r}" + (f" with arguments {text}" if text else "")


class JournaledContext(Context):
    """The Context for journal-keeping backends; see the module docstring."""

    def __init__(
        self,
        *,
        workflow_id: str,
        journal: RunJournal,
        steps: Iterable[StepRecord],
        started_at: float,
        attempt: int,
        cancel_requested: bool = False,
        replay_only: bool = False,
    ) -> None:
        self._id = workflow_id
        self._journal = journal
        self._steps = {s.idx: s for s in steps}
        # Indices below this were recorded before this execution began (a final outcome, a
        # retrying step, a wait begun): code that runs before taking them ran before.
        self._replay_until = max(self._steps, default=-1) + 1
        self._next = 0
        self._clock = started_at
        seed = int.from_bytes(hashlib.sha256(workflow_id.encode()).digest()[:8], "big")
        self._rng = _random.Random(seed)
        self._attempt = attempt
        self._compensations: list[tuple[ActivityDefinition[..., Any], dict[str, Any]]] = []
        self._patches: dict[str, bool] = {}
        self._unwritten: list[StepRecord] = []
        self._cancel_pending = cancel_requested
        self.cancelled_by_request = False
        # The run's execution deadline (epoch seconds) and timeout, from its deadline row;
        # once past, the run is cancelled at its next undecided operation, once, and ends
        # FAILED with WorkflowTimeoutError (`drive`).
        deadline_row = self._steps.get(DEADLINE_IDX)
        is_deadline = deadline_row is not None and deadline_row.kind == DEADLINE
        self.deadline: float | None = deadline_row.fire_at if is_deadline else None
        self.execution_timeout: float | None = (
            float((deadline_row.args or {}).get("seconds", 0.0)) if is_deadline else None
        )
        #: True once the deadline's cancellation was delivered to the workflow.
        self.timed_out = False
        headers_row = self._steps.get(HEADERS_IDX)
        #: The run's start headers (its trace context), from its headers row.
        self.headers: Mapping[str, str] = (
            dict(headers_row.args)
            if headers_row is not None
            and headers_row.kind == HEADERS
            and isinstance(headers_row.args, dict)
            else {}
        )
        self._replay_only = replay_only
        # What a waiting condition watches: operations begun or settled in this execution
        # (`_ticks`), activity attempts under way (`_inflight`), and an event set at each.
        self._ticks = 0
        self._inflight = 0
        self._changed: asyncio.Event | None = None
        # Answers of waits begun in an earlier execution, held until the other branches
        # are blocked (`_hold_answer`): their positions, and those not let go on yet.
        self._answers = 0
        self._gated: list[int] = []
        # Update handlers running now: a wait inside one delivers no update (see
        # `deliver_updates`); `waits_in_update` is set when such a wait parked the run.
        self._applying = 0
        self.waits_in_update = False
        #: Ids of the children whose end this execution waited for when it parked: a park
        #: checks them, so a child ending just before its parent parks still wakes it.
        self.awaiting_children: list[str] = []

    # -- identity ---------------------------------------------------------------------
    @property
    def workflow_id(self) -> str:
        return self._id

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def is_replaying(self) -> bool:
        """True until the code takes the last index the journal held when this execution
        began. A step or wait written during this execution does not count: the code
        before it is running for the first time. Always True on a query's replay, which
        must leave no trace (no hook, no span) of code that already ran."""
        return self._replay_only or self._next < self._replay_until

    # -- journal plumbing -------------------------------------------------------------
    def _take_index(self) -> int:
        idx = self._next
        self._next += 1
        self._progress()
        return idx

    def _progress(self) -> None:
        """Something happened in this execution that may change workflow state: wake the
        conditions that wait for the other branches."""
        self._ticks += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _beyond_journal(self) -> None:
        """A replay-only execution stops here: the live run would go past its journal."""
        if self._replay_only:
            raise EndOfJournal

    def past_deadline(self) -> bool:
        """True when the run has an execution deadline that has passed and whose
        cancellation this execution has not delivered yet."""
        return self.deadline is not None and not self.timed_out and time.time() >= self.deadline

    def timeout_error(self) -> WorkflowTimeoutError:
        """The error a run that passed its execution deadline ends with."""
        return WorkflowTimeoutError(self._id, self.execution_timeout)

    def deliver_cancel(self) -> NoReturn:
        """Raise the run's cancellation into the workflow, once: a cancel request, or the
        execution deadline when it has passed (then `timed_out` is set and the run ends
        FAILED, not CANCELLED, whatever the workflow does after catching it)."""
        self._cancel_pending = False
        self.cancelled_by_request = True
        if self.past_deadline():
            self.timed_out = True
            raise asyncio.CancelledError(str(self.timeout_error()))
        raise asyncio.CancelledError(f"workflow {self._id!r} was cancelled")

    def _cancelled_wait(self) -> NoReturn:
        """A wait the journal answered with the run's cancellation: deliver it, once."""
        self.deliver_cancel()

    def _recorded(
        self, idx: int, kind: str, name: str, digest: str | None, args: Any
    ) -> StepRecord | None:
        rec = self._steps.get(idx)
        if (self._cancel_pending or self.past_deadline()) and (
            rec is None or rec.status not in FINAL_STEP_STATUSES
        ):
            # Cancellation (a request, or the execution deadline) is delivered once, at the
            # first operation the journal has not decided (a new step, or a wait still
            # open), as in Temporal; the workflow may catch it and compensate.
            self.deliver_cancel()
        return self._check_recorded(idx, kind, name, digest, args)

    def _check_recorded(
        self, idx: int, kind: str, name: str, digest: str | None, args: Any
    ) -> StepRecord | None:
        """The journal's row at `idx` once it matches the operation now asked for
        (NonDeterminismError otherwise); no cancellation is delivered here."""
        rec = self._steps.get(idx)
        if rec is None:
            return None
        if rec.kind != kind or rec.name != name or (digest is not None and rec.digest != digest):
            raise NonDeterminismError(
                self._id,
                idx,
                recorded=_describe_step(rec.kind, rec.name, rec.args),
                current=_describe_step(kind, name, args),
            )
        if rec.finished_at is not None:
            self._clock = max(self._clock, rec.finished_at)
        return rec

    def _fence(self) -> None:
        if not self._journal.lease_ok():
            # Cancelled, not failed: the run is intact and whoever holds the lease goes on.
            raise asyncio.CancelledError(f"lease on workflow {self._id!r} expired")

    async def _write(self, rec: StepRecord, *, fenced: bool = True) -> None:
        # A finished side effect's result is written even past the fence: dropping it
        # would make the next owner run the effect again, and the journal never lets a
        # later write overwrite an earlier final row (the store reports such a clash).
        self._beyond_journal()  # never reached on a replay-only execution; a guard all the same
        if fenced:
            self._fence()
        pending, self._unwritten = self._unwritten, []
        await self._journal.write(*pending, rec)
        self._steps[rec.idx] = rec
        if rec.finished_at is not None:
            self._clock = max(self._clock, rec.finished_at)

    async def flush(self) -> None:
        """Write buffered patch markers (called when an execution ends)."""
        if self._unwritten and not self._replay_only:
            pending, self._unwritten = self._unwritten, []
            await self._journal.write(*pending)

    # -- steps ------------------------------------------------------------------------
    def run(
        self, activity: ActivityDefinition[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[Any]:
        defn = as_activity(activity, what=f"ctx.run in workflow {self._id!r}")
        idx = self._take_index()
        data = defn.shape.encode_args(args, kwargs)  # SerializationError here, at the call site
        return self._step(idx, ACTIVITY, defn, data)

    async def _step(
        self, idx: int, kind: str, defn: ActivityDefinition[..., Any], data: dict[str, Any]
    ) -> Any:
        digest = codec.digest(data)
        rec = self._recorded(idx, kind, defn.name, digest, data)
        replayed = rec is not None and rec.status in (COMPLETED, FAILED)
        if not replayed:
            self._beyond_journal()
            self._inflight += 1
            try:
                # Checked here, not in the coroutine: every step passes, few have a limit.
                permit = (
                    None if defn.concurrency is None else await self._take_permit(idx, defn, data)
                )
                rec = await self._attempts(idx, kind, defn, data, digest, rec)
                await self._write(rec, fenced=rec.status != COMPLETED)
                if permit is not None:
                    await self._journal.release_permit(*permit)
            finally:
                self._inflight -= 1
                self._progress()
        note_step_answer(replayed=replayed)
        return self._settled(kind, defn, data, rec)

    async def _take_permit(
        self, idx: int, defn: ActivityDefinition[..., Any], data: dict[str, Any]
    ) -> tuple[str, str]:
        """The (key, holder) of the concurrency permit step `idx` (of an activity with a
        limit) now holds; parks the run when the step was queued instead."""
        limit = defn.concurrency
        assert limit is not None
        key, holder = limit.permit_key(defn.name, data), f"{self._id}#{idx}"
        if not await self._journal.acquire_permit(key, holder, limit.max):
            raise Suspend(wake_at=None, waiting_for=f"{PERMIT_WAIT}{key}")
        return key, holder

    async def _pace(self, defn: ActivityDefinition[..., Any], data: dict[str, Any]) -> None:
        """Wait for the attempt's slot of its rate limit (`bridge.RateLimit`)."""
        limit = defn.rate_limit
        assert limit is not None
        key = limit.bucket_key(defn.name, data)
        ready_at = await self._journal.take_token(key, limit.per_second, limit.burst)
        if ready_at > time.time():
            await asyncio.sleep(ready_at - time.time())
        self._fence()  # the lease may have run out while it waited

    def _settled(
        self, kind: str, defn: ActivityDefinition[..., Any], data: dict[str, Any], rec: StepRecord
    ) -> Any:
        """The value of a final step record, or its ActivityError raised."""
        if rec.status == COMPLETED:
            return self._completed(kind, defn, data, rec.output)
        raise ActivityError.from_json(rec.error or {})

    async def _attempts(
        self,
        idx: int,
        kind: str,
        defn: ActivityDefinition[..., Any],
        data: dict[str, Any],
        digest: str,
        rec: StepRecord | None,
    ) -> StepRecord:
        """Run attempts until one succeeds or the policy gives up; the final record, unwritten.

        `rec` is the step's retrying record when a crash cut its retries short. Each failed
        attempt that will be retried is written (attempt count and backoff survive a crash);
        the final record is left to the caller, because backends make it durable in
        different places (the sql journal, a LangGraph task write).
        """
        if any(r.kind == ATTRIBUTES for r in self._unwritten):
            # Search attributes set before this step are visible while it runs, as on
            # Temporal (whose upsert goes out with the step's scheduling).
            await self.flush()
        attempt = rec.attempt + 1 if rec is not None else 1
        prior = list(rec.attempts) if rec is not None else []
        started = rec.started_at if rec is not None else time.time()
        if rec is not None and rec.fire_at is not None and rec.fire_at > time.time():
            await asyncio.sleep(rec.fire_at - time.time())  # the backoff the crash cut short
        base = StepRecord(
            workflow_id=self._id,
            idx=idx,
            kind=kind,
            name=defn.name,
            status=RETRYING,
            digest=digest,
            args=data,
            started_at=started,
        )
        if rec is None and defn.journal_start:
            # The start, before any attempt: after a crash the code before this step sees
            # it as begun (is_replaying), so what it did then is not done again.
            await self._write(base)
        while True:
            self._fence()
            t0 = time.time()
            # The last heartbeat details of a failed attempt are kept with its failure
            # (journaled with the retrying record), which is where the retry reads them.
            live = Liveness(
                previous=next((f["heartbeat"] for f in reversed(prior) if "heartbeat" in f), None)
            )
            if defn.rate_limit is not None:
                await self._pace(defn, data)
            try:
                out = await run_attempt(
                    defn,
                    data,
                    workflow_id=self._id,
                    step=idx,
                    attempt=attempt,
                    interceptors=self._journal.interceptors,
                    liveness=live,
                    headers=self.headers,
                )
            except Exception as exc:
                failure = {
                    **error_info(exc),
                    "attempt": attempt,
                    "at": t0,
                    "duration": time.time() - t0,
                }
                if live.beaten:
                    failure["heartbeat"] = live.details
                prior = [*prior, failure]
                retryable = is_retryable(defn, exc)
                if not retryable or defn.retry.exhausted(attempt):
                    error = ActivityError(
                        activity=defn.name,
                        step=idx,
                        error_type=failure["error_type"],
                        message=failure["message"],
                        attempts=attempt,
                        non_retryable=not retryable,
                    )
                    return replace(
                        base,
                        status=FAILED,
                        error=error.to_json(),
                        attempt=attempt,
                        attempts=prior,
                        finished_at=time.time(),
                    )
                delay = retry_delay(defn, attempt, exc)
                await self._write(
                    replace(base, attempt=attempt, attempts=prior, fire_at=time.time() + delay)
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            return replace(
                base,
                status=COMPLETED,
                output=out,
                attempt=attempt,
                attempts=prior,
                finished_at=time.time(),
            )

    def _completed(
        self, kind: str, defn: ActivityDefinition[..., Any], data: dict[str, Any], out: Any
    ) -> Any:
        if kind == ACTIVITY and defn.compensate is not None:
            self._compensations.append((defn, data))
        return defn.shape.decode_result(out)

    async def gather(self, *aws: Any) -> list[Any]:
        """Wait for every branch (so in-flight steps are journaled, not abandoned), then
        raise the first failure by position, which is the same on every replay."""
        items = flatten_awaitables(aws)
        tasks = [asyncio.ensure_future(a) for a in items]
        if not tasks:
            return []
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
        ends = [t.exception() for t in tasks if isinstance(t.exception(), EndOfJournal)]
        if ends:
            raise ends[0]  # type: ignore[misc]  # a query's replay reached the journal's end
        continued = [t.exception() for t in tasks if isinstance(t.exception(), ContinueAsNew)]
        if continued:
            raise continued[0]  # type: ignore[misc]  # a branch ended the generation: no wait matters
        # A branch that diverged from the journal (or could not write it) blocks the run:
        # raised before another branch's wait, which would leave the run waiting for ever.
        for t in tasks:
            if isinstance(t.exception(), NonDeterminismError | StorageError):
                raise t.exception()  # type: ignore[misc]
        suspends = [t.exception() for t in tasks if isinstance(t.exception(), Suspend)]
        if suspends:
            wakes = [s.wake_at for s in suspends if s.wake_at is not None]  # type: ignore[union-attr]
            raise Suspend(
                wake_at=min(wakes) if wakes else None,
                waiting_for=next((s.waiting_for for s in suspends if s.waiting_for), None),  # type: ignore[union-attr]
            )
        for t in tasks:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]

    # -- waiting ----------------------------------------------------------------------
    async def sleep(self, duration: float | timedelta) -> None:
        secs = seconds(duration, what="ctx.sleep duration") or 0.0
        idx = self._take_index()
        rec = self._recorded(idx, SLEEP, "sleep", None, None)
        await self.deliver_updates()
        if rec is not None and rec.status == COMPLETED:
            if rec.attempt == ANSWERED_LATER:
                await self._hold_answer()
            return
        if rec is not None and rec.status == WAIT_CANCELLED:
            self._cancelled_wait()
        self._beyond_journal()
        begun_before = rec is not None
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
            await self._write(rec)
        if (rec.fire_at or 0.0) <= time.time():
            attempt = ANSWERED_LATER if begun_before else rec.attempt
            await self._write(
                replace(rec, status=COMPLETED, finished_at=time.time(), attempt=attempt)
            )
            if begun_before:
                await self._hold_answer()
            return
        raise Suspend(wake_at=rec.fire_at, waiting_for=None)

    async def wait_for_signal(self, name: Any, *, timeout: float | timedelta | None = None) -> Any:
        names = signal_names(name, where=f"workflow {self._id!r}")
        secs = seconds(timeout, what="wait_for_signal timeout")
        label = signal_label(name, names)
        idx = self._take_index()
        rec = self._recorded(idx, SIGNAL, label, None, None)
        await self.deliver_updates()
        if rec is not None and rec.status in (COMPLETED, TIMED_OUT):
            if rec.attempt == ANSWERED_LATER:
                await self._hold_answer()
            return signal_value(names, rec.output) if rec.status == COMPLETED else None
        begun_before = rec is not None
        if rec is not None and rec.status == WAIT_CANCELLED:
            self._cancelled_wait()
        self._beyond_journal()
        if rec is None:
            rec = self._signal_wait(idx, label, names, secs)
        pending, self._unwritten = self._unwritten, []
        if pending:
            await self._journal.write(*pending)
        if begun_before:
            rec = replace(rec, attempt=ANSWERED_LATER)  # written so with the answer
        got, payload = await self._journal.take_signal(rec)
        if got:
            self._clock = max(self._clock, time.time())
            self._steps[idx] = replace(rec, status=COMPLETED, output=payload)
            self._progress()
            if begun_before:
                await self._hold_answer()
            return signal_value(names, payload)
        if rec.fire_at is not None and rec.fire_at <= time.time():
            await self._write(replace(rec, status=TIMED_OUT, finished_at=time.time()))
            if begun_before:
                await self._hold_answer()
            return None
        raise Suspend(wake_at=rec.fire_at, waiting_for=label)

    def _signal_wait(
        self, idx: int, label: str, names: tuple[str, ...] | None, secs: float | None
    ) -> StepRecord:
        """The WAITING row of a signal wait begun now. A multi-name wait keeps its names in
        `args`, which is where the store looks for the signals it may take."""
        now = time.time()
        args: dict[str, Any] = {"timeout": secs}
        if names is not None:
            args["names"] = list(names)
        return StepRecord(
            workflow_id=self._id,
            idx=idx,
            kind=SIGNAL,
            name=label,
            status=WAITING,
            args=args,
            started_at=now,
            fire_at=None if secs is None else now + secs,
        )

    async def wait_condition(
        self, condition: Callable[[], bool], *, timeout: float | timedelta | None = None
    ) -> bool:
        """A journaled wait (kind `condition`): True once `condition()` holds, False when the
        timeout passes first; the outcome is recorded, so a replay answers the same.

        While the condition is false, it is re-evaluated each time another branch of this
        execution begins or settles an operation. Once nothing in the execution can change
        the state any more (no activity under way, no branch left to run), the run parks
        with the wait's timer armed; a signal to the run wakes it, the replay rebuilds the
        state from the journal and evaluates the condition again at the same point.
        """
        secs = seconds(timeout, what="wait_condition timeout")
        idx = self._take_index()
        rec = self._recorded(idx, CONDITION, CONDITION, None, None)
        await self.deliver_updates()
        if rec is not None and rec.status == COMPLETED:
            return await self._condition_held(condition)
        if rec is not None and rec.status == TIMED_OUT:
            if rec.attempt == ANSWERED_LATER:
                await self._hold_answer()
            return False
        if rec is not None and rec.status == WAIT_CANCELLED:
            self._cancelled_wait()
        while True:
            if condition():
                if self._replay_only:
                    return True  # as the live run would, which is all a query needs
                await self._write(self._condition_row(idx, rec, secs, COMPLETED, output=True))
                return True
            self._beyond_journal()
            if rec is None:
                rec = self._condition_row(idx, None, secs, WAITING)
                await self._write(rec)  # the timer is armed before the run can park
                continue  # the write let other branches run: look again
            if rec.fire_at is not None and rec.fire_at <= time.time():
                await self._write(self._condition_row(idx, rec, secs, TIMED_OUT))
                return False
            if not await self._others_moved(rec.fire_at):
                if condition():
                    continue  # a branch changed the state as it ended, without a step after
                return await self._condition_parks(rec, condition)

    def _condition_row(
        self, idx: int, rec: StepRecord | None, secs: float | None, status: str, output: Any = None
    ) -> StepRecord:
        now = time.time()
        if rec is None:
            rec = StepRecord(
                workflow_id=self._id,
                idx=idx,
                kind=CONDITION,
                name=CONDITION,
                status=WAITING,
                args={"timeout": secs},
                started_at=now,
                fire_at=None if secs is None else now + secs,
            )
        if status == WAITING:
            return rec
        return replace(rec, status=status, output=output, finished_at=now)

    async def _others_moved(self, fire_at: float | None) -> bool:
        """Wait until another branch of this execution may have changed workflow state:
        True when one did (or the timeout came), False when none can any more."""
        ticks = self._ticks
        for _ in range(_QUIET_TURNS):
            await asyncio.sleep(0)
            if self._ticks != ticks:
                return True
        if not self._inflight:
            return False
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        limit = None if fire_at is None else max(0.0, fire_at - time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), limit)
        return True

    async def _hold_answer(self) -> None:
        """Hold the answer of a wait begun in an earlier execution until every other branch
        of this one is blocked, and let such answers go on one at a time, in the order
        they were reached.

        The answer came after the other branches had run on until they blocked (that is
        when the run parked). Returning it at once would let the waiting branch run ahead
        of them and take journal indices they took the first time: a NonDeterminismError,
        or a run left waiting for ever. As in Temporal, where a signal is delivered only
        once every coroutine is blocked, an answer takes effect once nothing else can move.
        """
        position = self._answers
        self._answers += 1
        self._gated.append(position)
        self._inflight += 1  # a condition waiting for other branches waits for this one
        try:
            while True:
                ticks = self._ticks
                for _ in range(_GATE_TURNS):
                    await asyncio.sleep(0)
                if self._ticks != ticks:
                    continue
                if self._inflight > len(self._gated):
                    # A step is under way: look again once something changes.
                    if self._changed is None:
                        self._changed = asyncio.Event()
                    await self._changed.wait()
                    continue
                if min(self._gated) == position:
                    break
        finally:
            self._gated.remove(position)
            self._inflight -= 1
        self._progress()

    async def _condition_held(self, condition: Callable[[], bool]) -> bool:
        """A condition the journal has as met: met again once the other branches have made
        it true, as they did the first time (their answered waits are held until nothing
        else can move, `_hold_answer`); returning at once would let this branch run ahead
        of them. When nothing can move any more and it is still false, the journal's
        outcome stands."""
        while not condition():
            if not await self._others_moved(None) and not condition():
                break
        return True

    async def _condition_parks(self, rec: StepRecord, condition: Callable[[], bool]) -> bool:
        """Nothing in this execution can make the condition true: end it until a signal,
        the timeout or a cancel wakes the run (the langgraph context interrupts instead)."""
        raise Suspend(wake_at=rec.fire_at, waiting_for="a condition")

    # -- updates ----------------------------------------------------------------------
    async def deliver_updates(self) -> None:
        """Apply updates at a wait (called by every wait once it has taken its index).

        First the accepted updates the journal holds at the next indices: their handlers
        run again, in the order and at the point they first ran, so the state they changed
        is rebuilt (their recorded outcome is kept). Then, only when this execution is past
        everything its journal held (so a new row can only go at the journal's end), the
        pending requests: each is validated against the live state; a refused one is
        marked rejected and leaves no journal row; an accepted one takes the next index,
        its `update` row is written (with the request marked taken, in one transaction)
        before its handler runs, and the handler's outcome settles the row.

        Updates are delivered at waits only (`sleep`, `wait_for_signal`, `wait_condition`),
        and not at a wait inside an update handler (the handler finishes first, so a replay
        meets the rows in the order they were written): a run taking steps without waiting
        gets them at its next wait, and one that ends first refuses them (the caller gets
        WorkflowClosedError).
        """
        if self._applying:
            return  # a wait inside a handler: updates come after it, as the journal has them
        while (rec := self._steps.get(self._next)) is not None and rec.kind == UPDATE:
            await self._apply_update(self._take_index(), rec)
        if self._replay_only or self._next < self._replay_until:
            return
        for request in await self._journal.pending_updates():
            await self._accept_or_reject(request)

    async def _accept_or_reject(self, request: dict[str, Any]) -> None:
        name, args = request["name"], list(request.get("args") or [])
        try:
            validate_update(self.update_handlers, self._id, name, args)
        except (UpdateNotFoundError, UpdateRejectedError) as exc:
            self._fence()
            await self._journal.reject_update(
                request["seq"],
                {
                    "not_found": isinstance(exc, UpdateNotFoundError),
                    "error_type": getattr(exc, "error_type", "") or type(exc).__name__,
                    "reason": getattr(exc, "reason", ""),
                    "message": str(exc),
                },
            )
            return
        self._fence()
        idx = self._take_index()
        rec = StepRecord(
            workflow_id=self._id,
            idx=idx,
            kind=UPDATE,
            name=name,
            status=UPDATE_ACCEPTED,
            args={"update_id": request["update_id"], "args": args},
            started_at=time.time(),
        )
        pending, self._unwritten = self._unwritten, []
        await self._journal.accept_update(request["seq"], *pending, rec)
        self._steps[idx] = rec
        self._clock = max(self._clock, rec.started_at)
        await self._apply_update(idx, rec)

    async def _apply_update(self, idx: int, rec: StepRecord) -> None:
        """Run accepted update `rec`'s handler at index `idx`; settle its row unless the
        journal already has its outcome (then only its effect on the state is wanted)."""
        entry = self.update_handlers.get(rec.name)
        data = rec.args if isinstance(rec.args, dict) else {}
        if entry is None:
            raise NonDeterminismError(
                self._id,
                idx,
                recorded=_describe_step(rec.kind, rec.name, data.get("args")),
                current=f"no handler for update {rec.name!r} at this point",
            )
        if rec.started_at:
            self._clock = max(self._clock, rec.started_at)
        settled = rec.status in FINAL_STEP_STATUSES
        self._applying += 1
        try:
            value = await call_update_handler(entry, data.get("args") or [])
            final = None if settled else self._update_done(rec, value)
        except Suspend:
            self.waits_in_update = True
            raise
        except (NonDeterminismError, StorageError):
            raise
        except Exception as exc:
            final = (
                None
                if settled
                else replace(rec, status=FAILED, error=error_info(exc), finished_at=time.time())
            )
        finally:
            self._applying -= 1
        self._progress()
        if final is None or self._replay_only:
            return
        await self._write(final, fenced=False)

    def _update_done(self, rec: StepRecord, value: Any) -> StepRecord:
        """The completed row of update `rec` whose handler returned `value` (a failed one
        when the value is no JSON data the caller could be given)."""
        try:
            out = codec.to_jsonable(value, where=f"the result of update {rec.name!r}")
            check_payload(out, what=f"the result of update {rec.name!r}")
        except Exception as exc:
            return replace(rec, status=FAILED, error=error_info(exc), finished_at=time.time())
        return replace(rec, status=COMPLETED, output=out, finished_at=time.time())

    # -- child workflows --------------------------------------------------------------
    def start_child(
        self,
        workflow: Any,
        *args: Any,
        id: str | None = None,
        parent_close_policy: str = "terminate",
        **kwargs: Any,
    ) -> Awaitable[ChildHandle]:
        """The index is taken now (see `Context.start_child`); the start is the `child`
        row, written with the child run in one transaction."""
        where = f"ctx.start_child in workflow {self._id!r}"
        defn = check_child_call(workflow, parent_close_policy, where=where)
        idx = self._take_index()
        data = defn.shape.encode_args(args, kwargs)  # SerializationError here, at the call site
        child_id = id if id is not None else default_child_id(self._id, idx)
        return self._start_child(idx, defn, child_id, data, parent_close_policy)

    async def _start_child(
        self,
        idx: int,
        defn: WorkflowDefinition[..., Any],
        child_id: str,
        data: dict[str, Any],
        policy: str,
    ) -> ChildHandle:
        args = {"id": child_id, "args": data, "policy": policy}
        digest = codec.digest(args)
        rec = self._steps.get(idx)
        if rec is None or (rec.kind != CHILD and rec.status not in FINAL_STEP_STATUSES):
            # Not started yet: an undecided operation, where a cancel is delivered. A child
            # started and still open is decided; its wait (`result`) delivers the cancel.
            rec = self._recorded(idx, CHILD, defn.name, digest, args)
        else:
            rec = self._check_recorded(idx, CHILD, defn.name, digest, args)
        replayed = rec is not None
        if rec is None:
            self._beyond_journal()
            self._fence()
            check_id(child_id)
            check_payload(data, what=f"the input of child workflow {child_id!r}")
            rec = StepRecord(
                workflow_id=self._id,
                idx=idx,
                kind=CHILD,
                name=defn.name,
                status=WAITING,
                digest=digest,
                args=args,
                started_at=time.time(),
            )
            pending, self._unwritten = self._unwritten, []
            rec = await self._journal.start_child(*pending, rec)
            self._steps[idx] = rec
            self._progress()
        note_step_answer(replayed=replayed)
        error = rec.error or {}
        if rec.status == FAILED and error.get("status") == "ALREADY_STARTED":
            raise ChildWorkflowError.from_json(error)
        return _JournalChildHandle(self, idx, child_id, defn)

    async def child_result(self, idx: int, defn: WorkflowDefinition[..., Any]) -> Any:
        """Wait for the child started at `idx` to end: its decoded result or its
        ChildWorkflowError. While it runs the parent parks (`Suspend`); the child's end
        makes the parent runnable again, and the outcome is journaled in the parent."""
        rec = self._steps[idx]
        await self.deliver_updates()
        replayed = rec.status in FINAL_STEP_STATUSES
        if not replayed:
            self._beyond_journal()
            child_id = str(rec.args["id"])
            if self._cancel_pending or self.past_deadline():
                # Cancelling a parent that waits for a child cancels the child (whatever
                # its close policy), then the parent sees its own cancellation.
                self._fence()
                await self._journal.cancel_child(child_id)
                self.deliver_cancel()
            rec = await self._journal.settle_child(rec)
            if rec.status not in FINAL_STEP_STATUSES:
                self.awaiting_children.append(child_id)
                raise Suspend(wake_at=None, waiting_for=f"child workflow {child_id}")
            self._steps[idx] = rec
            self._progress()
        if rec.finished_at is not None:
            self._clock = max(self._clock, rec.finished_at)
        note_step_answer(replayed=replayed)
        return settled_child(rec, defn)

    async def child_command(
        self, kind: str, child_id: str, name: str = "", payload: Any = None
    ) -> None:
        """Signal (`child_signal`, `name`, `payload`) or cancel (`child_cancel`) a child,
        as a journaled step of this run, so a replay never sends it twice."""
        idx = self._take_index()
        args: dict[str, Any] = {"id": child_id}
        if kind == CHILD_SIGNAL:
            args.update(signal=name, payload=codec.to_jsonable(payload, where="a signal"))
        digest = codec.digest(args)
        rec = self._recorded(idx, kind, name or kind, digest, args)
        if rec is None:
            self._beyond_journal()
            self._fence()
            now = time.time()
            rec = StepRecord(
                workflow_id=self._id,
                idx=idx,
                kind=kind,
                name=name or kind,
                status=COMPLETED,
                digest=digest,
                args=args,
                started_at=now,
                finished_at=now,
            )
            pending, self._unwritten = self._unwritten, []
            rec = await self._journal.command_child(*pending, rec)
            self._steps[idx] = rec
        if rec.status == FAILED:
            raise ChildWorkflowError.from_json(rec.error or {})

    # -- replay-safe sources ----------------------------------------------------------
    def now(self) -> datetime:
        return utc(self._clock)

    def uuid(self) -> str:
        return str(_uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def random(self) -> float:
        return self._rng.random()

    def deprecate_patch(self, change_id: str) -> None:
        # The marker is consumed where a run recorded it (its index stays taken, so later
        # steps keep their numbers); a run reaching this point now records nothing.
        if change_id in self._patches:
            return
        self._progress()
        rec = self._steps.get(self._next)
        if rec is not None and rec.kind == PATCH and rec.name == change_id:
            self._next += 1
        self._patches[change_id] = True

    def patched(self, change_id: str) -> bool:
        if change_id in self._patches:
            return self._patches[change_id]
        self._progress()
        rec = self._steps.get(self._next)
        if rec is not None:
            answer = rec.kind == PATCH and rec.name == change_id
            if answer:
                self._next += 1
        else:
            idx = self._take_index()
            now = time.time()
            marker = StepRecord(
                workflow_id=self._id,
                idx=idx,
                kind=PATCH,
                name=change_id,
                status=COMPLETED,
                started_at=now,
                finished_at=now,
            )
            self._unwritten.append(marker)
            self._steps[idx] = marker
            answer = True
        self._patches[change_id] = answer
        return answer

    def upsert_search_attributes(self, attributes: Mapping[str | SearchAttribute, Any]) -> None:
        """Journal the change as a row of its own at the next index (buffered like a patch
        marker and written before the next step runs, or when the execution ends); the
        store applies it to the attributes table in that row's transaction. A replay finds
        the row and writes nothing, so a restart neither repeats nor loses the change."""
        encoded = encode_attributes(
            attributes, where=f"ctx.upsert_search_attributes in workflow {self._id!r}"
        )
        idx = self._take_index()
        if self._check_recorded(idx, ATTRIBUTES, ATTRIBUTES, None, encoded) is not None:
            return
        if self._replay_only:
            return  # a query's replay writes nothing; the live run records the change
        now = time.time()
        rec = StepRecord(
            workflow_id=self._id,
            idx=idx,
            kind=ATTRIBUTES,
            name=ATTRIBUTES,
            status=COMPLETED,
            args={"attributes": encoded},
            started_at=now,
            finished_at=now,
        )
        self._unwritten.append(rec)
        self._steps[idx] = rec

    # -- sagas ------------------------------------------------------------------------
    async def compensate(self) -> None:
        failures: list[ActivityError] = []
        while self._compensations:
            defn, data = self._compensations.pop()
            assert defn.compensate is not None
            try:
                await self._step(self._take_index(), COMPENSATION, defn.compensate, data)
            except ActivityError as exc:
                failures.append(exc)
        if failures:
            raise CompensationError(failures)


class _JournalChildHandle(ChildHandle):
    """A child started by a `JournaledContext`; every call goes through its context."""

    def __init__(
        self, ctx: JournaledContext, idx: int, child_id: str, defn: WorkflowDefinition[..., Any]
    ) -> None:
        self._ctx = ctx
        self._idx = idx
        self._defn = defn
        self.id = child_id

    async def result(self) -> Any:
        return await self._ctx.child_result(self._idx, self._defn)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self._ctx.child_command(CHILD_SIGNAL, self.id, name, payload)

    async def cancel(self) -> None:
        await self._ctx.child_command(CHILD_CANCEL, self.id)


def settled_child(rec: StepRecord, defn: WorkflowDefinition[..., Any]) -> Any:
    """The value of a settled `child` row: the child's result decoded to its declared
    type, or its ChildWorkflowError raised."""
    if rec.status == COMPLETED:
        return defn.shape.decode_result(rec.output)
    raise ChildWorkflowError.from_json(rec.error or {})


def signal_label(name: Any, names: tuple[str, ...] | None) -> str:
    """The name a signal wait's row carries: the signal's, or the names of a multi-name
    wait joined with `|` (what `describe().waiting_for` shows)."""
    return str(name) if names is None else "|".join(names)


def signal_value(names: tuple[str, ...] | None, output: Any) -> Any:
    """What a settled signal wait returns: the payload, or for a multi-name wait the
    `Signal` the store recorded as `{"name": ..., "payload": ...}`."""
    if names is None:
        return output
    return Signal(name=output["name"], payload=output["payload"])


@dataclass(frozen=True)
class Outcome:
    """How one execution of a run ended."""

    status: Status
    result: Any = None
    error: dict[str, Any] | None = None
    wake_at: float | None = None
    waiting_for: str | None = None
    blocked: bool = False  # NonDeterminismError: kept for a code fix, not failed
    #: The next run's input (`CallShape.encode_args` data) when the workflow called
    #: `ctx.continue_as_new`; the status is then PENDING, the run going on afresh.
    continue_with: dict[str, Any] | None = None


async def drive(
    defn: WorkflowDefinition[..., Any], ctx: JournaledContext, args: dict[str, Any]
) -> Outcome:
    """Execute the workflow once against its journal and say how it ended.

    A NonDeterminismError does not fail the run (as in Temporal): the journal is kept and
    the run waits for fixed code, because failing it would throw away finished work.

    A run whose execution deadline passed in this execution ends FAILED with
    WorkflowTimeoutError however the workflow went on after the cancellation (its
    compensations ran if it called `ctx.compensate()`), as Temporal times a run out
    whatever its code does; a parked run would otherwise be woken by its due deadline
    timer over and over.
    """
    outcome = await _drive(defn, ctx, args)
    if ctx.timed_out and not outcome.blocked:
        return Outcome(Status.FAILED, error=error_info(ctx.timeout_error()))
    return outcome


async def _drive(
    defn: WorkflowDefinition[..., Any], ctx: JournaledContext, args: dict[str, Any]
) -> Outcome:
    """`drive` before the execution deadline is taken into account."""
    token = _current_context.set(ctx)
    try:
        pos, kw = defn.shape.decode_args(args)
        value = await defn.fn(ctx, *pos, **kw)
        result = defn.shape.encode_result(value)
    except Suspend as s:
        await ctx.flush()
        return Outcome(Status.WAITING, wake_at=s.wake_at, waiting_for=s.waiting_for)
    except ContinueAsNew as c:
        await ctx.flush()
        try:
            data = defn.shape.encode_args(c.call_args, c.call_kwargs)
            check_payload(data, what=f"the continue-as-new input of workflow {ctx.workflow_id!r}")
        except Exception as exc:  # arguments the workflow cannot take: the run fails
            return Outcome(Status.FAILED, error=error_info(exc))
        return Outcome(Status.PENDING, continue_with=data)
    except asyncio.CancelledError:
        if not ctx.cancelled_by_request:
            raise  # the worker is shutting down: record nothing, another worker resumes it
        await ctx.flush()
        return Outcome(
            Status.CANCELLED, error={"error_type": "CancelledError", "message": "cancelled"}
        )
    except NonDeterminismError as exc:
        return Outcome(
            Status.WAITING,
            error=error_info(exc),
            blocked=True,
            waiting_for="a code fix (non-determinism)",
        )
    except StorageError:
        raise  # the database failed, not the workflow: the worker hands the run back
    except Exception as exc:
        await ctx.flush()
        return Outcome(Status.FAILED, error=error_info(exc))
    finally:
        _current_context.reset(token)
    await ctx.flush()
    return Outcome(Status.COMPLETED, result=result)


async def replay_for_query(
    defn: WorkflowDefinition[..., Any],
    *,
    workflow_id: str,
    steps: Iterable[StepRecord],
    args: dict[str, Any],
    started_at: float,
    cancel_requested: bool = False,
) -> JournaledContext:
    """Run `defn` against a run's recorded rows up to the journal's end, in this process,
    writing nothing and running no activity; the context, whose query handlers answer.

    It stops where a live run would take a step or wait past the journal (or where the run
    ended: returned, failed, cancelled), so the workflow's state is the run's state as of
    its last journaled operation. A NonDeterminismError (the code no longer matches the
    journal) is raised: such a run has no state the current code can tell.
    """
    ctx = JournaledContext(
        workflow_id=workflow_id,
        journal=_NoWrites(),
        steps=steps,
        started_at=started_at,
        attempt=0,
        cancel_requested=cancel_requested,
        replay_only=True,
    )
    token = _current_context.set(ctx)
    try:
        pos, kw = defn.shape.decode_args(args)
        await defn.fn(ctx, *pos, **kw)
    except (EndOfJournal, Suspend, ContinueAsNew):
        pass  # the journal's end: the live run is here, or was when it parked
    except asyncio.CancelledError:
        if not ctx.cancelled_by_request:
            raise  # the caller was cancelled, not the run
    except (NonDeterminismError, StorageError):
        raise
    except Exception:
        pass  # the run failed here; its state is what it was then
    finally:
        _current_context.reset(token)
    return ctx
