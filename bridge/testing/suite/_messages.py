"""Scenarios about talking to a running workflow and long-lived ones: queries, waiting on
several things, continue-as-new."""

from __future__ import annotations

import pytest

import bridge
from bridge.testing import _workflows as wf
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import new_id, result_of, wait_for_status

__all__ = ["test_continue_as_new", "test_query", "test_wait_condition", "test_wait_for_signals"]


@pytest.mark.asyncio
@pytest.mark.requires("signals", "queries")
async def test_query(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A query reads a waiting run's state, changes nothing, and an unknown name is refused
    naming the ones the run has."""
    run = new_id("query")
    await bridge_client.start(wf.stages, str(bridge_ledger.path), id=run)
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario="query")
    stage = await bridge_client.query(run, "stage")
    assert stage == "waiting", f"query: stage {stage!r} while the run waits, expected 'waiting'"
    with pytest.raises(bridge.QueryNotFoundError, match="stage"):
        await bridge_client.query(run, "no-such-query")
    await bridge_client.signal(run, "approve", "ok")
    result = await result_of(bridge_client, run, scenario="query")
    assert result == "approve:ok", f"query: result {result!r}, expected 'approve:ok'"
    counts = bridge_ledger.counts_by_activity()
    assert counts["stage-1"] == 1, f"query: the run's step ran {counts['stage-1']} times"


@pytest.mark.asyncio
@pytest.mark.requires("signals", "wait_condition")
async def test_wait_for_signals(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """Waiting for the first of several signals says which one came, payload None included."""
    run = new_id("signals")
    await bridge_client.start(wf.stages, str(bridge_ledger.path), id=run)
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario="wait for signals")
    await bridge_client.signal(run, "reject", None)
    result = await result_of(bridge_client, run, scenario="wait for signals")
    assert result == "reject:None", (
        f"wait for signals: result {result!r}, expected 'reject:None' (a signal without a "
        f"payload is not a timeout)"
    )


@pytest.mark.asyncio
@pytest.mark.requires("wait_condition")
async def test_wait_condition(bridge_client: bridge.Client, bridge_worker: bridge.Worker) -> None:
    """A condition over state another branch changes holds; one that never holds times out."""
    result = await bridge_client.execute(wf.held, id=new_id("condition"), timeout=60)
    assert result == [True, False], f"wait_condition: result {result!r}, expected [True, False]"


@pytest.mark.asyncio
@pytest.mark.requires("continue_as_new")
async def test_continue_as_new(bridge_client: bridge.Client, bridge_worker: bridge.Worker) -> None:
    """A loop continuing as new every 3 iterations ends with the right result, and the
    current run's history holds only its last generation's steps."""
    run = new_id("continue")
    result = await bridge_client.execute(wf.counter, 8, id=run, timeout=60)
    assert result == 8, f"continue-as-new: result {result!r}, expected 8"
    if "history_export" in bridge_client.backend.capabilities:
        steps = bridge.history.step_sequence(await bridge_client.history(run))
        assert steps == ["conformance.increment"] * 2, (
            f"continue-as-new: the last generation's history has steps {steps}, expected the "
            f"2 increments after the continuation at 6"
        )
