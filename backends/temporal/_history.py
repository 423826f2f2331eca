"""Temporal's event history as the neutral history (`bridge.history`), and its divergences.

The neutral step index of each event comes from the marks `_context.py` leaves (activity id,
timer summary, signal-wait memo); a patch marker takes the index after the steps before it,
which is how both backends number it. Temporal keeps only the last failure of a retried
activity; the shim's failure lists (see `_activity.py`) restore the others, so a retried step
shows one STEP_FAILED per failed attempt, as on the sql backend.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent as TemporalEvent
from temporalio.converter import PayloadConverter

from backends.temporal._context import (
    CARRIED_SIGNALS_MEMO,
    CHILD_STEP_MEMO,
    COMPENSATION,
    DIGEST_IDS_PATCH,
    RECEIVED,
    TIMED_OUT,
    WAIT_MEMO,
    failures_of,
    id_digest,
    parse_activity_id,
    parse_timer_summary,
)
from backends.temporal._registry import Asked
from bridge import codec
from bridge.errors import NonDeterminismError
from bridge.history import EventType as E
from bridge.history import HistoryEvent, utc

__all__ = ["build_history", "non_determinism"]

_PATCH_MARKER = "core_patch"
_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)")


@dataclass
class _Scheduled:
    step: int
    kind: str
    name: str
    args: Any
    time: datetime
    attempt: int = 1
    failed_attempts: set[int] = field(default_factory=set)


def describe_step(kind: str, name: str, args: Any) -> str:
    """A step as the sql backend's NonDeterminismError names it."""
    text = codec.dumps(args) if args is not None else ""
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{kind} {name!r}" + (f" with arguments {text}" if text else "")


def _error(failure: Failure) -> dict[str, Any]:
    if failure.HasField("application_failure_info"):
        kind = failure.application_failure_info.type or "ApplicationError"
    elif failure.HasField("timeout_failure_info"):
        kind = "ActivityTimeoutError"
    elif failure.HasField("canceled_failure_info"):
        kind = "CancelledError"
    elif failure.HasField("terminated_failure_info"):
        kind = "TerminatedError"
    else:
        kind = "Error"
    return {"error_type": kind, "message": failure.message}


