"""Activity liveness on every engine: a silent attempt fails after its heartbeat timeout and
is retried with its last heartbeat details; a running activity (async or sync) hears of its
run's cancellation within about a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.core import heartbeat_wfs as wfs


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_silent_attempt_fails_after_its_heartbeat_timeout_and_is_retried(
    client: bridge.Client, ledger_path: str, sync: bool
) -> None:
    run_id = f"hb-{sync}-{uuid.uuid4()}"  # Temporal's ids are the server's, not the test's
    async with client.worker([wfs.goes_silent]):
        t0 = time.monotonic()
        result = await client.execute(wfs.goes_silent, ledger_path, sync, id=run_id, timeout=60)
        elapsed = time.monotonic() - t0
    details = {"done": 3} if sync else {"done": 2}
    assert result == {"previous": details, "attempt": 2}
    # The heartbeat timeout (1 s) plus a poll, not the 4-30 s the attempt would have taken.
    assert elapsed < 3.5, f"the silent attempt took {elapsed:.1f}s to fail"
    assert [e.key for e in ledger.entries(ledger_path)] == ["attempt-1", "attempt-2"]
    history = [e.to_dict() for e in await client.history(run_id)]
    assert "ActivityHeartbeatTimeoutError" in str(history), history


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_running_activity_hears_of_its_runs_cancellation_within_a_second(
    client: bridge.Client, ledger_path: str, sync: bool
) -> None:
    async with client.worker([wfs.long_beating]):
        handle = await client.start(wfs.long_beating, ledger_path, sync)
        await _until(lambda: "started" in _keys(ledger_path))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await handle.cancel()
        await _until(lambda: "cancelled" in _keys(ledger_path), timeout=10)
        heard = time.monotonic() - t0
        with pytest.raises(bridge.WorkflowCancelledError):
            await handle.result(timeout=30)
    assert heard < 1.5, f"the activity heard of the cancellation after {heard:.2f}s"
    assert "finished" not in _keys(ledger_path)


def _keys(path: str) -> list[str]:
    return [e.key for e in ledger.entries(path)]


async def _until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)
