"""Crash injection: a real worker process SIGKILLed at a chosen point, resumed, and counted.

The workflows live here at module level: the worker subprocess imports this module.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.testing import ledger
from bridge.testing.crash import (
    CrashCheckError,
    KillPoint,
    crash_and_resume,
    settings_env,
)

FAST = bridge.RetryPolicy(max_attempts=5, initial_interval=0.05)
MODULE = "tests.testing.test_crash_injection"


@bridge.activity(retry=FAST)
async def ci_charge(ledger_path: str, cents: int, *, idempotency_key: str) -> str:
    """Idempotent: commits its side effect under its key at most once."""
    await asyncio.to_thread(ledger.record_once, ledger_path, idempotency_key, "ci_charge")
    return f"charged {cents}"


@bridge.activity(retry=FAST)
def ci_ship(ledger_path: str, item: str, *, idempotency_key: str) -> str:
    """A blocking (sync) activity, idempotent too."""
    ledger.record_once(ledger_path, idempotency_key, "ci_ship")
    return f"shipped {item}"


@bridge.activity(retry=FAST)
async def ci_notify_naive(ledger_path: str, *, idempotency_key: str) -> str:
    """Ignores its key: every attempt commits another side effect."""
    await asyncio.to_thread(ledger.record, ledger_path, idempotency_key, "ci_notify_naive")
    return "notified"


@bridge.workflow
async def ci_order(ctx: bridge.Context, ledger_path: str, items: list[str]) -> list[str]:
    done = [await ctx.run(ci_charge, ledger_path, 100 * len(items))]
    for item in items:
        done.append(await ctx.run(ci_ship, ledger_path, item))
    ok = await ctx.wait_for_signal("confirm", timeout=60)
    done.append(await ctx.run(ci_charge, ledger_path, 1 if ok else 0))
    return done


@bridge.workflow
async def ci_notify(ctx: bridge.Context, ledger_path: str) -> str:
    first = await ctx.run(ci_charge, ledger_path, 5)
    return first + " and " + await ctx.run(ci_notify_naive, ledger_path)


EXPECTED = ["charged 200", "shipped a", "shipped b", "charged 1"]


async def _crash(settings: dict[str, Any], tmp_path: Path, kill_at: KillPoint, **kw: Any) -> Any:
    return await crash_and_resume(
        settings,
        f"{MODULE}:ci_order",
        [str(tmp_path / "ledger.db"), ["a", "b"]],
        kill_at=kill_at,
        ledger=tmp_path / "ledger.db",
        signals={"confirm": True},
        workdir=tmp_path,
        timeout=60,
        **kw,
    )


@pytest.mark.parametrize(
    "kill_at",
    [KillPoint.after_step(1), KillPoint.during_step(2), KillPoint.waiting_for_signal("confirm")],
    ids=lambda k: k.describe(),
)
async def test_sql_resumes_at_every_kind_of_kill_point(
    sql_settings: dict[str, Any], tmp_path: Path, kill_at: KillPoint
) -> None:
    report = await _crash(sql_settings, tmp_path, kill_at)
    assert report.ok and report.killed, report.describe()
    assert report.result == report.expected == EXPECTED
    keys = [f"<run>:{i}" for i in (0, 1, 2, 4)]  # step 3 is the signal wait
    assert report.effects == {k: 1 for k in keys}
    assert report.expected_effects == report.effects
    # The kill really landed where it was asked to: the first worker died with SIGKILL.
    assert "worker ready" in (tmp_path / "worker0.log").read_text()


async def test_after_step_parks_everything_after_the_step(
    sql_settings: dict[str, Any], tmp_path: Path
) -> None:
    """Killed after step 0, the first worker committed exactly step 0's side effect."""
    report = await _crash(sql_settings, tmp_path, KillPoint.after_step(0))
    assert report.ok, report.describe()
    assert report.killed_at is not None
    run = report.workflow_id
    before_kill = [e.key for e in ledger.entries(tmp_path / "ledger.db") if e.at < report.killed_at]
    assert [k for k in before_kill if k.startswith(run)] == [f"{run}:0"]
    # Step 1, if the first worker got that far before the kill, was parked, not run.
    marker = tmp_path / f"{run}.marker"
    marks = marker.read_text().splitlines() if marker.exists() else []
    assert all('"step": 1' in m for m in marks), marks


async def test_a_non_idempotent_activity_is_caught(
    sql_settings: dict[str, Any], tmp_path: Path
) -> None:
    """Killed after its side effect but before the result was recorded, an activity that
    ignores its idempotency key commits twice; the report names the key."""
    path = tmp_path / "ledger.db"
    with pytest.raises(CrashCheckError) as caught:
        await crash_and_resume(
            sql_settings,
            f"{MODULE}:ci_notify",
            [str(path)],
            kill_at=KillPoint.after_effect(1),
            ledger=path,
            workdir=tmp_path,
        )
    report = caught.value.report
    assert report.effects == {"<run>:0": 1, "<run>:1": 2}
    assert report.result == report.expected == "charged 5 and notified"
    assert "side effects committed more than once: <run>:1 x2" in str(caught.value)
    assert "after step 1's side effect" in str(caught.value)


async def test_the_idempotent_activity_survives_the_same_kill(
    sql_settings: dict[str, Any], tmp_path: Path
) -> None:
    report = await _crash(sql_settings, tmp_path, KillPoint.after_effect(0))
    assert report.ok, report.describe()
    assert report.effects["<run>:0"] == 1


async def test_a_kill_point_the_run_never_reaches_is_reported(
    sql_settings: dict[str, Any], tmp_path: Path
) -> None:
    report = await _crash(sql_settings, tmp_path, KillPoint.after_step(9), check=False)
    assert not report.killed
    assert report.problems == [
        "the kill point (after step 9) was never reached: the run ended first with 5 settled steps"
    ]


def test_kill_points_parse_and_refuse_bad_text() -> None:
    assert KillPoint.parse("after:3") == KillPoint.after_step(3)
    assert KillPoint.parse("during:0") == KillPoint.during_step(0)
    assert KillPoint.parse("effect:2") == KillPoint.after_effect(2)
    assert KillPoint.parse("signal:approval:save") == KillPoint.waiting_for_signal("approval:save")
    with pytest.raises(ValueError, match="expected after:STEP"):
        KillPoint.parse("after:three")


def test_settings_env_spells_every_setting(sql_settings: dict[str, Any]) -> None:
    env = settings_env(
        bridge.load_settings(sql_settings), base={"BRIDGE_SQL_URL": "x", "HOME": "/h"}
    )
    assert env["BRIDGE_BACKEND"] == "sql"
    assert env["BRIDGE_SQL_URL"] == sql_settings["sql"]["url"]
    assert env["BRIDGE_TEMPORAL_TLS"] == "false"
    assert env["HOME"] == "/h"
    assert bridge.load_settings(environ=env) == bridge.load_settings(sql_settings)


async def test_langgraph_resumes_after_a_kill(
    langgraph_settings: dict[str, Any], tmp_path: Path
) -> None:
    report = await _crash(langgraph_settings, tmp_path, KillPoint.during_step(1))
    assert report.ok and report.killed, report.describe()
    assert report.result == EXPECTED


@pytest.mark.slow
async def test_temporal_resumes_after_a_kill(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    report = await _crash(temporal_settings, tmp_path, KillPoint.after_step(1))
    assert report.ok and report.killed, report.describe()
    assert report.result == EXPECTED
    assert report.effects == report.expected_effects
