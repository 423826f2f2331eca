"""Scenarios about talking to a running workflow and long-lived ones: queries, waiting on
several things, continue-as-new."""

from __future__ import annotations

import pytest

import bridge
from bridge.testing import _workflows as wf
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import new_id, result_of, wait_for_status

__all__ = [
    "test_continue_as_new",
    "test_query",
    "test_update",
    "test_update_rejected_by_validator",
    "test_update_same_id_twice",
    "test_wait_condition",
    "test_wait_for_signals",
]


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
@pytest.mark.requires("updates")
async def test_update(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """An update changes a waiting run and answers its caller; one whose handler takes a
    step ends the run; both show in the history as accepted and completed."""
    run = new_id("update")
    await bridge_client.start(wf.tally, str(bridge_ledger.path), id=run)
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario="update")
    total = await bridge_client.update(run, "add", 5)
    assert total == 5, f"update: add answered {total!r}, expected 5"
    total = await bridge_client.update(run, "add", 2)
    assert total == 7, f"update: add answered {total!r}, expected 7"
    seen = await bridge_client.query(run, "total")
    assert seen == 7, f"update: the run's total is {seen!r} after two updates, expected 7"
    with pytest.raises(bridge.UpdateNotFoundError, match="add, close"):
        await bridge_client.update(run, "no-such-update")
    closed = await bridge_client.update(run, "close", "closing")
    assert closed == "CLOSING", f"update: close answered {closed!r}, expected 'CLOSING'"
    result = await result_of(bridge_client, run, scenario="update")
    assert result == {"total": 7, "closed": True}, f"update: result {result!r}"
    assert bridge_ledger.counts_by_activity()["closing"] == 1, "update: the step ran again"
    events = await bridge_client.history(run)
    kinds = [(e.type, e.name) for e in events if e.name in ("add", "close")]
    accepted = bridge.EventType.UPDATE_ACCEPTED
    completed = bridge.EventType.UPDATE_COMPLETED
    assert kinds == [
        (accepted, "add"),
        (completed, "add"),
        (accepted, "add"),
        (completed, "add"),
        (accepted, "close"),
        (completed, "close"),
    ], f"update: history shows {kinds}"


@pytest.mark.asyncio
@pytest.mark.requires("updates")
async def test_update_rejected_by_validator(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A validator's refusal reaches the caller as UpdateRejectedError and leaves no trace:
    no history event, no change of state."""
    run = new_id("update-rejected")
    await bridge_client.start(wf.tally, str(bridge_ledger.path), id=run)
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario="update rejected")
    before = len(await bridge_client.history(run))
    with pytest.raises(bridge.UpdateRejectedError, match="amount must be positive"):
        await bridge_client.update(run, "add", -3)
    after = len(await bridge_client.history(run))
    assert after == before, f"update rejected: the history grew from {before} to {after} events"
    seen = await bridge_client.query(run, "total")
    assert seen == 0, f"update rejected: the total is {seen!r}, expected 0"
    await bridge_client.update(run, "close", "end")
    await result_of(bridge_client, run, scenario="update rejected")


@pytest.mark.asyncio
@pytest.mark.requires("updates")
async def test_update_same_id_twice(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """The same update id twice: the first result, the handler not run again."""
    run = new_id("update-once")
    await bridge_client.start(wf.tally, str(bridge_ledger.path), id=run)
    await wait_for_status(bridge_client, run, bridge.Status.WAITING, scenario="update once")
    first = await bridge_client.update(run, "add", 4, update_id="add-once")
    again = await bridge_client.update(run, "add", 4, update_id="add-once")
    assert (first, again) == (4, 4), f"update once: answered {first!r} then {again!r}"
    seen = await bridge_client.query(run, "total")
    assert seen == 4, f"update once: the total is {seen!r}, the update was applied twice"
    await bridge_client.update(run, "close", "end")
    result = await result_of(bridge_client, run, scenario="update once")
    assert result == {"total": 4, "closed": True}, f"update once: result {result!r}"


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
