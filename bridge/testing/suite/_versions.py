"""Scenarios about changing workflow code under running runs: patched, non-determinism."""

from __future__ import annotations

import asyncio
import time

import pytest

import bridge
from bridge.testing import _workflows as wf
from bridge.testing.scenario import new_id, result_of, wait_for_status
from bridge.workflow import WorkflowDefinition

__all__ = ["test_deprecate_patch", "test_non_determinism_detection", "test_patched"]


async def _park(
    client: bridge.Client, definition: WorkflowDefinition[..., object], id: str, scenario: str
) -> None:
    """Start run `id` on `definition` and let it reach its signal wait."""
    async with client.worker([definition]):
        await client.start(definition, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING, scenario=scenario)


@pytest.mark.asyncio
@pytest.mark.requires("signals", "patched")
async def test_patched(bridge_client: bridge.Client) -> None:
    """A run started on old code keeps the old path; a new run takes the patched one."""
    old_run = new_id("old-run")
    new_run = new_id("new-run")
    await _park(bridge_client, wf.V1, old_run, "patched")
    async with bridge_client.worker([wf.V2_PATCHED]):
        await _park(bridge_client, wf.V2_PATCHED, new_run, "patched")
        await bridge_client.signal(old_run, "go")
        await bridge_client.signal(new_run, "go")
        old = await result_of(bridge_client, old_run, scenario="patched (old run)")
        new = await result_of(bridge_client, new_run, scenario="patched (new run)")
    assert old == ["a", "b"], f"patched: the run started on old code gave {old}, expected [a, b]"
    assert new == ["a", "c", "b"], f"patched: a new run gave {new}, expected [a, c, b]"


@pytest.mark.asyncio
@pytest.mark.requires("signals", "patched", "non_determinism_detection")
async def test_deprecate_patch(bridge_client: bridge.Client) -> None:
    """Retiring a patch blocks nothing: a run that recorded `patched` replays through
    `deprecate_patch`, and a run that reached `deprecate_patch` runs on once the call is
    removed (the new path's code alone)."""
    scenario = "deprecate_patch"
    patched_run = new_id("patched-run")
    deprecated_run = new_id("deprecated-run")
    await _park(bridge_client, wf.V2_PATCHED, patched_run, scenario)
    async with bridge_client.worker([wf.V3_DEPRECATED]):
        await _park(bridge_client, wf.V3_DEPRECATED, deprecated_run, scenario)
        await bridge_client.signal(patched_run, "go")
        first = await result_of(bridge_client, patched_run, scenario=f"{scenario} (patched run)")
    assert first == ["a", "c", "b"], (
        f"{scenario}: the run that recorded the patch gave {first} under deprecate_patch"
    )
    # Step 3: the call removed; the run started under deprecate_patch recorded no marker.
    async with bridge_client.worker([wf.V2_UNPATCHED]):
        await bridge_client.signal(deprecated_run, "go")
        try:
            second = await bridge_client.result(deprecated_run, timeout=30)
        except bridge.WorkflowBlockedError as exc:
            raise AssertionError(
                f"{scenario}: removing the call blocked a run started under it: {exc}"
            ) from None
    assert second == ["a", "c", "b"], (
        f"{scenario}: the run started under deprecate_patch gave {second} once it was removed"
    )


@pytest.mark.asyncio
@pytest.mark.requires("signals", "non_determinism_detection")
async def test_non_determinism_detection(bridge_client: bridge.Client) -> None:
    """Unguarded changed code blocks the run (kept, not failed); fixed code resumes it."""
    run = new_id("nd-run")
    scenario = "non-determinism detection"
    await _park(bridge_client, wf.V1, run, scenario)
    async with bridge_client.worker([wf.V2_UNPATCHED]):
        await bridge_client.signal(run, "go")
        try:
            outcome = await bridge_client.result(run, timeout=30)
        except bridge.WorkflowBlockedError:
            outcome = None
        assert outcome is None, f"{scenario}: changed code finished the run with {outcome!r}"
    desc = await bridge_client.describe(run)
    assert desc.blocked, f"{scenario}: the run is {desc.status.value}, not blocked"
    assert not desc.status.is_terminal, f"{scenario}: the blocked run ended {desc.status.value}"
    error = desc.error or {}
    assert "NonDeterminism" in str(error.get("error_type")), (
        f"{scenario}: the run's error is {error.get('error_type')!r}, not a NonDeterminismError"
    )
    message = str(error.get("message", ""))
    assert "step 1" in message, f"{scenario}: the message does not name step 1: {message!r}"
    # The journal is kept: the fixed (patched) code resumes the run where it stopped.
    async with bridge_client.worker([wf.V2_PATCHED]):
        deadline = time.monotonic() + 30
        while (await bridge_client.describe(run)).blocked:
            assert time.monotonic() < deadline, f"{scenario}: fixed code did not unblock the run"
            await asyncio.sleep(0.05)
        result = await result_of(bridge_client, run, scenario=f"{scenario} (after the fix)")
    assert result == ["a", "b"], f"{scenario}: after the fix the run gave {result}"
