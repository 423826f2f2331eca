"""Crash-resume with a real SIGKILL of the worker process, counted through the ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.conftest import BACKENDS, Workers, fast_sql, wait_until
from tests.wfs import five_steps, nap


async def completed_steps(client: bridge.Client, id: str) -> int:
    try:
        history = await client.history(id)
    except bridge.WorkflowNotFoundError:
        return 0
    return len(bridge.history.step_sequence(history))


async def wait_for_steps(client: bridge.Client, id: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while await completed_steps(client, id) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{id}: step {n} was not journaled within {timeout}s")
        await asyncio.sleep(0.02)


async def crash_after_step_3(settings: dict[str, Any], tmp_path: Path, ledger_path: str) -> None:
    """Start a 5-step run, SIGKILL its worker once step 3 is journaled, finish it elsewhere."""
    gate = str(tmp_path / "gate")  # step 4 waits for this file, so the kill lands before it
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await client.start(five_steps, ledger_path, 4, gate, id="crash-1")
        first = workers.start()
        await wait_for_steps(client, "crash-1", 3)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        Path(gate).touch()
        workers.start()
        result = await client.result("crash-1", timeout=60)
    finally:
        workers.close()
        await client.close()
    assert result == ["step1", "step2", "step3", "step4", "step5"]
    calls = ledger.counts(ledger_path)
    assert sorted(calls) == [f"step{i}|crash-1:{i - 1}" for i in range(1, 6)]
    assert set(calls.values()) == {1}, calls


async def test_sigkill_after_step_3_resumes_without_repeating(
    settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    await crash_after_step_3(settings, tmp_path, ledger_path)


@pytest.mark.postgres
async def test_sigkill_after_step_3_on_postgres(
    pg_url: str, tmp_path: Path, ledger_path: str
) -> None:
    await crash_after_step_3({"backend": "sql", "sql": fast_sql(pg_url)}, tmp_path, ledger_path)


@pytest.mark.parametrize(
    "backend_name", [b for b in BACKENDS if b in ("sql", "langgraph", "temporal")]
)
async def test_durable_sleep_survives_a_restart(
    settings: dict[str, Any], tmp_path: Path, ledger_path: str, workers: Workers
) -> None:
    client = await bridge.connect(settings)
    try:
        await client.start(nap, ledger_path, 2.0, id="nap-1")
        first = workers.start()
        wait_until(lambda: ledger.counts(ledger_path)["before"] == 1, what="the first step")
        time.sleep(0.3)
        assert (await client.describe("nap-1")).status is bridge.Status.WAITING
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        workers.start()
        assert await client.result("nap-1", timeout=30) == "after"
        history = await client.history("nap-1")
    finally:
        await client.close()
    started = next(e for e in history if e.type is bridge.EventType.TIMER_STARTED)
    fired = next(e for e in history if e.type is bridge.EventType.TIMER_FIRED)
    assert (fired.time - started.time).total_seconds() >= 2.0
    # The timer was armed once, by the first worker, and not restarted by the second.
    assert (fired.time - started.time).total_seconds() < 4.0
    assert ledger.counts(ledger_path) == {"before": 1, "after": 1}
