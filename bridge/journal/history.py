"""The SQL journal as the neutral history (`bridge.history`)."""

from __future__ import annotations

from typing import Any

from bridge import codec
from bridge.backend import Status
from bridge.history import EventType as E
from bridge.history import HistoryEvent, utc
from bridge.journal.context import (
    ATTRIBUTES,
    CHILD,
    CHILD_CANCEL,
    CHILD_SIGNAL,
    CONTINUED,
    DEADLINE,
    HEADERS,
    PARENT,
    StepRecord,
)
from bridge.journal.store import CONTINUED_MARK, run_row

_SCHEDULED = {"activity": E.STEP_SCHEDULED, "compensation": E.COMPENSATION_SCHEDULED}
_COMPLETED = {"activity": E.STEP_COMPLETED, "compensation": E.COMPENSATION_COMPLETED}
_FAILED = {"activity": E.STEP_FAILED, "compensation": E.COMPENSATION_FAILED}


def _step_events(r: StepRecord) -> list[HistoryEvent]:
    if r.kind == CONTINUED:
        return []  # told by the workflow_started event (see build_history)
    if r.kind in (DEADLINE, PARENT, HEADERS):
        return []  # a setting of the run, not an event (Temporal shows none either)
    if r.kind == ATTRIBUTES:
        return []  # search attributes are visibility data (`describe`), not a step
    if r.kind in (CHILD_SIGNAL, CHILD_CANCEL):
        return []  # sent to the child; the child's own history shows what it did
    if r.kind == CHILD:
        data = r.args if isinstance(r.args, dict) else {}
        details = {"child_id": data.get("id"), "parent_close_policy": data.get("policy")}
        events = [
            HistoryEvent(
                E.CHILD_WORKFLOW_STARTED,
                utc(r.started_at),
                step=r.idx,
                name=r.name,
                args=data.get("args"),
                details=details,
            )
        ]
        end = utc(r.finished_at or r.started_at)
        if r.status == "completed":
            events.append(
                HistoryEvent(
                    E.CHILD_WORKFLOW_COMPLETED,
                    end,
                    step=r.idx,
                    name=r.name,
                    result=r.output,
                    details=details,
                )
            )
        elif r.status == "failed":
            events.append(
                HistoryEvent(
                    E.CHILD_WORKFLOW_FAILED,
                    end,
                    step=r.idx,
                    name=r.name,
                    error=r.error,
                    details=details,
                )
            )
        return events
    if r.kind == "condition":
        # A wait_condition leaves no event, as on Temporal (whose condition timer the
        # neutral history does not show either), so histories compare across engines.
        return []
    if r.kind == "update":
        data = r.args if isinstance(r.args, dict) else {}
        details = {"update_id": data.get("update_id")}
        events = [
            HistoryEvent(
                E.UPDATE_ACCEPTED,
                utc(r.started_at),
                step=r.idx,
                name=r.name,
                args=data.get("args"),
                details=details,
            )
        ]
        if r.status in ("completed", "failed"):
            events.append(
                HistoryEvent(
                    E.UPDATE_COMPLETED,
                    utc(r.finished_at or r.started_at),
                    step=r.idx,
                    name=r.name,
                    result=r.output,
                    error=r.error,
                    details=details,
                )
            )
        return events
    if r.kind == "patch":
        return [HistoryEvent(E.PATCH_MARKER, utc(r.started_at), step=r.idx, name=r.name)]
    if r.kind == "sleep":
        events = [
            HistoryEvent(
                E.TIMER_STARTED,
                utc(r.started_at),
                step=r.idx,
                name=r.name,
                args=r.args,
                details={"fire_at": r.fire_at},
            )
        ]
        if r.status == "completed":
            events.append(
                HistoryEvent(
                    E.TIMER_FIRED, utc(r.finished_at or r.started_at), step=r.idx, name=r.name
                )
            )
        return events
    if r.kind == "signal":
        events = [
            HistoryEvent(E.SIGNAL_WAITING, utc(r.started_at), step=r.idx, name=r.name, args=r.args)
        ]
        if r.status == "completed":
            events.append(
                HistoryEvent(
                    E.SIGNAL_RECEIVED,
                    utc(r.finished_at or r.started_at),
                    step=r.idx,
                    name=r.name,
                    result=r.output,
                )
            )
        elif r.status == "timed_out":
            events.append(
                HistoryEvent(
                    E.SIGNAL_TIMED_OUT, utc(r.finished_at or r.started_at), step=r.idx, name=r.name
                )
            )
        return events
    events = [
        HistoryEvent(
            _SCHEDULED[r.kind], utc(r.started_at), step=r.idx, name=r.name, attempt=1, args=r.args
        )
    ]
    for n, failure in enumerate(r.attempts):
        final = r.status == "failed" and n == len(r.attempts) - 1
        events.append(
            HistoryEvent(
                _FAILED[r.kind],
                utc(failure["at"] + failure["duration"]),
                step=r.idx,
                name=r.name,
                attempt=failure["attempt"],
                duration=failure["duration"],
                args=r.args,
                error={"error_type": failure["error_type"], "message": failure["message"]},
                details={"will_retry": not final},
            )
        )
    if r.status == "completed":
        finished = r.finished_at or r.started_at
        events.append(
            HistoryEvent(
                _COMPLETED[r.kind],
                utc(finished),
                step=r.idx,
                name=r.name,
                attempt=r.attempt,
                duration=finished - r.started_at,
                args=r.args,
                result=r.output,
            )
        )
    return events


def build_history(workflow: Any, steps: list[StepRecord]) -> list[HistoryEvent]:
    """Events of one run from its workflow row and journal rows.

    A generation after the first says so on its `workflow_started` event (`details`:
    `generation` and `continued_from`, the id its previous generation is kept under, which
    `history` accepts); an earlier generation ends with `continued_as_new`.
    """
    details: dict[str, Any] = {}
    first = run_row(steps, CONTINUED)
    if first is not None and isinstance(first.args, dict):
        details = {
            "generation": first.args.get("generation"),
            "continued_from": first.args.get("previous"),
        }
    # A child run names its parent (and the step that started it) on its first event.
    link = run_row(steps, PARENT)
    if link is not None and isinstance(link.args, dict):
        details["parent_id"] = link.args.get("parent_id")
        details["parent_step"] = link.args.get("idx")
    events = [
        HistoryEvent(
            E.WORKFLOW_STARTED,
            utc(workflow.created_at),
            name=workflow.name,
            args=codec.loads(workflow.input),
            details=details,
        )
    ]
    for r in steps:
        events.extend(_step_events(r))
    status = Status(workflow.status)
    end = utc(workflow.updated_at)
    if status is Status.COMPLETED and workflow.waiting_for == CONTINUED_MARK:
        events.append(
            HistoryEvent(
                E.WORKFLOW_CONTINUED_AS_NEW,
                end,
                name=workflow.name,
                args=(codec.loads(workflow.result) or {}).get("continued_as_new"),
            )
        )
    elif status is Status.COMPLETED:
        events.append(
            HistoryEvent(
                E.WORKFLOW_COMPLETED, end, name=workflow.name, result=codec.loads(workflow.result)
            )
        )
    elif status is Status.FAILED:
        events.append(
            HistoryEvent(
                E.WORKFLOW_FAILED, end, name=workflow.name, error=codec.loads(workflow.error)
            )
        )
    elif status is Status.CANCELLED:
        events.append(HistoryEvent(E.WORKFLOW_CANCELLED, end, name=workflow.name))
    return events
