"""Differential testing: normalized trajectories, and the first difference between two runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bridge
from bridge.history import EventType as E
from bridge.history import HistoryEvent
from bridge.testing.trajectory import (
    Difference,
    Input,
    Step,
    TrajectoryMismatch,
    assert_same_trajectory,
    first_difference,
    normalize,
)
from tests.conftest import BACKENDS

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


# -- normalize ------------------------------------------------------------------------------
def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_normalize_drops_clocks_retries_and_finish_order() -> None:
    """Two histories of the same behaviour (different times, one extra transient failure,
    gather branches finishing in another order) normalize to the same trajectory."""
    boom = {"error_type": "ConnectionError", "message": "reset"}

    def history(offset: float, retries: int, swap: bool) -> list[HistoryEvent]:
        branches = [
            HistoryEvent(
                E.STEP_COMPLETED, _at(offset + 3), step=1, name="sq", args={"x": 2}, result=4
            ),
            HistoryEvent(
                E.STEP_COMPLETED, _at(offset + 4), step=2, name="sq", args={"x": 3}, result=9
            ),
        ]
        return [
            HistoryEvent(E.WORKFLOW_STARTED, _at(offset), name="wf", args={"n": 1}),
            HistoryEvent(E.STEP_SCHEDULED, _at(offset + 1), step=0, name="fetch", args={"u": "a"}),
            *[
                HistoryEvent(
                    E.STEP_FAILED,
                    _at(offset + 1.5),
                    step=0,
                    name="fetch",
                    attempt=n + 1,
                    duration=0.1 * n,
                    args={"u": "a"},
                    error=boom,
                    details={"will_retry": True},
                )
                for n in range(retries)
            ],
            HistoryEvent(
                E.STEP_COMPLETED,
                _at(offset + 2),
                step=0,
                name="fetch",
                attempt=retries + 1,
                duration=offset,
                args={"u": "a"},
                result="page",
            ),
            *(reversed(branches) if swap else branches),
            HistoryEvent(
                E.TIMER_STARTED, _at(offset + 5), step=3, name="sleep", args={"seconds": 0.001}
            ),
            HistoryEvent(E.TIMER_FIRED, _at(offset + 6), step=3, name="sleep"),
            HistoryEvent(
                E.SIGNAL_WAITING, _at(offset + 7), step=4, name="ok", args={"timeout": None}
            ),
            HistoryEvent(E.SIGNAL_RECEIVED, _at(offset + 8), step=4, name="ok", result=True),
            HistoryEvent(E.WORKFLOW_COMPLETED, _at(offset + 9), name="wf", result=[4, 9]),
        ]

    a = normalize(history(0, retries=1, swap=False))
    b = normalize(history(100, retries=2, swap=True))
    assert a == b
    assert a == [
        Step(0, "activity", "fetch", {"u": "a"}, "page"),
        Step(1, "activity", "sq", {"x": 2}, 4),
        Step(2, "activity", "sq", {"x": 3}, 9),
        Step(3, "sleep", "sleep", {"seconds": 0.0}),
        Step(4, "signal", "ok", {"timeout": None}, True),
        Step(None, "completed", "", result=[4, 9]),
    ]


def test_first_difference_names_position_field_and_both_values() -> None:
    ref = [Step(0, "activity", "a", {"x": 1}, 1), Step(1, "activity", "b", {"x": 2}, 2)]
    cand = [Step(0, "activity", "a", {"x": 1}, 1), Step(1, "activity", "b", {"x": 2}, 3)]
    diff = first_difference(ref, cand)
    assert diff is not None
    assert (diff.position, diff.field, diff.reference, diff.candidate) == (1, "result", 2, 3)
    assert diff.describe("sql", "temporal") == (
        "step 1 (activity 'b'), field 'result': sql 2, temporal 3"
    )
    shorter = first_difference(ref, cand[:1])
    assert shorter is not None
    assert shorter.describe("sql", "langgraph") == (
        "sql has step 1 (activity 'b'), langgraph has nothing there"
    )
    assert first_difference(ref, list(ref)) is None
    longer = first_difference(ref[:1], ref)
    assert longer is not None
    assert longer.describe("sql", "temporal") == (
        "temporal has an extra step 1 (activity 'b'), sql has nothing there"
    )
    ended = Difference(0, "status", "COMPLETED", {"error_type": "Timeout"}, None, None)
    assert ended.describe("sql", "temporal") == (
        'the runs ended differently: sql "COMPLETED", temporal {"error_type": "Timeout"}'
    )


def test_input_of_reads_every_spelling() -> None:
    assert Input.of(["a", 1]).args == ("a", 1)
    assert Input.of("topic").args == ("topic",)
    full = Input.of({"args": ["t"], "signals": {"approve": True}, "label": "one"})
    assert (full.args, dict(full.signals), full.label) == (("t",), {"approve": True}, "one")
    with pytest.raises(ValueError, match="unknown keys"):
        Input.of({"args": [], "signal": {}})


# -- differential runs on real backends -----------------------------------------------------
@bridge.activity(retry=FAST)
async def tr_fetch(url: str) -> str:
    if bridge.activity_info().attempt == 1:
        raise ConnectionError(f"first fetch of {url} fails")
    return f"page of {url}"


@bridge.activity(retry=FAST)
async def tr_square(x: int) -> int:
    return x * x


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=1))
async def tr_refuse(reason: str) -> str:
    raise PermissionError(reason)


@bridge.workflow
async def tr_flow(ctx: bridge.Context, url: str, xs: list[int]) -> dict[str, Any]:
    page = await ctx.run(tr_fetch, url)
    squares = await ctx.gather(ctx.run(tr_square, x) for x in xs)
    await ctx.sleep(0)
    decision = await ctx.wait_for_signal("approve", timeout=30)
    if not decision:
        await ctx.run(tr_refuse, "not approved")
    return {"page": page, "squares": squares, "approved": decision}


@bridge.workflow
async def tr_flow_changed(ctx: bridge.Context, url: str, xs: list[int]) -> dict[str, Any]:
    """tr_flow with its gather's arguments doubled: the trajectory differs at step 1."""
    page = await ctx.run(tr_fetch, url)
    squares = await ctx.gather(ctx.run(tr_square, 2 * x) for x in xs)
    await ctx.sleep(0)
    decision = await ctx.wait_for_signal("approve", timeout=30)
    return {"page": page, "squares": squares, "approved": decision}


