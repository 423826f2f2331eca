"""`execution_timeout`: a run's own deadline, on every backend.

A run past its deadline is cancelled at its next operation (a parked run is woken for it)
and ends FAILED with error type `WorkflowTimeoutError`: Temporal's native execution
timeout there, a durable deadline row with a timer of its own on the journal engines, so it
holds while the run waits for a signal and across a worker restart. A run that finishes in
time is unaffected. Workflows live at module level for Temporal's sandbox.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import bridge
from bridge.errors import WorkflowFailedError
from tests.conftest import wait_for_status

UNDONE: list[str] = []


@bridge.activity(name="t_xt_echo")
async def echo(n: int) -> int:
    return n


async def unreserve(item: str) -> None:
    UNDONE.append(item)


@bridge.activity(name="t_xt_reserve", compensate=unreserve)
async def reserve(item: str) -> str:
    return f"reserved {item}"


@bridge.workflow(name="xt_waits_for_approval")
async def waits_for_approval(ctx: bridge.Context) -> str:
    first = await ctx.run(echo, 1)
    approved = await ctx.wait_for_signal("approve")
    return f"{first}:{approved}"


@bridge.workflow(name="xt_quick")
async def quick(ctx: bridge.Context, n: int) -> int:
    return await ctx.run(echo, n) + 1


@bridge.workflow(name="xt_compensates")
async def compensates(ctx: bridge.Context, item: str) -> str:
    await ctx.run(reserve, item)
    try:
        await ctx.wait_for_signal("confirm")
    except asyncio.CancelledError:
        await ctx.compensate()
        raise
    return "confirmed"


async def _timed_out(client: bridge.Client, id: str) -> WorkflowFailedError:
    with pytest.raises(WorkflowFailedError) as info:
        await client.result(id, timeout=30)
    return info.value


async def test_a_run_waiting_for_a_signal_fails_at_its_deadline(client: bridge.Client) -> None:
    id = f"xt-wait-{client.backend_name}"
    async with client.worker([waits_for_approval]):
        began = time.monotonic()
        await client.start(waits_for_approval, id=id, execution_timeout=1)
        error = await _timed_out(client, id)
        took = time.monotonic() - began
    assert error.error_type == "WorkflowTimeoutError"
    assert "execution timeout" in error.message
    assert took < 15, f"the timeout was enforced only after {took:.1f}s"
    desc = await client.describe(id)
    assert desc.status is bridge.Status.FAILED
    assert desc.error is not None and desc.error["error_type"] == "WorkflowTimeoutError"


async def test_a_run_that_finishes_in_time_is_unaffected(client: bridge.Client) -> None:
    id = f"xt-quick-{client.backend_name}"
    async with client.worker([quick, waits_for_approval]):
        assert await client.execute(quick, 4, id=id, execution_timeout=30, timeout=30) == 5
        handle = await client.start(waits_for_approval, id=f"{id}-signalled", execution_timeout=60)
        await wait_for_status(client, handle.id, bridge.Status.WAITING)
        await handle.signal("approve", "yes")
        assert await handle.result(timeout=30) == "1:yes"
    assert (await client.describe(id)).status is bridge.Status.COMPLETED


async def test_a_bad_execution_timeout_is_refused_before_anything_is_written(
    client: bridge.Client,
) -> None:
    id = f"xt-bad-{client.backend_name}"
    for bad in (0, -1, float("nan"), "10"):
        with pytest.raises(ValueError, match="execution_timeout"):
            await client.start(quick, 1, id=id, execution_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(bridge.WorkflowNotFoundError):
        await client.describe(id)


async def test_a_timed_out_run_still_compensates(client: bridge.Client) -> None:
    """On every engine: on Temporal the bridge cancels the code at the deadline itself
    (Temporal's own execution timeout would end the run without running its code)."""
    UNDONE.clear()
    id = f"xt-compensates-{uuid.uuid4()}"
    async with client.worker([compensates]):
        await client.start(compensates, "seat 4A", id=id, execution_timeout=1)
        error = await _timed_out(client, id)
    assert error.error_type == "WorkflowTimeoutError"
    assert UNDONE == ["seat 4A"]
    kinds = [e.type.value for e in await client.history(id)]
    assert "compensation_completed" in kinds, kinds


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_the_deadline_survives_a_worker_restart(client: bridge.Client) -> None:
    """The deadline is kept with the run: it passes while no worker runs, and the next
    worker fails the parked run for it instead of resuming it."""
    id = "xt-restart"
    async with client.worker([waits_for_approval]):
        await client.start(waits_for_approval, id=id, execution_timeout=1)
        await wait_for_status(client, id, bridge.Status.WAITING)
    await asyncio.sleep(1.2)
    assert (await client.describe(id)).status is bridge.Status.WAITING
    async with client.worker([waits_for_approval]):
        error = await _timed_out(client, id)
    assert error.error_type == "WorkflowTimeoutError"
