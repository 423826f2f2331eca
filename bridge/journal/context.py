"""The replaying Context shared by backends that keep their own journal (sql, langgraph).

A run is executed by calling the workflow function from the top every time a worker picks
it up. Each journaled operation takes the next index; if the journal has a row there, the
recorded outcome is returned (after checking the step's name and argument digest), otherwise
the operation runs live and its row is made durable *before* the workflow sees the result.
Waiting (timers, signals) ends the execution with `Suspend`, so nothing is held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import random as _random
import time
import uuid as _uuid
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bridge import codec
from bridge._execute import error_info, is_retryable, run_attempt
from bridge.activity import ActivityDefinition, as_activity, seconds
from bridge.backend import Status
from bridge.errors import (
    ActivityError,
    CompensationError,
    NonDeterminismError,
    StorageError,
)
from bridge.history import utc
from bridge.workflow import Context, WorkflowDefinition, _current_context, flatten_awaitables

if TYPE_CHECKING:
    from bridge.interceptors import Interceptor

__all__ = ["JournaledContext", "Outcome", "RunJournal", "StepRecord", "Suspend", "drive"]

# Step kinds and statuses as stored.
ACTIVITY, SLEEP, SIGNAL, PATCH, COMPENSATION = (
    "activity",
    "sleep",
    "signal",
    "patch",
    "compensation",
)
COMPLETED, FAILED, RETRYING, WAITING, TIMED_OUT = (
    "completed",
    "failed",
    "retrying",
    "waiting",
    "timed_out",
)
FINAL_STEP_STATUSES = frozenset({COMPLETED, FAILED, TIMED_OUT})


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


class Suspend(BaseException):
    """Ends an execution that must wait; a BaseException so `except Exception` in user
    code cannot swallow it."""

    def __init__(self, *, wake_at: float | None, waiting_for: str | None) -> None:
        super().__init__(waiting_for or "timer")
        self.wake_at = wake_at
        self.waiting_for = waiting_for


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
        before it is running for the first time."""
        return self._next < self._replay_until

    # -- journal plumbing -------------------------------------------------------------
    def _take_index(self) -> int:
        idx = self._next
        self._next += 1
        return idx

    def _recorded(
        self, idx: int, kind: str, name: str, digest: str | None, args: Any
    ) -> StepRecord | None:
        rec = self._steps.get(idx)
        if self._cancel_pending and (rec is None or rec.status not in FINAL_STEP_STATUSES):
            # Cancellation is delivered once, at the first operation the journal has not
            # decided (a new step, or a wait still open), as in Temporal; the workflow may
            # catch it and compensate.
            self._cancel_pending = False
            self.cancelled_by_request = True
            raise asyncio.CancelledError(f"workflow {self._id!r} was cancelled")
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
        if fenced:
            self._fence()
        pending, self._unwritten = self._unwritten, []
        await self._journal.write(*pending, rec)
        self._steps[rec.idx] = rec
        if rec.finished_at is not None:
            self._clock = max(self._clock, rec.finished_at)

    async def flush(self) -> None:
        """Write buffered patch markers (called when an execution ends)."""
        if self._unwritten:
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
        if rec is None or rec.status not in (COMPLETED, FAILED):
            rec = await self._attempts(idx, kind, defn, data, digest, rec)
            await self._write(rec, fenced=rec.status != COMPLETED)
        return self._settled(kind, defn, data, rec)

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
        while True:
            self._fence()
            t0 = time.time()
            try:
                out = await run_attempt(
                    defn,
                    data,
                    workflow_id=self._id,
                    step=idx,
                    attempt=attempt,
                    interceptors=self._journal.interceptors,
                )
            except Exception as exc:
                failure = {
                    **error_info(exc),
                    "attempt": attempt,
                    "at": t0,
                    "duration": time.time() - t0,
                }
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
                delay = defn.retry.delay(attempt)
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
        if rec is not None and rec.status == COMPLETED:
            return
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
            await self._write(replace(rec, status=COMPLETED, finished_at=time.time()))
            return
        raise Suspend(wake_at=rec.fire_at, waiting_for=None)

    async def wait_for_signal(self, name: str, *, timeout: float | timedelta | None = None) -> Any:
        secs = seconds(timeout, what="wait_for_signal timeout")
        idx = self._take_index()
        rec = self._recorded(idx, SIGNAL, name, None, None)
        if rec is not None and rec.status == COMPLETED:
            return rec.output
        if rec is not None and rec.status == TIMED_OUT:
            return None
        if rec is None:
            now = time.time()
            rec = StepRecord(
                workflow_id=self._id,
                idx=idx,
                kind=SIGNAL,
                name=name,
                status=WAITING,
                args={"timeout": secs},
                started_at=now,
                fire_at=None if secs is None else now + secs,
            )
        pending, self._unwritten = self._unwritten, []
        if pending:
            await self._journal.write(*pending)
        got, payload = await self._journal.take_signal(rec)
        if got:
            self._clock = max(self._clock, time.time())
            self._steps[idx] = replace(rec, status=COMPLETED, output=payload)
            return payload
        if rec.fire_at is not None and rec.fire_at <= time.time():
            await self._write(replace(rec, status=TIMED_OUT, finished_at=time.time()))
            return None
        raise Suspend(wake_at=rec.fire_at, waiting_for=name)

    # -- replay-safe sources ----------------------------------------------------------
    def now(self) -> datetime:
        return utc(self._clock)

    def uuid(self) -> str:
        return str(_uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def random(self) -> float:
        return self._rng.random()

    def patched(self, change_id: str) -> bool:
        if change_id in self._patches:
            return self._patches[change_id]
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


@dataclass(frozen=True)
class Outcome:
    """How one execution of a run ended."""

    status: Status
    result: Any = None
    error: dict[str, Any] | None = None
    wake_at: float | None = None
    waiting_for: str | None = None
    blocked: bool = False  # NonDeterminismError: kept for a code fix, not failed


async def drive(
    defn: WorkflowDefinition[..., Any], ctx: JournaledContext, args: dict[str, Any]
) -> Outcome:
    """Execute the workflow once against its journal and say how it ended.

    A NonDeterminismError does not fail the run (as in Temporal): the journal is kept and
    the run waits for fixed code, because failing it would throw away finished work.
    """
    token = _current_context.set(ctx)
    try:
        pos, kw = defn.shape.decode_args(args)
        value = await defn.fn(ctx, *pos, **kw)
        result = defn.shape.encode_result(value)
    except Suspend as s:
        await ctx.flush()
        return Outcome(Status.WAITING, wake_at=s.wake_at, waiting_for=s.waiting_for)
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