INPUTS = [
    {"args": ["https://a.example", [1, 2]], "signals": {"approve": True}, "label": "approved"},
    {"args": ["https://b.example", [3]], "signals": {"approve": False}, "label": "refused"},
]


@pytest.mark.parametrize("candidate", [b for b in BACKENDS if b != "sql"])
async def test_same_trajectory_on_sql_and_each_backend(
    candidate: str, request: pytest.FixtureRequest
) -> None:
    settings = {
        "sql": request.getfixturevalue("sql_settings"),
        candidate: request.getfixturevalue(f"{candidate}_settings"),
    }
    comparisons = await assert_same_trajectory(
        tr_flow, INPUTS, backends=["sql", candidate], settings=settings, timeout=60
    )
    assert [c.same for c in comparisons] == [True, True]
    approved, refused = comparisons
    # The comparison saw real work: a retried fetch settled once, a gather, a signal.
    assert [s.kind for s in approved.reference.trajectory] == [
        "activity",
        "activity",
        "activity",
        "sleep",
        "signal",
        "completed",
    ]
    assert approved.reference.trajectory[0].result == "page of https://a.example"
    assert refused.candidate.trajectory[-1].kind == "failed"
    assert refused.candidate.trajectory[-1].error == {
        "error_type": "ActivityError",
        "message": refused.reference.trajectory[-1].error["message"],  # type: ignore[index]
    }


async def test_a_changed_workflow_is_reported_at_its_first_differing_step(
    request: pytest.FixtureRequest,
) -> None:
    settings = {
        "sql": request.getfixturevalue("sql_settings"),
        "langgraph": request.getfixturevalue("langgraph_settings"),
    }
    with pytest.raises(TrajectoryMismatch) as caught:
        await assert_same_trajectory(
            tr_flow,
            INPUTS[:1],
            backends=["sql", "langgraph"],
            settings=settings,
            candidate_workflow=tr_flow_changed,
        )
    message = str(caught.value)
    assert "1 of 1 inputs ran differently" in message
    assert "input #0 approved" in message
    assert "step 1 (activity 'tr_square'), field 'args'" in message
    assert 'sql {"x": 1}' in message and '{"x": 2}' in message
    (comparison,) = caught.value.comparisons
    assert comparison.difference is not None and comparison.difference.position == 1
