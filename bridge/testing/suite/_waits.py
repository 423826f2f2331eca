"""Scenarios about waiting: signals, signal timeouts, durable sleep, cancellation."""

from __future__ import annotations

import os
import signal
import time

import pytest

import bridge
from bridge.history import EventType
from bridge.testing import _workflows as wf
from bridge.testing.fixtures import WorkerProcesses
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import new_id, result_of, times, wait_for_status

__all__ = [
    "test_cancellation",
    "test_durable_sleep_across_restart",
    "test_execution_timeout",
    "test_signal",
    "test_signal_timeout",
]


@pytest.mark.asyncio
@pytest.mark.requires("signals")
async def test_signal(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A signal reaches a run waiting for it, and one sent before the wait is kept."""
    waiting_run = new_id("signal")
    early_run = new_id("signal")
    path = str(bridge_ledger.path)
    await bridge_client.start(wf.approval, path, None, id=waiting_run)
    desc = await wait_for_status(
        bridge_client, waiting_run, bridge.Status.WAITING, scenario="signal"
    )
    assert desc.waiting_for == "approve", (
        f"signal: a run waiting for 'approve' describes itself as waiting for {desc.waiting_for!r}"
    )
    await bridge_client.signal(waiting_run, "approve", "yes")
    result = await result_of(bridge_client, waiting_run, scenario="signal (sent while waiting)")
    assert result == "decided:yes", f"signal: result {result!r}, expected 'decided:yes'"

    # Sent before the run waits (right after it starts): the signal must be kept for it.
    await bridge_client.start(wf.approval, path, None, id=early_run)
    await bridge_client.signal(early_run, "approve", "early")
    result = await result_of(
        bridge_client, early_run, scenario="signal (sent before the wait)", timeout=15
    )
    assert result == "decided:early", f"signal: early signal gave {result!r}"
    counts = bridge_ledger.counts_by_activity()
    for label in ("asked", "decided:yes", "decided:early"):
        expected = 2 if label == "asked" else 1
        assert counts[label] == expected, (
            f"signal: step {label!r} ran {times(counts[label])}, expected {times(expected)}"
        )


@pytest.mark.asyncio
@pytest.mark.requires("signals", "signal_timeout")
async def test_signal_timeout(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A signal wait with a timeout returns None when no signal comes."""
    run = new_id("signal-timeout")
    result = await bridge_client.execute(
        wf.approval, str(bridge_ledger.path), 0.3, id=run, timeout=30
    )
    assert result == "timed-out", f"signal timeout: result {result!r}, expected 'timed-out'"
    if "history_export" in bridge_client.backend.capabilities:
        types = [e.type for e in await bridge_client.history(run)]
        assert EventType.SIGNAL_TIMED_OUT in types, (
            f"signal timeout: no SIGNAL_TIMED_OUT in the history ({[t.value for t in types]})"
        )


@pytest.mark.asyncio
@pytest.mark.requires("durable_sleep", "crash_resume")
async def test_durable_sleep_across_restart(
    bridge_client: bridge.Client,
    bridge_ledger: Ledger,
    bridge_worker_processes: WorkerProcesses,
) -> None:
    """A timer armed by a worker that is SIGKILLed fires on the next worker, on time, once."""
    run = new_id("nap")
    scenario = "durable sleep across restart"
    seconds = 2.0
    await bridge_client.start(wf.nap, str(bridge_ledger.path), seconds, id=run)
    first = bridge_worker_processes.start()
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario=scenario)
    armed = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    bridge_worker_processes.start()
    result = await result_of(bridge_client, run, scenario=scenario, timeout=60)
    assert result == "after", f"{scenario}: result {result!r}"
    assert time.monotonic() - armed >= seconds - 0.1, f"{scenario}: the timer fired early"
    counts = bridge_ledger.counts_by_activity()
    for label in ("before", "after"):
        assert counts[label] == 1, f"{scenario}: step {label!r} ran {times(counts[label])}"
    if "history_export" in bridge_client.backend.capabilities:
        history = await bridge_client.history(run)
        started = [e for e in history if e.type is EventType.TIMER_STARTED]
        fired = [e for e in history if e.type is EventType.TIMER_FIRED]
        assert len(started) == 1 and len(fired) == 1, (
            f"{scenario}: the timer was armed {times(len(started))} and fired "
            f"{times(len(fired))}, expected once each"
        )
        waited = (fired[0].time - started[0].time).total_seconds()
        assert waited >= seconds, f"{scenario}: the timer fired after {waited:.2f}s"


@pytest.mark.asyncio
@pytest.mark.requires("signals", "cancellation")
async def test_cancellation(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """Cancelling a run parked on a signal ends it CANCELLED without running further steps."""
    run = new_id("cancel")
    await bridge_client.start(wf.approval, str(bridge_ledger.path), None, id=run)
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario="cancellation")
    await bridge_client.cancel(run)
    with pytest.raises(bridge.WorkflowCancelledError):
        await result_of(bridge_client, run, scenario="cancellation")
    status = (await bridge_client.describe(run)).status
    assert status is bridge.Status.CANCELLED, f"cancellation: the run ended {status.value}"
    ran = dict(bridge_ledger.counts_by_activity())
    assert ran == {"asked": 1}, f"cancellation: side effects {ran}, expected only 'asked' once"


@pytest.mark.asyncio
@pytest.mark.requires("execution_timeout", "compensation")
async def test_execution_timeout(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A run past its execution timeout is cancelled where it waits (it compensates) and
    ends FAILED with WorkflowTimeoutError."""
    run = new_id("execution-timeout")
    scenario = "execution timeout"
    t0 = time.monotonic()
    await bridge_client.start(
        wf.timed_hold, str(bridge_ledger.path), "t-9", id=run, execution_timeout=1.0
    )
    try:
        outcome = await bridge_client.result(run, timeout=30)
    except bridge.WorkflowFailedError as exc:
        outcome = exc.error_type
    took = time.monotonic() - t0
    assert outcome == "WorkflowTimeoutError", (
        f"{scenario}: the run ended with {outcome!r}, expected a WorkflowTimeoutError failure"
    )
    assert took < 10, f"{scenario}: a 1 s timeout ended the run after {took:.1f}s"
    desc = await bridge_client.describe(run)
    assert desc.status is bridge.Status.FAILED, f"{scenario}: the run is {desc.status.value}"
    counts = bridge_ledger.counts_by_activity()
    assert counts["cancel_hotel:t-9"] == 1, (
        f"{scenario}: the compensation ran {counts['cancel_hotel:t-9']} times, expected once"
    )
