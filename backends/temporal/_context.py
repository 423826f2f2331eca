"""The Context of a neutral workflow running as a Temporal workflow, and the marks it leaves.

Temporal keeps the history itself, so nothing here journals: `ctx.run` is an activity,
`ctx.sleep` a timer, `ctx.wait_for_signal` a wait on the signals the workflow received,
`ctx.wait_condition` Temporal's `workflow.wait_condition`, `ctx.patched` Temporal's patch
marker, and `ctx.set_query_handler` fills the table the workflow class's dynamic query
handler answers from (a native Temporal query: Temporal replays a run it no longer caches).

Every step still takes the neutral step index (the same numbering as the sql journal) and
writes it where the history keeps it: in the activity id, in the timer's summary, in the memo
written when a signal wait begins and ends. `_history.py` reads those marks back into the
neutral history, and the activity shim reads the index out of the activity id for the
idempotency key.

This module is passed through Temporal's sandbox: it holds no state of its own and calls
only Temporal's deterministic workflow APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import temporalio.common
import temporalio.exceptions
from temporalio import workflow

from backends.temporal import _registry
from backends.temporal._converter import decode_payload
from bridge import codec
from bridge.activity import ActivityDefinition, RetryPolicy, as_activity, seconds
from bridge.errors import (
    ActivityError,
    ChildWorkflowError,
    CompensationError,
    UpdateNotFoundError,
    UpdateRejectedError,
    WorkflowTimeoutError,
)
from bridge.limits import check_payload
from bridge.search import SearchAttributeKind, encode_attributes, parse_datetime
from bridge.workflow import (
    ChildHandle,
    Context,
    ContinueAsNew,
    Signal,
    UpdateHandler,
    WorkflowDefinition,
    _current_context,
    answer_query,
    call_update_handler,
    check_child_call,
    default_child_id,
    flatten_awaitables,
    note_step_answer,
    signal_names,
    validate_update,
)

__all__ = ["RunState", "TemporalContext", "execute"]

ACTIVITY, COMPENSATION = "activity", "compensation"

#: Memo keys written by signal waits: the wait itself (step, signal, timeout, state) and the
#: name of the signal the run waits for now (read by `describe` without asking a worker).
WAIT_MEMO = "bridge.wait"
WAITING_FOR_MEMO = "bridge.waiting_for"
WAITING, RECEIVED, TIMED_OUT = "waiting", "received", "timed_out"
#: Memo key a child run is started with: the parent's step index that started it, which the
#: parent's history reads back (the neutral history numbers child starts like steps).
CHILD_STEP_MEMO = "bridge.parent_step"
#: Temporal's parent-close policies by the neutral names (`bridge.workflow.PARENT_CLOSE_POLICIES`).
PARENT_CLOSE = {
    "terminate": workflow.ParentClosePolicy.TERMINATE,
    "request_cancel": workflow.ParentClosePolicy.REQUEST_CANCEL,
    "abandon": workflow.ParentClosePolicy.ABANDON,
}

#: Memo key of a run started by continue-as-new: the signals its previous run had received
#: and not taken, `[[name, payload], ...]` oldest first, which this run takes first.
CARRIED_SIGNALS_MEMO = "bridge.carried_signals"
#: The run's execution deadline (epoch seconds) and timeout, in its memo: the workflow code
#: is cancelled at the deadline by a workflow timer, so it can compensate as on the journal
#: engines, and the run ends FAILED with WorkflowTimeoutError. Temporal's own execution
#: timeout is set later (`DEADLINE_GRACE_S`), as the backstop for code that never ends.
DEADLINE_MEMO = "bridge.deadline"
DEADLINE_GRACE_S = 60.0

# Temporal wants a start-to-close timeout on every activity. The declared timeout is enforced
# by the shim (so a timeout reads ActivityTimeoutError, as on sql); the server's, a little
# longer, only catches a worker that died mid-attempt. Without a declared timeout a worker's
# death is caught by the heartbeat timeout instead, and attempts may run as long as they need.
_SERVER_TIMEOUT_GRACE = 1.0
_UNLIMITED = timedelta(days=3650)
# Temporal treats a zero interval as "use the default" (1 s); zero here means "at once".
_SHORTEST_INTERVAL = timedelta(milliseconds=1)

_SUMMARY = re.compile(r"^bridge step (\d+): (sleep|signal timeout)$")


#: The patch (Temporal's marker, not a neutral step) under which a run's activity ids carry
#: the digest of the activity's arguments. Temporal compares a replayed activity's id and
#: type with its history, never its arguments; with the digest in the id, changed arguments
#: are a non-determinism error, as on sql and langgraph. Runs started before ids carried it
#: have no marker, so `workflow.patched` answers False for them and they keep the old ids.
DIGEST_IDS_PATCH = "__bridge_activity_id_digest"


def activity_id(step: int, kind: str, digest: str | None = None) -> str:
    """`"3#<digest>"` for step 3 (`"3:compensation#<digest>"` for a compensation): unique
    within a run, and different when the arguments differ. Without a digest, the format
    of runs started before that: `"3"`, `"3:compensation"`."""
    base = str(step) if kind == ACTIVITY else f"{step}:{kind}"
    return base if digest is None else f"{base}#{digest}"


def parse_activity_id(text: str) -> tuple[int, str]:
    """(step, kind) of an activity id in either format of `activity_id`."""
    head, _, _digest = text.partition("#")
    step, _, kind = head.partition(":")
    return int(step), kind or ACTIVITY


def id_digest(text: str) -> str | None:
    """The arguments' digest an activity id carries (None in the old format)."""
    return text.partition("#")[2] or None


