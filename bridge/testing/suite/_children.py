"""Scenarios about child workflows: a child's result, children run concurrently, a child's
failure in its parent, and the parent-close policies."""

from __future__ import annotations

import asyncio

import pytest

import bridge
from bridge.testing import _workflows as wf
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import new_id, result_of, wait_for_status

__all__ = ["test_child_parent_close_policy", "test_child_workflow"]


@pytest.mark.asyncio
@pytest.mark.requires("child_workflows")
async def test_child_workflow(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A parent gets a child's result decoded, two children run concurrently, a failing
    child is a ChildWorkflowError in the parent; the histories are linked both ways."""
    run = new_id("children")
    await bridge_client.start(wf.children, str(bridge_ledger.path), id=run)
    result = await result_of(bridge_client, run, scenario="child workflow")
    expected = {"one": 2, "both": [4, 6], "failure": ["FAILED", "ValueError"]}
    assert result == expected, f"child workflow: result {result!r}, expected {expected!r}"
    counts = bridge_ledger.counts_by_activity()
    for label in ("child-1", "child-2", "child-3"):
        assert counts[label] == 1, f"child workflow: {label} ran {counts[label]} times"
    events = await bridge_client.history(run)
    started = [
        e.details.get("child_id")
        for e in events
        if e.type is bridge.EventType.CHILD_WORKFLOW_STARTED
    ]
    expected_ids = [f"{run}/child-{n}" for n in range(4)]
    assert started == expected_ids, f"child workflow: history shows children {started}"
    child = await bridge_client.history(f"{run}/child-0")
    parent_id = child[0].details.get("parent_id")
    assert parent_id == run, f"child workflow: the child names parent {parent_id!r}"


@pytest.mark.asyncio
@pytest.mark.requires("child_workflows", "signals")
@pytest.mark.parametrize("policy", ["terminate", "request_cancel", "abandon"])
async def test_child_parent_close_policy(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, policy: str
) -> None:
    """A parent ending with a child still open: terminate and request_cancel end the child
    (FAILED with TerminatedError, CANCELLED), abandon leaves it running (a signal still
    completes it)."""
    run = new_id(f"close-{policy}")
    await bridge_client.start(wf.child_policy, policy, id=run)
    child = await result_of(bridge_client, run, scenario="parent close policy")
    assert child == f"{run}/child-0", f"parent close policy: child id {child!r}"
    scenario = f"parent close policy {policy}"
    if policy == "abandon":
        await wait_for_status(bridge_client, child, bridge.Status.WAITING, scenario=scenario)
        await asyncio.sleep(0.5)
        status = (await bridge_client.describe(child)).status
        assert status is bridge.Status.WAITING, f"{scenario}: the child is {status.value}"
        await bridge_client.signal(child, "go", "still here")
        got = await result_of(bridge_client, child, scenario=scenario)
        assert got == "still here", f"{scenario}: the child returned {got!r}"
    else:
        # Terminated reads FAILED (TerminatedError) on every engine, as Temporal reports it.
        ended = bridge.Status.FAILED if policy == "terminate" else bridge.Status.CANCELLED
        await wait_for_status(bridge_client, child, ended, scenario=scenario)
