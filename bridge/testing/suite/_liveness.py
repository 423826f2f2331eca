"""Scenarios about activity liveness: heartbeat timeouts and cancellation of a running
activity."""

from __future__ import annotations

import asyncio
import time

import pytest

import bridge
from bridge.testing import _workflows as wf
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import new_id, result_of

__all__ = ["test_activity_cancellation", "test_heartbeat_timeout"]


@pytest.mark.asyncio
@pytest.mark.requires("heartbeats")
async def test_heartbeat_timeout(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """An attempt silent past its heartbeat_timeout (1 s) fails and is retried at once,
    the retry reading the details the silent attempt last heartbeated."""
    run = new_id("heartbeat")
    t0 = time.monotonic()
    await bridge_client.start(wf.silent, str(bridge_ledger.path), id=run)
    result = await result_of(bridge_client, run, scenario="heartbeat timeout")
    elapsed = time.monotonic() - t0
    assert result == {"done": 2}, (
        f"heartbeat timeout: the retry read {result!r} as the last heartbeat details, "
        "expected {'done': 2}"
    )
    assert elapsed < 5, (
        f"heartbeat timeout: the silent attempt ended after {elapsed:.1f}s; a 1 s heartbeat "
        "timeout should fail it within about 2 s"
    )
    attempts = bridge_ledger.counts_by_activity()["goes_silent"]
    assert attempts == 2, f"heartbeat timeout: {attempts} attempts, expected 2"


@pytest.mark.asyncio
@pytest.mark.requires("heartbeats", "cancellation")
async def test_activity_cancellation(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """Cancelling a run cancels its running (heartbeating) activity within about a
    second, and the run ends CANCELLED."""
    run = new_id("activity-cancel")
    await bridge_client.start(wf.beating_run, str(bridge_ledger.path), id=run)
    keys = lambda: [e.key for e in bridge_ledger.entries()]  # noqa: E731
    deadline = time.monotonic() + 30
    while "beating-started" not in keys():
        assert time.monotonic() < deadline, "activity cancellation: the activity never started"
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    await bridge_client.cancel(run)
    while "beating-cancelled" not in keys():
        assert time.monotonic() - t0 < 10, (
            "activity cancellation: the running activity never heard of the cancellation"
        )
        await asyncio.sleep(0.02)
    heard = time.monotonic() - t0
    assert heard < 1.5, (
        f"activity cancellation: the running activity heard of it after {heard:.2f}s, "
        "expected within about a second"
    )
    with pytest.raises(bridge.WorkflowCancelledError):
        await bridge_client.result(run, timeout=30)