def timer_summary(step: int, what: str) -> str:
    return f"bridge step {step}: {what}"


def parse_timer_summary(text: str) -> tuple[int, str] | None:
    """(step, "sleep" | "signal timeout") of a timer the context started, else None."""
    found = _SUMMARY.match(text)
    return (int(found.group(1)), found.group(2)) if found else None


_SEARCH_KEYS = {
    SearchAttributeKind.KEYWORD: temporalio.common.SearchAttributeKey.for_keyword,
    SearchAttributeKind.TEXT: temporalio.common.SearchAttributeKey.for_text,
    SearchAttributeKind.INT: temporalio.common.SearchAttributeKey.for_int,
    SearchAttributeKind.FLOAT: temporalio.common.SearchAttributeKey.for_float,
    SearchAttributeKind.BOOL: temporalio.common.SearchAttributeKey.for_bool,
    SearchAttributeKind.DATETIME: temporalio.common.SearchAttributeKey.for_datetime,
    SearchAttributeKind.KEYWORD_LIST: temporalio.common.SearchAttributeKey.for_keyword_list,
}


def search_key(name: str, kind: str) -> temporalio.common.SearchAttributeKey[Any]:
    """Temporal's typed key for a bridge search attribute (`bridge.search`)."""
    return _SEARCH_KEYS[SearchAttributeKind(kind)](name)


def _search_value(kind: str, value: Any) -> Any:
    return parse_datetime(value) if kind == SearchAttributeKind.DATETIME.value else value


def search_updates(
    encoded: dict[str, dict[str, Any]],
) -> list[temporalio.common.SearchAttributeUpdate[Any]]:
    """`bridge.search.encode_attributes` JSON as Temporal's upserts (None unsets)."""
    updates: list[temporalio.common.SearchAttributeUpdate[Any]] = []
    for name, item in encoded.items():
        key = search_key(name, item["kind"])
        value = item.get("value")
        if value is None:
            updates.append(key.value_unset())
        else:
            updates.append(key.value_set(_search_value(item["kind"], value)))
    return updates


def typed_search_attributes(
    encoded: dict[str, dict[str, Any]],
) -> temporalio.common.TypedSearchAttributes:
    """`bridge.search.encode_attributes` JSON (set values only) as Temporal's typed ones."""
    return temporalio.common.TypedSearchAttributes(
        [
            temporalio.common.SearchAttributePair(
                search_key(name, item["kind"]), _search_value(item["kind"], item["value"])
            )
            for name, item in encoded.items()
            if item.get("value") is not None
        ]
    )


def search_attributes_of(typed: temporalio.common.TypedSearchAttributes) -> dict[str, Any]:
    """A run's custom search attributes as Python values (Temporal's own, such as
    `TemporalChangeVersion` and `BuildIds`, are left out)."""
    return {
        pair.key.name: pair.value
        for pair in typed
        if not pair.key.name.startswith("Temporal") and pair.key.name != "BuildIds"
    }


