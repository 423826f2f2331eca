"""A run's neutral history as the bars of its timeline chart.

Every engine exports the same `HistoryEvent`s (`bridge.history`), so one function draws a
run of any engine: each journaled step, timer, signal wait, update, compensation and child
run becomes one bar from its first event to its last, with its attempts and the failures
that were retried. The browser only places the bars; nothing engine-specific reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.history import EventType, HistoryEvent

__all__ = ["Bar", "bars", "error_text"]

# event type -> (bar kind, what the event does to its bar)
_BEGIN, _END, _FAIL = "begin", "end", "fail"
_EVENTS: dict[EventType, tuple[str, str]] = {
    EventType.STEP_SCHEDULED: ("step", _BEGIN),
    EventType.STEP_COMPLETED: ("step", _END),
    EventType.STEP_FAILED: ("step", _FAIL),
    EventType.TIMER_STARTED: ("timer", _BEGIN),
    EventType.TIMER_FIRED: ("timer", _END),
    EventType.SIGNAL_WAITING: ("signal", _BEGIN),
    EventType.SIGNAL_RECEIVED: ("signal", _END),
    EventType.SIGNAL_TIMED_OUT: ("signal", _END),
    EventType.UPDATE_ACCEPTED: ("update", _BEGIN),
    EventType.UPDATE_COMPLETED: ("update", _END),
    EventType.COMPENSATION_SCHEDULED: ("compensation", _BEGIN),
    EventType.COMPENSATION_COMPLETED: ("compensation", _END),
    EventType.COMPENSATION_FAILED: ("compensation", _FAIL),
    EventType.CHILD_WORKFLOW_STARTED: ("child", _BEGIN),
    EventType.CHILD_WORKFLOW_COMPLETED: ("child", _END),
    EventType.CHILD_WORKFLOW_FAILED: ("child", _END),
}


def error_text(error: dict[str, Any] | None) -> str | None:
    """`ErrorType: message`, as `bridge history` prints an error."""
    if not error:
        return None
    return f"{error.get('error_type', 'Error')}: {error.get('message', '')}"


@dataclass
class Bar:
    """One bar: `status` is `completed`, `failed`, `timed_out` or `open` (still running or
    waiting); `failures` are the attempts that failed (`will_retry` when retried)."""

    kind: str
    name: str
    step: int | None
    start: datetime
    end: datetime | None = None
    status: str = "open"
    attempts: int | None = None
    args: Any = None
    result: Any = None
    error: str | None = None
    detail: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, origin: datetime) -> dict[str, Any]:
        """JSON for the page; times also as seconds from `origin` (the run's start), which
        is all the chart needs to place the bar."""
        return {
            "kind": self.kind,
            "name": self.name,
            "step": self.step,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "offset": (self.start - origin).total_seconds(),
            "duration": None if self.end is None else (self.end - self.start).total_seconds(),
            "status": self.status,
            "attempts": self.attempts,
            "args": self.args,
            "result": self.result,
            "error": self.error,
            "detail": self.detail,
            "failures": [
                {**f, "offset": (f["time"] - origin).total_seconds(), "time": f["time"].isoformat()}
                for f in self.failures
            ],
        }


def bars(events: list[HistoryEvent]) -> list[Bar]:
    """The bars of `events`, in the order each began (which is the run's order of steps)."""
    found: dict[tuple[str, object], Bar] = {}
    for n, event in enumerate(events):
        known = _EVENTS.get(event.type)
        if known is None:
            continue
        kind, effect = known
        bar = found.get(_key(kind, event, n))
        if bar is None:
            bar = Bar(kind=kind, name=event.name or kind, step=event.step, start=event.time)
            found[_key(kind, event, n)] = bar
        _apply(bar, event, effect)
    return sorted(found.values(), key=lambda b: (b.start, b.step if b.step is not None else -1))


def _key(kind: str, event: HistoryEvent, position: int) -> tuple[str, object]:
    """What ties a bar's events together: the update id for updates (they have no step),
    else the journal step; an event with neither is a bar of its own."""
    if kind == "update" and event.details.get("update_id") is not None:
        return kind, event.details["update_id"]
    if event.step is not None:
        return kind, event.step
    return kind, f"#{position}"


def _apply(bar: Bar, event: HistoryEvent, effect: str) -> None:
    if event.attempt is not None:
        bar.attempts = max(bar.attempts or 0, event.attempt)
    if bar.args is None and event.args is not None:
        bar.args = event.args
    child = event.details.get("child_id")
    if child is not None:
        bar.detail = f"child run {child}"
    if effect == _BEGIN:
        return
    if effect == _FAIL:
        will_retry = bool(event.details.get("will_retry"))
        bar.failures.append(
            {
                "attempt": event.attempt,
                "time": event.time,
                "error": error_text(event.error),
                "will_retry": will_retry,
            }
        )
        if will_retry:
            return
    # The bar ends here: a completion (with the whole step's time in `duration`, retries
    # included, so the bar starts where the first attempt did) or a final failure.
    bar.end = event.time
    if event.duration is not None and effect == _END:
        started = event.time.timestamp() - event.duration
        if started < bar.start.timestamp():
            bar.start = datetime.fromtimestamp(started, tz=event.time.tzinfo)
    if event.error is not None:
        bar.status, bar.error = "failed", error_text(event.error)
    elif event.type is EventType.SIGNAL_TIMED_OUT:
        bar.status = "timed_out"
    else:
        bar.status, bar.result = "completed", event.result
