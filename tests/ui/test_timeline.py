"""The timeline bars the run page draws, from a neutral history (no server, no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.history import EventType as E
from bridge.history import HistoryEvent
from bridge.ui.timeline import bars
from bridge.ui.views import clean

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_steps_retries_updates_and_open_waits_become_bars() -> None:
    boom = {"error_type": "ValueError", "message": "boom"}
    events = [
        HistoryEvent(E.WORKFLOW_STARTED, at(0), name="wf", args={"x": 1}),
        HistoryEvent(E.STEP_SCHEDULED, at(10), step=0, name="a", attempt=1),
        HistoryEvent(
            E.STEP_FAILED,
            at(20),
            step=0,
            name="a",
            attempt=1,
            error=boom,
            details={"will_retry": True},
        ),
        HistoryEvent(
            E.STEP_COMPLETED, at(60), step=0, name="a", attempt=2, duration=0.05, result=7
        ),
        HistoryEvent(E.UPDATE_ACCEPTED, at(70), name="rename", details={"update_id": "u1"}),
        HistoryEvent(
            E.UPDATE_COMPLETED, at(80), name="rename", details={"update_id": "u1"}, error=boom
        ),
        HistoryEvent(E.STEP_SCHEDULED, at(90), step=1, name="b", attempt=1),
        HistoryEvent(
            E.STEP_FAILED,
            at(95),
            step=1,
            name="b",
            attempt=1,
            error=boom,
            details={"will_retry": False},
        ),
        HistoryEvent(E.SIGNAL_WAITING, at(100), step=2, name="go"),
    ]
    found = bars(events)
    assert [(b.kind, b.name, b.status) for b in found] == [
        ("step", "a", "completed"),
        ("update", "rename", "failed"),
        ("step", "b", "failed"),
        ("signal", "go", "open"),
    ]
    step = found[0].to_dict(T0)
    assert step["attempts"] == 2 and step["result"] == 7
    assert step["offset"] == 0.01 and abs(step["duration"] - 0.05) < 1e-9
    assert [(f["attempt"], f["will_retry"], f["error"]) for f in step["failures"]] == [
        (1, True, "ValueError: boom")
    ]
    assert found[2].error == "ValueError: boom" and found[3].end is None


def test_clean_masks_passwords_anywhere_in_a_reply() -> None:
    reply = {"engines": [{"target": "postgresql://u:pw@db/x"}], "note": "password=pw2 ok"}
    assert clean(reply) == {
        "engines": [{"target": "postgresql://u:***@db/x"}],
        "note": "password=*** ok",
    }