def retry_policy(policy: RetryPolicy) -> temporalio.common.RetryPolicy:
    """The neutral policy as Temporal's; the shim marks non-retryable errors itself too, so
    subclasses of a listed exception type stop retrying exactly as on sql."""
    # RetryPolicy keeps both intervals as float seconds after its own validation.
    initial = timedelta(seconds=float(policy.initial_interval))  # type: ignore[arg-type]
    maximum = timedelta(seconds=float(policy.max_interval))  # type: ignore[arg-type]
    return temporalio.common.RetryPolicy(
        initial_interval=max(initial, _SHORTEST_INTERVAL),
        backoff_coefficient=policy.backoff,
        maximum_interval=max(maximum, _SHORTEST_INTERVAL),
        maximum_attempts=policy.max_attempts,
        non_retryable_error_types=policy.non_retryable_names(),
    )


def failures_of(details: Sequence[Any]) -> list[dict[str, Any]]:
    """The attempt failures the shim carries in failure or heartbeat details (see _activity)."""
    if details and isinstance(details[0], list):
        return [f for f in details[0] if isinstance(f, dict)]
    return []


class RunState:
    """What the workflow class keeps for one run outside the workflow code: the signals it
    received, per name until a wait takes them (numbered in arrival order, so a wait for
    several names takes the oldest), and the query handlers the code has set."""

    def __init__(self) -> None:
        self._signals: dict[str, deque[tuple[int, Any]]] = {}
        self._arrived = 0
        self.queries: dict[str, Callable[..., Any]] = {}
        self.updates: dict[str, UpdateHandler] = {}
        #: Whether the workflow code has started: an update that arrives with the start
        #: reaches the validator before the code has set any handler (a native Temporal
        #: workflow's handlers exist with its class), so until then it is let through and
        #: checked once the code has run to its first wait.
        self.code_started = False

    def add_signal(self, name: str, payload: Any) -> None:
        self._arrived += 1
        self._signals.setdefault(name, deque()).append((self._arrived, payload))

    def has_signal(self, names: Sequence[str]) -> bool:
        return any(self._signals.get(n) for n in names)

    def take_signal(self, names: Sequence[str]) -> tuple[str, Any]:
        """The oldest received signal among `names` (one must be there), taken."""
        name = min((n for n in names if self._signals.get(n)), key=lambda n: self._signals[n][0][0])
        return name, self._signals[name].popleft()[1]

    def carry(self, signals: Sequence[Sequence[Any]]) -> None:
        """Put `[name, payload]` signals a previous run left before any this run received
        (the signal handler may have run before the workflow code started)."""
        for seq, (name, payload) in enumerate(signals, start=-len(signals)):
            queue = self._signals.setdefault(name, deque())
            queue.appendleft((seq, payload))
            # appendleft in order would reverse this name's carried ones: keep them sorted.
            self._signals[name] = deque(sorted(queue, key=lambda item: item[0]))

    def pending(self) -> list[list[Any]]:
        """The received signals no wait has taken, oldest first, as `[name, payload]`."""
        queued = sorted((seq, n, p) for n, q in self._signals.items() for seq, p in q)
        return [[n, p] for _, n, p in queued]

    def answer(self, name: str, args: Sequence[Any]) -> Any:
        return answer_query(self.queries, workflow.info().workflow_id, name, args)

    def validate(self, name: str, args: Sequence[Any]) -> None:
        """The dynamic update validator: `bridge.workflow.validate_update`, its refusal as
        an ApplicationError whose type (UpdateNotFoundError / UpdateRejectedError) and
        details (the validator's error type and message) the client turns back into the
        same error as on the journal engines. Temporal journals nothing for it."""
        if name not in self.updates and not self.code_started:
            return  # checked by `apply` once the code has had the chance to set it
        try:
            validate_update(self.updates, workflow.info().workflow_id, name, args)
        except (UpdateNotFoundError, UpdateRejectedError) as exc:
            raise temporalio.exceptions.ApplicationError(
                str(exc),
                {
                    "error_type": getattr(exc, "error_type", ""),
                    "reason": getattr(exc, "reason", ""),
                },
                type=type(exc).__name__,
                non_retryable=True,
            ) from None

    async def apply(self, name: str, args: Sequence[Any]) -> Any:
        """The dynamic update handler: the handler `ctx.set_update_handler` set, its result
        as JSON data. Any exception it raises fails the update (not the workflow task,
        Temporal's default for a non-ApplicationError), carrying its type and message."""
        if name not in self.updates and not self.code_started:
            # Arrived with the start: Temporal checks conditions only once every ready task
            # has run, so by then the code has run to its first wait and set its handlers.
            await workflow.wait_condition(lambda: self.code_started)
            self.validate(name, args)  # the check the validator could not make yet
        entry = self.updates.get(name)
        if entry is None:  # removed between validation and now
            self.validate(name, args)
            raise AssertionError("unreachable")
        try:
            value = await call_update_handler(entry, args)
            out = codec.to_jsonable(value, where=f"the result of update {name!r}")
            check_payload(out, what=f"the result of update {name!r}")
            return out
        except (workflow.NondeterminismError, asyncio.CancelledError):
            raise
        except temporalio.exceptions.ApplicationError:
            raise
        except Exception as exc:
            raise temporalio.exceptions.ApplicationError(
                f"{type(exc).__name__}: {exc}",
                {"error_type": type(exc).__name__, "reason": str(exc)},
                type=type(exc).__name__,
                non_retryable=True,
            ) from None


