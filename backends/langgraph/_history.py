"""A LangGraph thread as the neutral history (`bridge.history`).

The journal is read from both places it lives: finished steps are the step tasks' writes
in LangGraph's checkpoints, and waits, patch markers and retry attempts are the bridge's
own rows. Events are the sql backend's, so `bridge history ID` shows the same timeline on
both backends.
"""

from __future__ import annotations

from typing import Any

from bridge import codec
from bridge._replay import StepRecord
from bridge.backend import Status
from bridge.history import EventType as E
from bridge.history import HistoryEvent, utc

_SCHEDULED = {"activity": E.STEP_SCHEDULED, "compensation": E.COMPENSATION_SCHEDULED}
_COMPLETED = {"activity": E.STEP_COMPLETED, "compensation": E.COMPENSATION_COMPLETED}
_FAILED = {"activity": E.STEP_FAILED, "compensation": E.COMPENSATION_FAILED}


def _wait_events(r: StepRecord) -> list[HistoryEvent]:
    finished = utc(r.finished_at or r.started_at)
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
            events.append(HistoryEvent(E.TIMER_FIRED, finished, step=r.idx, name=r.name))
        return events
    events = [
        HistoryEvent(E.SIGNAL_WAITING, utc(r.started_at), step=r.idx, name=r.name, args=r.args)
    ]
    if r.status == "completed":
        events.append(
            HistoryEvent(E.SIGNAL_RECEIVED, finished, step=r.idx, name=r.name, result=r.output)
        )
    elif r.status == "timed_out":
        events.append(HistoryEvent(E.SIGNAL_TIMED_OUT, finished, step=r.idx, name=r.name))
    return events


def _step_events(r: StepRecord) -> list[HistoryEvent]:
    if r.kind == "patch":
        return [HistoryEvent(E.PATCH_MARKER, utc(r.started_at), step=r.idx, name=r.name)]
    if r.kind in ("sleep", "signal"):
        return _wait_events(r)
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


def build_history(run: Any, steps: list[StepRecord]) -> list[HistoryEvent]:
    """Events of one run from its runs row and its whole journal (sorted by index)."""
    events = [
        HistoryEvent(
            E.WORKFLOW_STARTED, utc(run.created_at), name=run.name, args=codec.loads(run.input)
        )
    ]
    for r in steps:
        events.extend(_step_events(r))
    status = Status(run.status)
    end = utc(run.updated_at)
    if status is Status.COMPLETED:
        events.append(
            HistoryEvent(E.WORKFLOW_COMPLETED, end, name=run.name, result=codec.loads(run.result))
        )
    elif status is Status.FAILED:
        events.append(
            HistoryEvent(E.WORKFLOW_FAILED, end, name=run.name, error=codec.loads(run.error))
        )
    elif status is Status.CANCELLED:
        events.append(HistoryEvent(E.WORKFLOW_CANCELLED, end, name=run.name))
    return events
