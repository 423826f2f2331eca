"""Replay artefacts: a recorded run replays against unchanged code, and a change that is not
replay-safe fails with the step where code and history part."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.testing.replay import ReplayMismatch, assert_replays, load, record
from bridge.testing.trajectory import Input, run_one
from bridge.workflow import WorkflowDefinition

FAST = bridge.RetryPolicy(max_attempts=2, initial_interval=0.01)
ONCE = bridge.RetryPolicy(max_attempts=1)


@bridge.activity(retry=FAST)
async def rp_upper(label: str) -> str:
    return label.upper()


@bridge.activity(retry=FAST)
async def rp_lower(label: str) -> str:
    return label.lower()


@bridge.activity(retry=ONCE)
async def rp_refuse(label: str) -> str:
    raise PermissionError(f"refused {label}")


async def _v1(ctx: bridge.Context, who: str) -> list[Any]:
    first = await ctx.run(rp_upper, "a")
    try:
        await ctx.run(rp_refuse, "b")
        second = "accepted"
    except bridge.ActivityError as exc:
        second = exc.error_type
    third = await ctx.run(rp_upper, who)
    ok = await ctx.wait_for_signal("go", timeout=30)
    await ctx.sleep(0)
    return [first, second, third, ok]


async def _v2_other_activity(ctx: bridge.Context, who: str) -> list[Any]:
    """Step 2 calls another activity: not replay-safe."""
    first = await ctx.run(rp_upper, "a")
    try:
        await ctx.run(rp_refuse, "b")
        second = "accepted"
    except bridge.ActivityError as exc:
        second = exc.error_type
    third = await ctx.run(rp_lower, who)
    ok = await ctx.wait_for_signal("go", timeout=30)
    await ctx.sleep(0)
    return [first, second, third, ok]


async def _v3_step_dropped(ctx: bridge.Context, who: str) -> list[Any]:
    """Ends after two steps: the recorded steps 2-4 are never reached."""
    first = await ctx.run(rp_upper, "a")
    with contextlib.suppress(bridge.ActivityError):
        await ctx.run(rp_refuse, "b")
    return [first]


async def _v4_guarded(ctx: bridge.Context, who: str) -> list[Any]:
    """The v2 change guarded by ctx.patched: old runs keep the old path (replay-safe)."""
    first = await ctx.run(rp_upper, "a")
    try:
        await ctx.run(rp_refuse, "b")
        second = "accepted"
    except bridge.ActivityError as exc:
        second = exc.error_type
    if ctx.patched("lower-case"):
        third = await ctx.run(rp_lower, who)
    else:
        third = await ctx.run(rp_upper, who)
    ok = await ctx.wait_for_signal("go", timeout=30)
    await ctx.sleep(0)
    return [first, second, third, ok]


# One workflow name, four versions of its code, as a deploy would see them.
V1 = WorkflowDefinition(_v1, name="rp_flow")
V2 = WorkflowDefinition(_v2_other_activity, name="rp_flow")
V3 = WorkflowDefinition(_v3_step_dropped, name="rp_flow")
V4 = WorkflowDefinition(_v4_guarded, name="rp_flow")


async def _record_v1(settings: dict[str, Any], path: Path) -> None:
    async with await bridge.connect(settings) as client:
        async with client.worker([V1]):
            run = await run_one(
                client, V1, Input(args=("who",), signals={"go": True}), id="rp-1", timeout=60
            )
        assert run.status == "COMPLETED", run
        await record(client, "rp-1", path)


@pytest.fixture(params=["sql", "langgraph", "temporal"])
async def recorded(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    name = request.param
    settings = request.getfixturevalue(f"{name}_settings")
    path = tmp_path / f"rp-{name}.json"
    await _record_v1(settings, path)
    return name, path


async def test_unchanged_code_replays(recorded: tuple[str, Path]) -> None:
    backend, path = recorded
    report = await assert_replays(path, V1)
    assert report.steps == 5
    artefact = load(path)
    assert artefact.backend == backend and artefact.workflow == "rp_flow"
    if backend == "temporal":
        assert report.native_events is not None and report.native_events > 10
        assert json.loads(path.read_text())["native"]["events"][0]["eventType"]
    else:
        assert report.native_events is None and artefact.native is None


async def test_a_guarded_change_replays(recorded: tuple[str, Path]) -> None:
    _, path = recorded
    assert (await assert_replays(path, V4)).steps == 5


async def test_another_activity_at_step_2_fails_readably(recorded: tuple[str, Path]) -> None:
    _, path = recorded
    with pytest.raises(ReplayMismatch) as caught:
        await assert_replays(path, V2)
    message = str(caught.value)
    assert caught.value.step == 2
    assert f"{path} does not replay against the current code" in message
    assert "at step 2" in message
    assert "activity 'rp_upper'" in message and "activity 'rp_lower'" in message
    assert '>   2 activity \'rp_upper\' {"label": "who"} -> "WHO"' in message
    assert "    1 activity 'rp_refuse'" in message and "PermissionError: refused b" in message


async def test_a_dropped_step_fails_readably(recorded: tuple[str, Path]) -> None:
    _, path = recorded
    with pytest.raises(ReplayMismatch, match=r"has step 2 \(activity 'rp_upper'\) that the"):
        await assert_replays(path, V3)


async def test_temporal_replayer_checks_the_native_history(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "rp.json"
    await _record_v1(temporal_settings, path)
    with pytest.raises(ReplayMismatch) as caught:
        await assert_replays(path, V2, neutral=False)
    assert "(the temporal history)" in str(caught.value)
    message = str(caught.value)
    assert "diverged" in message and "the code now asks for activity 'rp_lower'" in message
    # Temporal names the recorded side ("scheduled event 'rp_upper'") in its own words; the
    # step number it maps to is the backend's (see docs/architecture.md, compat harness).
    assert "scheduled event 'rp_upper'" in message


def test_a_file_that_is_not_an_artefact_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"events": []}))
    with pytest.raises(bridge.ConfigError, match="is not a replay artefact"):
        load(path)