@dataclass(frozen=True)
class _Options:
    defn: ActivityDefinition[..., Any]
    start_to_close: timedelta
    heartbeat: timedelta
    retry: temporalio.common.RetryPolicy


class TemporalContext(Context):
    """`bridge.Context` on Temporal's workflow APIs; see the module docstring."""

    def __init__(
        self,
        *,
        state: RunState,
        heartbeat_timeout: float,
        asked: dict[int, _registry.Asked] | None = None,
    ) -> None:
        info = workflow.info()
        self._id = info.workflow_id
        self._attempt = info.attempt
        self._state = state
        self._heartbeat = timedelta(seconds=heartbeat_timeout)
        self._next = 0
        self._patches: dict[str, bool] = {}
        self._compensations: list[tuple[ActivityDefinition[..., Any], dict[str, Any]]] = []
        self._random = workflow.random()
        self._built: dict[str, _Options] = {}
        self._asked = asked  # a replay's record of what the code asks (see _registry.Served)
        self._digest_ids: bool | None = None  # asked once, at the run's first activity

    @property
    def workflow_id(self) -> str:
        return self._id

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def query_handlers(self) -> dict[str, Callable[..., Any]]:
        """The run's table, which the workflow class's dynamic query handler reads."""
        return self._state.queries

    @property
    def update_handlers(self) -> dict[str, UpdateHandler]:
        """The run's table, which the workflow class's dynamic update handler calls."""
        return self._state.updates

    @property
    def sandboxed(self) -> bool:
        return True

    @property
    def is_replaying(self) -> bool:
        """Temporal's own answer: True while the worker re-applies history it already has.

        `is_replaying_history_events` rather than `is_replaying`: the two agree for workflow
        code, and the former is not made True by a query or update validator running during
        a replay, which is not a re-execution of the journal.
        """
        return workflow.unsafe.is_replaying_history_events()

    def _take_index(self) -> int:
        idx = self._next
        self._next += 1
        return idx

    # -- steps ------------------------------------------------------------------------
    def run(
        self, activity: ActivityDefinition[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[Any]:
        defn = as_activity(activity, what=f"ctx.run in workflow {self._id!r}")
        idx = self._take_index()
        data = defn.shape.encode_args(args, kwargs)  # SerializationError here, at the call site
        return self._step(idx, ACTIVITY, defn, data)

    def _options(self, defn: ActivityDefinition[..., Any]) -> _Options:
        """Temporal's options for `defn`, built once per run and activity."""
        found = self._built.get(defn.name)
        if found is None or found.defn is not defn:
            found = _Options(
                defn=defn,
                start_to_close=_UNLIMITED
                if defn.timeout is None
                else timedelta(seconds=defn.timeout + _SERVER_TIMEOUT_GRACE),
                heartbeat=self._heartbeat
                if defn.heartbeat_timeout is None
                else timedelta(seconds=defn.heartbeat_timeout),
                retry=retry_policy(defn.retry),
            )
            self._built[defn.name] = found
        return found

    async def _step(
        self, idx: int, kind: str, defn: ActivityDefinition[..., Any], data: dict[str, Any]
    ) -> Any:
        if self._asked is not None:
            self._asked[idx] = (kind, defn.name, data)
        options = self._options(defn)
        if self._digest_ids is None:
            # Asked at the first activity, not at the start: a run without activities
            # gets no marker. The answer holds for the whole run (see DIGEST_IDS_PATCH).
            self._digest_ids = workflow.patched(DIGEST_IDS_PATCH)
        digest = codec.digest(data) if self._digest_ids else None
        try:
            out = await workflow.execute_activity(
                defn.name,
                data,
                activity_id=activity_id(idx, kind, digest),
                start_to_close_timeout=options.start_to_close,
                heartbeat_timeout=options.heartbeat,
                retry_policy=options.retry,
            )
        except temporalio.exceptions.ActivityError as exc:
            note_step_answer(replayed=workflow.unsafe.is_replaying_history_events())
            raise _neutral_error(exc, defn.name, idx) from None
        # The activation that delivers the result is replayed exactly when the result is
        # in the history this worker read, i.e. was delivered before.
        note_step_answer(replayed=workflow.unsafe.is_replaying_history_events())
        if kind == ACTIVITY and defn.compensate is not None:
            self._compensations.append((defn, data))
        return defn.shape.decode_result(out)

    async def gather(self, *aws: Any) -> list[Any]:
        """Wait for every branch (no activity is left running unobserved), then raise the
        first failure by position, as the sql backend does."""
        results = await asyncio.gather(*flatten_awaitables(aws), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    # -- waiting ----------------------------------------------------------------------
    async def sleep(self, duration: float | timedelta) -> None:
        secs = seconds(duration, what="ctx.sleep duration") or 0.0
        idx = self._take_index()
        # A zero timer still leaves its events, like the sql journal's timer row.
        secs = max(secs, _SHORTEST_INTERVAL.total_seconds())
        if self._asked is not None:
            self._asked[idx] = ("sleep", "sleep", {"seconds": secs})
        await workflow.sleep(secs, summary=timer_summary(idx, "sleep"))

    async def wait_for_signal(self, name: Any, *, timeout: float | timedelta | None = None) -> Any:
        names = signal_names(name, where=f"workflow {self._id!r}")
        secs = seconds(timeout, what="wait_for_signal timeout")
        wanted = (name,) if names is None else names
        label = "|".join(wanted)  # the sql journal's label of a wait
        idx = self._take_index()
        if self._asked is not None:
            args: dict[str, Any] = {"timeout": secs}
            if names is not None:
                args["names"] = list(names)
            self._asked[idx] = ("signal", label, args)
        state = self._state
        if not state.has_signal(wanted):
            self._note_wait(idx, label, secs, WAITING)
            try:
                await workflow.wait_condition(
                    lambda: state.has_signal(wanted),
                    timeout=secs,
                    timeout_summary=timer_summary(idx, "signal timeout"),
                )
            except TimeoutError:
                self._note_wait(idx, label, secs, TIMED_OUT)
                return None
        got, payload = state.take_signal(wanted)
        self._note_wait(idx, label, secs, RECEIVED)
        return payload if names is None else Signal(name=got, payload=payload)

    async def wait_condition(
        self, condition: Callable[[], bool], *, timeout: float | timedelta | None = None
    ) -> bool:
        """Temporal's `workflow.wait_condition`: Temporal evaluates the condition after
        every activation and keeps the timeout as a timer in the history. It takes a step
        index, like the journal's condition row, so both number later steps alike."""
        secs = seconds(timeout, what="wait_condition timeout")
        idx = self._take_index()
        if self._asked is not None:
            self._asked[idx] = ("condition", "condition", {"timeout": secs})
        try:
            await workflow.wait_condition(
                condition, timeout=secs, timeout_summary=timer_summary(idx, "condition timeout")
            )
        except TimeoutError:
            return False
        return True

    def _note_wait(self, idx: int, name: str, timeout: float | None, state: str) -> None:
        workflow.upsert_memo(
            {
                WAIT_MEMO: {"step": idx, "signal": name, "timeout": timeout, "state": state},
                WAITING_FOR_MEMO: name if state == WAITING else None,
            }
        )

    # -- child workflows --------------------------------------------------------------
    def start_child(
        self,
        workflow_: Any,
        *args: Any,
        id: str | None = None,
        parent_close_policy: str = "terminate",
        **kwargs: Any,
    ) -> Awaitable[ChildHandle]:
        """Temporal's own child workflow (`workflow.start_child_workflow`) on this run's
        task queue, with Temporal's ParentClosePolicy; it takes a step index like the
        journal's `child` row, so both number later steps alike."""
        where = f"ctx.start_child in workflow {self._id!r}"
        defn = check_child_call(workflow_, parent_close_policy, where=where)
        idx = self._take_index()
        data = defn.shape.encode_args(args, kwargs)  # SerializationError here, at the call site
        child_id = id if id is not None else default_child_id(self._id, idx)
        if self._asked is not None:
            self._asked[idx] = (
                "child",
                defn.name,
                {"id": child_id, "args": data, "policy": parent_close_policy},
            )
        return self._start_child(defn, child_id, data, parent_close_policy, idx)

    async def _start_child(
        self,
        defn: WorkflowDefinition[..., Any],
        child_id: str,
        data: dict[str, Any],
        policy: str,
        idx: int,
    ) -> ChildHandle:
        check_payload(data, what=f"the input of child workflow {child_id!r}")
        try:
            handle = await workflow.start_child_workflow(
                defn.name,
                data,
                id=child_id,
                task_queue=workflow.info().task_queue,
                parent_close_policy=PARENT_CLOSE[policy],
                # An id used before is refused, as on the journal engines (one store row
                # per id), rather than Temporal's default of reusing a closed one's id.
                id_reuse_policy=temporalio.common.WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={CHILD_STEP_MEMO: idx},
            )
        except temporalio.exceptions.WorkflowAlreadyStartedError:
            raise ChildWorkflowError(
                child_id=child_id,
                workflow=defn.name,
                status="ALREADY_STARTED",
                error_type="WorkflowIdConflictError",
                message=f"a run with id {child_id!r} already exists; pass another id=",
            ) from None
        return _TemporalChildHandle(handle, defn, child_id)

    # -- replay-safe sources ----------------------------------------------------------
    def now(self) -> datetime:
        return workflow.now()

    def uuid(self) -> str:
        return str(workflow.uuid4())

    def random(self) -> float:
        return self._random.random()

    def patched(self, change_id: str) -> bool:
        """Temporal's patch marker; like a sql patch row it takes a step index only when the
        new path is taken, so both backends number the steps after it alike."""
        if change_id == DIGEST_IDS_PATCH:
            raise ValueError(
                f"ctx.patched({change_id!r}) in workflow {self._id!r}: that change id is "
                f"bridge's own (activity ids with argument digests); choose another"
            )
        if change_id not in self._patches:
            answer = workflow.patched(change_id)
            if answer:
                idx = self._take_index()
                if self._asked is not None:
                    self._asked[idx] = ("patch", change_id, None)
            self._patches[change_id] = answer
        return self._patches[change_id]

    def upsert_search_attributes(self, attributes: Any) -> None:
        """Temporal's `workflow.upsert_search_attributes`; it takes a step index like the
        journal engines' attributes row, so both number the steps after it alike. The keys
        must be registered on the server (the client registers those a start names; see
        docs/architecture.md "Search attributes")."""
        encoded = encode_attributes(
            attributes, where=f"ctx.upsert_search_attributes in workflow {self._id!r}"
        )
        workflow.upsert_search_attributes(search_updates(encoded))
        self._take_index()

    def deprecate_patch(self, change_id: str) -> None:
        """Only where the history is replayed can a patch marker be there: asking
        `workflow.patched` then consumes it (and the index it took) without recording one.
        Live, nothing is recorded, as on the journal engines, so a run started now has no
        marker and never needs the call (not `workflow.deprecate_patch`, which records
        one in every new run and would keep the call needed for them too)."""
        if change_id in self._patches:
            return
        if workflow.unsafe.is_replaying() and workflow.patched(change_id):
            idx = self._take_index()
            if self._asked is not None:
                self._asked[idx] = ("patch", change_id, None)
        self._patches[change_id] = True

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


class _TemporalChildHandle(ChildHandle):
    """A Temporal child workflow handle behind the neutral `ChildHandle`."""

    def __init__(
        self,
        handle: workflow.ChildWorkflowHandle[Any, Any],
        defn: WorkflowDefinition[..., Any],
        id: str,
    ) -> None:
        self._handle = handle
        self._defn = defn
        self.id = id

    async def result(self) -> Any:
        try:
            out = await self._handle
        except temporalio.exceptions.ChildWorkflowError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # This run is being cancelled and its child cancelled with it (Temporal
                # waits for the child's cancellation): the run sees its own cancellation.
                raise asyncio.CancelledError(
                    f"workflow {workflow.info().workflow_id!r} was cancelled"
                ) from None
            raise _child_error(exc, self.id, self._defn.name) from None
        return self._defn.shape.decode_result(out)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self._handle.signal(name, codec.to_jsonable(payload, where="a signal"))

    async def cancel(self) -> None:
        self._handle.cancel()


def _child_error(
    exc: temporalio.exceptions.ChildWorkflowError, child_id: str, name: str
) -> ChildWorkflowError:
    """Temporal's ChildWorkflowError as the neutral one, with the statuses the journal
    engines record (FAILED, CANCELLED, TERMINATED)."""
    cause = exc.cause
    status, error_type, message = "FAILED", type(cause).__name__, str(cause or exc)
    if isinstance(cause, temporalio.exceptions.CancelledError):
        status, error_type, message = "CANCELLED", "CancelledError", "cancelled"
    elif isinstance(cause, temporalio.exceptions.TerminatedError):
        status, error_type = "TERMINATED", "TerminatedError"
    elif isinstance(cause, temporalio.exceptions.ApplicationError):
        error_type, message = cause.type or "ApplicationError", cause.message
    return ChildWorkflowError(
        child_id=child_id, workflow=name, status=status, error_type=error_type, message=message
    )


def _neutral_error(exc: temporalio.exceptions.ActivityError, name: str, step: int) -> BaseException:
    """Temporal's ActivityError as bridge's, with the same fields the sql journal keeps."""
    cause = exc.cause
    if isinstance(cause, temporalio.exceptions.CancelledError):
        return asyncio.CancelledError(f"activity {name!r} (step {step}) was cancelled")
    if isinstance(cause, temporalio.exceptions.ApplicationError):
        failures = failures_of(cause.details)
        return ActivityError(
            activity=name,
            step=step,
            error_type=cause.type or "ApplicationError",
            message=cause.message,
            attempts=failures[-1]["attempt"] if failures else 1,
            non_retryable=cause.non_retryable,
        )
    if isinstance(cause, temporalio.exceptions.TimeoutError):
        # Only the server's own timeout (a worker that died or stopped heartbeating) lands
        # here; the shim reports a declared timeout as an ApplicationError.
        failures = failures_of(cause.last_heartbeat_details)
        kind = cause.type.name.lower().replace("_", "-") if cause.type is not None else "server"
        return ActivityError(
            activity=name,
            step=step,
            error_type="ActivityTimeoutError",
            message=f"Temporal's {kind} timeout ran out: {cause.message}",
            attempts=(failures[-1]["attempt"] + 1) if failures else 1,
        )
    return ActivityError(
        activity=name,
        step=step,
        error_type=type(cause).__name__ if cause is not None else type(exc).__name__,
        message=str(cause or exc),
        attempts=1,
    )


async def execute(state: RunState, args: Sequence[Any]) -> Any:
    """Run the neutral workflow this Temporal run is for; its result as JSON data.

    An exception from workflow code fails the run (WorkflowFailedError, as on sql) instead of
    Temporal's default of retrying the workflow task forever. Non-determinism (and the
    sandbox's refusals, which are a kind of it) still fail only the task: the run is kept
    and resumes when a worker with fixed code picks it up.
    """
    state.code_started = True
    info = workflow.info()
    defn, served = _registry.lookup(info.task_queue, info.workflow_type)
    ctx = TemporalContext(
        state=state, heartbeat_timeout=served.heartbeat_timeout, asked=served.asked
    )
    # A run continued as new takes the signals its previous run left first, in their order:
    # they arrived before any sent to this run.
    state.carry(workflow.memo_value(CARRIED_SIGNALS_MEMO, default=None) or [])
    deadline = workflow.memo_value(DEADLINE_MEMO, default=None)
    token = _current_context.set(ctx)
    try:
        try:
            running = _call(defn, ctx, _arguments(defn, args))
            result = await (running if deadline is None else _by_deadline(running, deadline))
            # Updates still running finish (and answer their callers) before the run ends,
            # as on the journal engines, where a handler runs inline at a wait.
            await workflow.wait_condition(workflow.all_handlers_finished)
            return result
        except ContinueAsNew as c:
            data = defn.shape.encode_args(c.call_args, c.call_kwargs)
            check_payload(data, what=f"the continue-as-new input of workflow {ctx.workflow_id!r}")
            # Temporal's own continue-as-new: the new run gets the same id and task queue.
            # The memo is given whole (Temporal would copy this run's, wait marks and all),
            # carrying the signals this run received and no wait took.
            memo: dict[str, Any] = {CARRIED_SIGNALS_MEMO: state.pending()}
            if deadline is not None:
                memo[DEADLINE_MEMO] = deadline  # the deadline spans continue-as-new
            workflow.continue_as_new(args=[data], memo=memo)
    except workflow.NondeterminismError:
        raise
    except Exception as exc:
        raise temporalio.exceptions.ApplicationError(
            _message(exc, defn.name), type=type(exc).__name__, non_retryable=True
        ) from None
    finally:
        # A run dropped from a stopped worker's cache is closed later by the garbage
        # collector, in whatever Context it runs in; the value set here lives in the run's
        # own task Context, which nothing else sees, so there is nothing to reset then.
        with contextlib.suppress(ValueError):
            _current_context.reset(token)


async def _by_deadline(running: Awaitable[Any], deadline: Sequence[float]) -> Any:
    """The workflow code, cancelled at `deadline` ([epoch seconds, timeout]) by a workflow
    timer: it sees CancelledError at its current await (and may compensate), and the run
    then fails with WorkflowTimeoutError however the code went on, as on the journal
    engines."""
    at, timeout = deadline
    task = asyncio.ensure_future(running)
    remaining = at - workflow.now().timestamp()
    try:
        await workflow.wait_condition(task.done, timeout=max(remaining, 0.001))
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise WorkflowTimeoutError(workflow.info().workflow_id, timeout) from None
    return task.result()


def _message(exc: Exception, workflow_name: str) -> str:
    """What the run's failure says. Temporal's workflow event loop answers what it cannot do
    deterministically (threads, sockets, subprocesses: `asyncio.to_thread`, an HTTP client)
    with asyncio's bare `NotImplementedError()`, which would reach the user as an empty
    message; say what happened and where to move the code instead."""
    text = str(exc)
    if text:
        return text
    if isinstance(exc, NotImplementedError):
        return (
            f"workflow {workflow_name!r} called an asyncio operation that Temporal's workflow "
            f"event loop does not provide (a thread, a socket or a subprocess: "
            f"asyncio.to_thread, an HTTP client, a sync tool run in a thread); do that work "
            f"in a bridge activity (ctx.run), whose calls are journaled steps"
        )
    return f"{type(exc).__name__} raised with no message in workflow {workflow_name!r}"


def _arguments(defn: WorkflowDefinition[..., Any], args: Sequence[Any]) -> dict[str, Any]:
    """The run's input as `CallShape.encode_args` data, keyed by parameter name.

    bridge's own start sends one payload, that dict. A raw temporalio client
    (`client.start_workflow("name", "x", 2, ...)`) sends one payload per positional
    argument; those are bound to the parameters in order. One payload that is a dict whose
    keys are all parameter names reads as bridge's form: a raw caller whose workflow takes
    a single dict with exactly such keys must wrap it (`{"param": {...}}`)."""
    values = [decode_payload(a.payload, workflow.payload_converter) for a in args]
    params = defn.shape.params
    if not values:
        return {}
    if len(values) == 1 and isinstance(values[0], dict) and set(values[0]) <= set(params):
        return values[0]
    out: dict[str, Any] = {}
    rest = list(values)
    for name, param in params.items():
        if not rest:
            break
        if param.kind is param.VAR_POSITIONAL:
            out[name], rest = rest, []
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            out[name] = rest.pop(0)
    if rest:
        raise TypeError(
            f"workflow {defn.name!r} takes {len(out)} positional argument(s) "
            f"({', '.join(params) or 'none'}) but its Temporal start gave {len(values)}; "
            f"start it with fewer arguments, or with one dict of parameters by name"
        )
    return out


async def _call(
    defn: WorkflowDefinition[..., Any], ctx: TemporalContext, data: dict[str, Any]
) -> Any:
    pos, kw = defn.shape.decode_args(data)
    value = await defn.fn(ctx, *pos, **kw)
    return defn.shape.encode_result(value)
