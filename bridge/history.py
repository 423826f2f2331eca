"""The neutral event history every backend exports.

One shape for the CLI timeline (`bridge history ID`), the compatibility harness (trajectory
comparison) and journal portability (seeding a run on another engine).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["EventType", "HistoryEvent", "from_json", "normalize", "step_sequence", "to_json"]


class EventType(enum.StrEnum):
    WORKFLOW_STARTED = "workflow_started"
    STEP_SCHEDULED = "step_scheduled"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    TIMER_STARTED = "timer_started"
    TIMER_FIRED = "timer_fired"
    SIGNAL_WAITING = "signal_waiting"
    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_TIMED_OUT = "signal_timed_out"
    COMPENSATION_SCHEDULED = "compensation_scheduled"
    COMPENSATION_COMPLETED = "compensation_completed"
    COMPENSATION_FAILED = "compensation_failed"
    PATCH_MARKER = "patch_marker"
    #: An update passed its validator and was journaled; `args` are its arguments,
    #: `details["update_id"]` its id (a rejected update leaves no event, as on Temporal).
    UPDATE_ACCEPTED = "update_accepted"
    #: An accepted update's handler returned (`result`) or raised (`error`).
    UPDATE_COMPLETED = "update_completed"
    #: The run started a child workflow: `name` its workflow, `args` its input,
    #: `details["child_id"]` its id and `details["parent_close_policy"]`.
    CHILD_WORKFLOW_STARTED = "child_workflow_started"
    #: A child workflow the run awaited completed (`result`).
    CHILD_WORKFLOW_COMPLETED = "child_workflow_completed"
    #: A child workflow the run awaited failed, was cancelled or terminated (`error`, whose
    #: `status` says which).
    CHILD_WORKFLOW_FAILED = "child_workflow_failed"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_CANCELLED = "workflow_cancelled"
    #: The last event of a run that continued as new; `args` is the next run's input.
    WORKFLOW_CONTINUED_AS_NEW = "continued_as_new"


@dataclass(frozen=True)
class HistoryEvent:
    """One event. `step` is the journal index. `duration` (seconds) is one attempt's time
    on a failure event and the whole step's time, retries and backoff included, on a
    completion (Temporal's schedule-to-close). `args`/`result`/`error` are JSON data."""

    type: EventType
    time: datetime
    step: int | None = None
    name: str | None = None
    attempt: int | None = None
    duration: float | None = None
    args: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["time"] = self.time.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEvent:
        values = dict(data)
        values["type"] = EventType(values["type"])
        values["time"] = datetime.fromisoformat(values["time"])
        return cls(**values)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def to_json(events: Iterable[HistoryEvent]) -> str:
    return json.dumps([e.to_dict() for e in events], indent=2, ensure_ascii=False)


def from_json(text: str) -> list[HistoryEvent]:
    return [HistoryEvent.from_dict(d) for d in json.loads(text)]


# Fields that differ between two correct runs (clocks, attempt timing) are left out, so two
# engines that did the same work produce equal normalized histories.
_NORMALIZED_TYPES = {
    EventType.STEP_COMPLETED,
    EventType.STEP_FAILED,
    EventType.SIGNAL_RECEIVED,
    EventType.SIGNAL_TIMED_OUT,
    EventType.TIMER_FIRED,
    EventType.COMPENSATION_COMPLETED,
    EventType.COMPENSATION_FAILED,
    EventType.PATCH_MARKER,
    EventType.WORKFLOW_COMPLETED,
    EventType.WORKFLOW_FAILED,
    EventType.WORKFLOW_CANCELLED,
    EventType.WORKFLOW_CONTINUED_AS_NEW,
}


def normalize(events: Iterable[HistoryEvent]) -> list[dict[str, Any]]:
    """The engine-independent trajectory: which steps ran, with what, giving what."""
    out = []
    for e in events:
        if e.type not in _NORMALIZED_TYPES:
            continue
        if e.type is EventType.STEP_FAILED and e.details.get("will_retry"):
            continue  # how many transient failures happened is timing, not behaviour
        item: dict[str, Any] = {"type": e.type.value}
        if e.name is not None:
            item["name"] = e.name
        if e.args is not None:
            item["args"] = e.args
        if e.result is not None:
            item["result"] = e.result
        if e.error is not None:
            item["error"] = {k: e.error.get(k) for k in ("error_type", "message")}
        out.append(item)
    return out


def step_sequence(events: Iterable[HistoryEvent]) -> list[str]:
    """Names of completed steps in order: the short answer to 'what ran?'."""
    return [e.name or "" for e in events if e.type is EventType.STEP_COMPLETED]