class _Builder:
    def __init__(self, converter: PayloadConverter) -> None:
        self.converter = converter
        self.out: list[HistoryEvent] = []
        self.scheduled: dict[int, _Scheduled] = {}
        self.by_activity_id: dict[str, _Scheduled] = {}
        self.patch_steps: dict[str, int] = {}
        self.sleeps: dict[str, int] = {}
        self.signals: dict[str, deque[Any]] = {}
        self.waits_seen: set[int] = set()
        #: The accepted event id of each update -> (update name, update id).
        self.updates: dict[int, tuple[str, str]] = {}
        self.last_step = -1
        #: Temporal event id -> (step, description) for every event that records a step.
        self.steps_by_event: dict[int, tuple[int, str]] = {}
        #: The initiated event id of each child start -> (step, workflow, details).
        self.children: dict[int, tuple[int | None, str, dict[str, Any]]] = {}

    # -- helpers ------------------------------------------------------------------------
    def decode(self, payloads: Payloads) -> Any:
        if not payloads.payloads:
            return None
        return self.converter.from_payload(payloads.payloads[0])

    def failures(self, payloads: Payloads) -> list[dict[str, Any]]:
        return failures_of([self.decode(payloads)]) if payloads.payloads else []

    def mark(self, event_id: int, step: int, description: str) -> None:
        self.steps_by_event[event_id] = (step, description)
        self.last_step = max(self.last_step, step)

    def failed(self, s: _Scheduled, failure: dict[str, Any], *, final: bool, at: datetime) -> None:
        attempt = int(failure.get("attempt", s.attempt))
        if attempt in s.failed_attempts:
            return
        s.failed_attempts.add(attempt)
        if "at" in failure:
            at = utc(float(failure["at"]) + float(failure.get("duration", 0.0)))
        self.out.append(
            HistoryEvent(
                E.COMPENSATION_FAILED if s.kind == COMPENSATION else E.STEP_FAILED,
                at,
                step=s.step,
                name=s.name,
                attempt=attempt,
                duration=failure.get("duration"),
                args=s.args,
                error={"error_type": failure["error_type"], "message": failure["message"]},
                details={"will_retry": not final},
            )
        )

    def prior_failures(self, s: _Scheduled, last: Failure, at: datetime) -> None:
        """Failures of the attempts before `s.attempt`, from the last one Temporal kept."""
        if last.HasField("application_failure_info"):
            for f in self.failures(last.application_failure_info.details):
                self.failed(s, f, final=False, at=at)
        elif last.HasField("timeout_failure_info"):
            for f in self.failures(last.timeout_failure_info.last_heartbeat_details):
                self.failed(s, f, final=False, at=at)
            # The attempt that timed out on the server (its worker died) left no list entry.
            self.failed(s, {**_error(last), "attempt": s.attempt - 1}, final=False, at=at)

    # -- events -------------------------------------------------------------------------
    def add(self, ev: TemporalEvent) -> None:
        kind = ev.WhichOneof("attributes")
        handler = getattr(self, f"on_{kind.removesuffix('_event_attributes')}", None)
        if handler is not None:
            handler(ev, getattr(ev, kind), ev.event_time.ToDatetime(tzinfo=UTC))

    def on_workflow_execution_started(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        # A run started by continue-as-new names its previous run; the backend's `history`
        # turns the run id into the `id@run` form it accepts (`continued_from`).
        # Signals the previous run left come before any sent to this one (`RunState.carry`).
        raw = a.memo.fields.get(CARRIED_SIGNALS_MEMO)
        for name, payload in (self.converter.from_payload(raw) if raw is not None else None) or []:
            self.signals.setdefault(str(name), deque()).append(payload)
        details: dict[str, Any] = (
            {"continued_from_run": a.continued_execution_run_id}
            if a.continued_execution_run_id
            else {}
        )
        if a.HasField("parent_workflow_execution"):
            # A child run names its parent (and the step that started it), as on sql.
            details["parent_id"] = a.parent_workflow_execution.workflow_id
            raw_step = a.memo.fields.get(CHILD_STEP_MEMO)
            if raw_step is not None:
                details["parent_step"] = self.converter.from_payload(raw_step)
        self.out.append(
            HistoryEvent(
                E.WORKFLOW_STARTED,
                at,
                name=a.workflow_type.name,
                args=self.decode(a.input),
                details=details,
            )
        )

    def on_activity_task_scheduled(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        step, kind = parse_activity_id(a.activity_id)
        args = self.decode(a.input)
        s = _Scheduled(step, kind, a.activity_type.name, args, at)
        self.scheduled[ev.event_id] = s
        self.by_activity_id[a.activity_id] = s
        self.mark(ev.event_id, step, describe_step(kind, s.name, args))
        self.out.append(
            HistoryEvent(
                E.COMPENSATION_SCHEDULED if kind == COMPENSATION else E.STEP_SCHEDULED,
                at,
                step=step,
                name=s.name,
                attempt=1,
                args=args,
            )
        )

    def on_activity_task_started(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        s = self.scheduled[a.scheduled_event_id]
        s.attempt = a.attempt
        if a.HasField("last_failure"):
            self.prior_failures(s, a.last_failure, at)

    def on_activity_task_completed(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        s = self.scheduled[a.scheduled_event_id]
        self.out.append(
            HistoryEvent(
                E.COMPENSATION_COMPLETED if s.kind == COMPENSATION else E.STEP_COMPLETED,
                at,
                step=s.step,
                name=s.name,
                attempt=s.attempt,
                duration=(at - s.time).total_seconds(),
                args=s.args,
                result=self.decode(a.result),
            )
        )

    def on_activity_task_failed(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        s = self.scheduled[a.scheduled_event_id]
        listed = self.failures(a.failure.application_failure_info.details)
        for n, f in enumerate(listed):
            self.failed(s, f, final=n == len(listed) - 1, at=at)
        if not listed:
            self.failed(s, {**_error(a.failure), "attempt": s.attempt}, final=True, at=at)

    def on_activity_task_timed_out(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        s = self.scheduled[a.scheduled_event_id]
        for f in self.failures(a.failure.timeout_failure_info.last_heartbeat_details):
            self.failed(s, f, final=False, at=at)
        self.failed(s, {**_error(a.failure), "attempt": s.attempt}, final=True, at=at)

    def on_activity_task_canceled(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        s = self.scheduled[a.scheduled_event_id]
        error = {"error_type": "CancelledError", "message": "cancelled", "attempt": s.attempt}
        self.failed(s, error, final=True, at=at)

    def on_timer_started(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        summary = (
            self.converter.from_payload(ev.user_metadata.summary)
            if ev.user_metadata.HasField("summary")
            else None
        )
        parsed = parse_timer_summary(summary) if isinstance(summary, str) else None
        if parsed is None or parsed[1] != "sleep":
            return  # a signal wait's timeout: the wait's memo marks tell its story
        step = parsed[0]
        secs = a.start_to_fire_timeout.ToTimedelta().total_seconds()
        self.sleeps[a.timer_id] = step
        self.mark(ev.event_id, step, describe_step("sleep", "sleep", {"seconds": secs}))
        self.out.append(
            HistoryEvent(
                E.TIMER_STARTED,
                at,
                step=step,
                name="sleep",
                args={"seconds": secs},
                details={"fire_at": at.timestamp() + secs},
            )
        )

    def on_timer_fired(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        step = self.sleeps.get(a.timer_id)
        if step is not None:
            self.out.append(HistoryEvent(E.TIMER_FIRED, at, step=step, name="sleep"))

    # -- child workflows: the parent's step index is in the child's memo ------------------
    def on_start_child_workflow_execution_initiated(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        raw = a.memo.fields.get(CHILD_STEP_MEMO)
        step = int(self.converter.from_payload(raw)) if raw is not None else None
        policy = {1: "terminate", 2: "abandon", 3: "request_cancel"}.get(int(a.parent_close_policy))
        details = {"child_id": a.workflow_id, "parent_close_policy": policy}
        self.children[ev.event_id] = (step, a.workflow_type.name, details)
        args = self.decode(a.input)
        if step is not None:
            self.mark(ev.event_id, step, describe_step("child", a.workflow_type.name, args))
        self.out.append(
            HistoryEvent(
                E.CHILD_WORKFLOW_STARTED,
                at,
                step=step,
                name=a.workflow_type.name,
                args=args,
                details=details,
            )
        )

    def _child_ended(self, a: Any, at: datetime, status: str, error: dict[str, Any]) -> None:
        step, name, details = self.children.get(a.initiated_event_id, (None, None, {}))
        self.out.append(
            HistoryEvent(
                E.CHILD_WORKFLOW_FAILED,
                at,
                step=step,
                name=name,
                error={
                    "child_id": details.get("child_id"),
                    "workflow": name,
                    "status": status,
                    **error,
                },
                details=details,
            )
        )

    def on_child_workflow_execution_completed(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        step, name, details = self.children.get(a.initiated_event_id, (None, None, {}))
        self.out.append(
            HistoryEvent(
                E.CHILD_WORKFLOW_COMPLETED,
                at,
                step=step,
                name=name,
                result=self.decode(a.result),
                details=details,
            )
        )

    def on_child_workflow_execution_failed(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        cause = a.failure.cause if a.failure.HasField("cause") else a.failure
        self._child_ended(a, at, "FAILED", _error(cause))

    def on_child_workflow_execution_canceled(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        self._child_ended(
            a, at, "CANCELLED", {"error_type": "CancelledError", "message": "cancelled"}
        )

    def on_child_workflow_execution_terminated(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        self._child_ended(
            a, at, "TERMINATED", {"error_type": "TerminatedError", "message": "terminated"}
        )

    def on_start_child_workflow_execution_failed(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        self._child_ended(
            a,
            at,
            "ALREADY_STARTED",
            {"error_type": "WorkflowIdConflictError", "message": "the id is in use"},
        )

    def on_workflow_execution_signaled(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        self.signals.setdefault(a.signal_name, deque()).append(self.decode(a.input))

    def on_workflow_properties_modified(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        raw = a.upserted_memo.fields.get(WAIT_MEMO)
        wait = self.converter.from_payload(raw) if raw is not None and raw.data else None
        if not isinstance(wait, dict):
            return
        step, name = int(wait["step"]), str(wait["signal"])
        args = {"timeout": wait.get("timeout")}
        self.mark(ev.event_id, step, describe_step("signal", name, args))
        if step not in self.waits_seen:
            self.waits_seen.add(step)
            self.out.append(HistoryEvent(E.SIGNAL_WAITING, at, step=step, name=name, args=args))
        if wait.get("state") == RECEIVED:
            queue = self.signals.get(name)
            payload = queue.popleft() if queue else None
            self.out.append(
                HistoryEvent(E.SIGNAL_RECEIVED, at, step=step, name=name, result=payload)
            )
        elif wait.get("state") == TIMED_OUT:
            self.out.append(HistoryEvent(E.SIGNAL_TIMED_OUT, at, step=step, name=name))

    def on_workflow_execution_update_accepted(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        """An update passed its validator (a rejected one has no event, as on the journal
        engines). Temporal numbers no step for it, so `step` is None here."""
        request = a.accepted_request
        args = [self.converter.from_payload(p) for p in request.input.args.payloads]
        update_id = request.meta.update_id
        self.updates[ev.event_id] = (request.input.name, update_id)
        self.out.append(
            HistoryEvent(
                E.UPDATE_ACCEPTED,
                at,
                name=request.input.name,
                args=args,
                details={"update_id": update_id},
            )
        )

    def on_workflow_execution_update_completed(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        name, update_id = self.updates.get(a.accepted_event_id, (None, a.meta.update_id))
        outcome = a.outcome
        result = error = None
        if outcome.HasField("failure"):
            error = _error(outcome.failure)
        elif outcome.HasField("success"):
            result = self.decode(outcome.success)
        self.out.append(
            HistoryEvent(
                E.UPDATE_COMPLETED,
                at,
                name=name,
                result=result,
                error=error,
                details={"update_id": update_id},
            )
        )

    def on_marker_recorded(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        if a.marker_name != _PATCH_MARKER:
            return
        # temporalio's core writes "patch-data" (an earlier reading of "patch_data" here
        # found nothing, so patch markers had no name).
        key = next((k for k in ("patch-data", "patch_data") if k in a.details), None)
        data = self.decode(a.details[key]) if key is not None else None
        change_id = data.get("id") if isinstance(data, dict) else None
        if change_id == DIGEST_IDS_PATCH:
            return  # bridge's own id format, not a step of the workflow's
        step = self.last_step + 1
        self.patch_steps.setdefault(str(change_id), step)
        self.mark(ev.event_id, step, describe_step("patch", str(change_id), None))
        self.out.append(HistoryEvent(E.PATCH_MARKER, at, step=step, name=change_id))

    def _closed(self, kind: E, at: datetime, **values: Any) -> None:
        name = self.out[0].name if self.out else None
        self.out.append(HistoryEvent(kind, at, name=name, **values))

    def on_workflow_execution_completed(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        self._closed(E.WORKFLOW_COMPLETED, at, result=self.decode(a.result))

    def on_workflow_execution_failed(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        self._closed(E.WORKFLOW_FAILED, at, error=_error(a.failure))

    def on_workflow_execution_continued_as_new(
        self, ev: TemporalEvent, a: Any, at: datetime
    ) -> None:
        self._closed(
            E.WORKFLOW_CONTINUED_AS_NEW,
            at,
            args=self.decode(a.input),
            details={"next_run": a.new_execution_run_id},
        )

    def on_workflow_execution_canceled(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        self._closed(E.WORKFLOW_CANCELLED, at)

    def on_workflow_execution_terminated(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        error = {"error_type": "Terminated", "message": a.reason or "terminated"}
        self._closed(E.WORKFLOW_FAILED, at, error=error)

    def on_workflow_execution_timed_out(self, ev: TemporalEvent, a: Any, at: datetime) -> None:
        error = {"error_type": "TimedOut", "message": "the run's execution timeout passed"}
        self._closed(E.WORKFLOW_FAILED, at, error=error)


def _first_difference(builder: _Builder, asked: Mapping[int, Asked]) -> tuple[int, str, str] | None:
    """(step, recorded, asked) of the first step the code asked for differently from the
    history; steps past the history's last are new, not different."""
    recorded: dict[int, str] = {}
    for _event, (step, description) in sorted(builder.steps_by_event.items()):
        recorded.setdefault(step, description)
    for step in sorted(asked):
        if step > builder.last_step:
            break
        current = describe_step(*asked[step])
        there = recorded.get(step, "no step there")
        if there != current:
            return step, there, current
    return None


def _build(events: Iterable[TemporalEvent], converter: PayloadConverter) -> _Builder:
    builder = _Builder(converter)
    for ev in events:
        builder.add(ev)
    return builder


def build_history(
    events: Iterable[TemporalEvent], converter: PayloadConverter
) -> list[HistoryEvent]:
    """The neutral history of one run from its Temporal events."""
    return _build(events, converter).out


# What the code asked for, by the Temporal state machine that refused the recorded event.
_MACHINES = {
    "activity": "an activity",
    "timer": "a timer (ctx.sleep, or a signal wait with a timeout)",
    "modify workflow properties": "a signal wait",
    "upsert search attributes": "a signal wait",
    "patch": "a ctx.patched marker",
}


_TYPE_MISMATCH = re.compile(
    r"activity type of scheduled event '(.*?)' does not match activity type "
    r"of activity command '(.*?)'",
    re.IGNORECASE,
)


def _type_changed(builder: _Builder, recorded_type: str) -> tuple[int, str] | None:
    """Where an activity type changed, when Temporal's message names no event: a step that
    ran `recorded_type`; when several did, the first, saying which others it may be."""
    steps = sorted({s.step for s in builder.scheduled.values() if s.name == recorded_type})
    if not steps:
        return None
    described = dict(builder.steps_by_event.values())
    recorded = described.get(steps[0], f"activity {recorded_type!r}")
    if len(steps) > 1:
        recorded += (
            f" (Temporal names no event, and steps {', '.join(map(str, steps))} all ran "
            f"{recorded_type!r}; `bridge replay` of the history with the new code names the "
            "exact step)"
        )
    return steps[0], recorded


_ID_MISMATCH = re.compile(
    r"activity id of scheduled event '(.*?)' does not match activity id "
    r"of activity command '(.*?)'",
    re.IGNORECASE,
)


def _id_changed(builder: _Builder, message: str) -> tuple[int, str, str] | None:
    """(step, recorded, asked) when Temporal refused an activity for its id: the id carries
    the step and the arguments' digest (see `_context.activity_id`), so either the
    arguments of that step changed or the code numbers its steps differently now (a step
    added or removed before it, a `ctx.patched` call removed)."""
    found = _ID_MISMATCH.search(message)
    if not found:
        return None
    there, asked = found.group(1), found.group(2)
    s = builder.by_activity_id.get(there)
    if s is None:
        return None
    recorded = describe_step(s.kind, s.name, s.args)
    asked_step, asked_kind = parse_activity_id(asked)
    if asked_step == s.step and asked_kind == s.kind:
        current = (
            f"{s.kind} {s.name!r} with other arguments (digest {id_digest(asked)}, "
            f"the journal's {id_digest(there)})"
        )
    else:
        current = (
            f"the {asked_kind} the code numbers step {asked_step} (a step was added or "
            f"removed before it)"
        )
    return s.step, recorded, current


_PATCH_REMOVED = re.compile(r"patch marker encountered for change (.+?), but there is no")


def _patch_removed(builder: _Builder, message: str) -> tuple[int, str, str] | None:
    """(step, recorded, asked) when the code no longer calls `ctx.patched` for a marker
    the run recorded (Temporal's message names the change, not the event)."""
    found = _PATCH_REMOVED.search(message)
    step = builder.patch_steps.get(found.group(1)) if found else None
    if found is None or step is None:
        return None
    return step, describe_step("patch", found.group(1), None), "no ctx.patched call there"


def _current(message: str) -> str:
    """What the current code asked for, as far as Temporal's message tells."""
    found = _TYPE_MISMATCH.search(message)
    if found:
        return f"activity {found.group(2)!r}"
    found = re.search(r"([A-Za-z][A-Za-z ]*?) machine does not handle this event", message)
    if found:
        machine = found.group(1).strip().lower()
        return _MACHINES.get(machine, f"a {machine} command")
    if "No command scheduled for event" in message:
        return "no step there (the code ends, or waits, before it)"
    return "a different step"


def non_determinism(
    workflow_id: str,
    events: Iterable[TemporalEvent],
    converter: PayloadConverter,
    message: str,
    asked: Mapping[int, Asked] | None = None,
) -> NonDeterminismError:
    """Temporal's non-determinism report as bridge's: the step where the code and the
    history part, what the history has there and what the code asks for.

    On a replay in this process, `asked` holds every step the code asked for, and the first
    one that differs from the history's step of the same index is the divergence, as on sql
    (Temporal's message cannot always tell: an activity type mismatch names no event, and
    changed arguments are not a mismatch to Temporal at all). Otherwise the step and the
    history's side come from the event Temporal names; its message says only which kind of
    command the code issued (and the activity type, when both sides are activities).
    Temporal's own words are kept at the end."""
    builder = _build(events, converter)
    if asked:
        found_step = _first_difference(builder, asked)
        if found_step is not None:
            step, recorded, current = found_step
            return NonDeterminismError(
                workflow_id, step, recorded=recorded, current=f"{current} (Temporal: {message})"
            )
    changed = _id_changed(builder, message) or _patch_removed(builder, message)
    if changed is not None:
        step, recorded, current = changed
        return NonDeterminismError(
            workflow_id, step, recorded=recorded, current=f"{current} (Temporal: {message})"
        )
    found = _EVENT_ID.search(message)
    event_id = int(found.group(1)) if found else None
    marked = sorted(builder.steps_by_event.items())
    at = next(
        (v for k, v in marked if event_id is not None and k >= event_id),
        (builder.last_step + 1, "no further step"),
    )
    type_change = _TYPE_MISMATCH.search(message)
    if event_id is None and type_change:
        at = _type_changed(builder, type_change.group(1)) or at
    step, recorded = at
    return NonDeterminismError(
        workflow_id, step, recorded=recorded, current=f"{_current(message)} (Temporal: {message})"
    )
