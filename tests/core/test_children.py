"""Child workflows: `ctx.execute_child` / `ctx.start_child`, on every backend.

On Temporal a child is Temporal's own child workflow (with its ParentClosePolicy); on sql
and langgraph it is a run of its own in the same store, started in the transaction that
journals the parent's `child` row, and the parent parks until the child's end wakes it.
Activities note each execution in a ledger, so "started once" is counted across a worker
killed while the parent waits. Workflows live at module level because Temporal's sandbox
re-imports this module, and the crash test's worker processes import it
(`tests.worker_proc tests.core.test_children`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.conftest import Workers, wait_for_status, wait_until


@bridge.activity(name="t_child_note")
async def note(ledger_path: str, what: str) -> str:
    ledger.record(ledger_path, what, "note")
    return what


@bridge.activity(name="t_child_gate")
async def gate(ledger_path: str, door: str) -> str:
    """Notes that it started, then holds its step open until the test creates `door`."""
    ledger.record(ledger_path, "gate", "gate")
    while not Path(door).exists():
        await asyncio.sleep(0.02)
    return "opened"


@bridge.workflow(name="ch_double")
async def double(ctx: bridge.Context, n: int) -> int:
    return n * 2


@bridge.workflow(name="ch_fail")
async def fail(ctx: bridge.Context, message: str) -> int:
    raise ValueError(message)


@bridge.workflow(name="ch_waiter")
async def waiter(ctx: bridge.Context) -> str:
    got = await ctx.wait_for_signal("go")
    return f"went:{got}"


@bridge.workflow(name="ch_gated")
async def gated(ctx: bridge.Context, ledger_path: str, door: str) -> str:
    await ctx.run(note, ledger_path, "child-started")
    return await ctx.run(gate, ledger_path, door)


@bridge.workflow(name="ch_parent")
async def parent(ctx: bridge.Context, n: int) -> dict[str, Any]:
    one = await ctx.execute_child(double, n)
    first = await ctx.start_child(double, 10)
    second = await ctx.start_child(double, 20, id=f"{ctx.workflow_id}/second")
    both = await ctx.gather(first.result(), second.result())
    try:
        await ctx.execute_child(fail, "boom")
        failure: list[str] = []
    except bridge.ChildWorkflowError as exc:
        failure = [exc.status, exc.error_type, exc.message]
    return {"one": one, "both": both, "ids": [first.id, second.id], "failure": failure}


@bridge.workflow(name="ch_policy_parent")
async def policy_parent(ctx: bridge.Context, policy: str) -> str:
    handle = await ctx.start_child(waiter, parent_close_policy=policy)
    return handle.id


@bridge.workflow(name="ch_awaiting_parent")
async def awaiting_parent(ctx: bridge.Context) -> str:
    return await ctx.execute_child(waiter)


@bridge.workflow(name="ch_signalling_parent")
async def signalling_parent(ctx: bridge.Context) -> list[str]:
    handle = await ctx.start_child(waiter)
    await handle.signal("go", "from-parent")
    other = await ctx.start_child(waiter, id=f"{ctx.workflow_id}/cancelled")
    await other.cancel()
    try:
        await other.result()
        cancelled = "not cancelled"
    except bridge.ChildWorkflowError as exc:
        cancelled = exc.status
    return [await handle.result(), cancelled]


@bridge.workflow(name="ch_gated_parent")
async def gated_parent(ctx: bridge.Context, ledger_path: str, door: str) -> str:
    await ctx.run(note, ledger_path, "parent-started")
    got = await ctx.execute_child(gated, ledger_path, door)
    return f"child said {got}"


WORKFLOWS = [
    double,
    fail,
    waiter,
    gated,
    parent,
    policy_parent,
    awaiting_parent,
    signalling_parent,
    gated_parent,
]


async def test_result_concurrency_failure_and_history(client: bridge.Client) -> None:
    id = f"children-{client.backend_name}"
    async with client.worker(WORKFLOWS):
        handle = await client.start(parent, 4, id=id)
        result = await handle.result(timeout=120)
    assert result["one"] == 8
    assert result["both"] == [20, 40]
    assert result["ids"] == [f"{id}/child-1", f"{id}/second"]
    assert result["failure"][0] == "FAILED" and result["failure"][1] == "ValueError"
    assert "boom" in result["failure"][2]
    events = await client.history(id)
    started = [e for e in events if e.type is bridge.EventType.CHILD_WORKFLOW_STARTED]
    assert [e.details["child_id"] for e in started] == [
        f"{id}/child-0",
        f"{id}/child-1",
        f"{id}/second",
        f"{id}/child-3",
    ]
    assert [e.step for e in started] == [0, 1, 2, 3]
    done = [e.result for e in events if e.type is bridge.EventType.CHILD_WORKFLOW_COMPLETED]
    assert sorted(done) == [8, 20, 40]
    failed = [e for e in events if e.type is bridge.EventType.CHILD_WORKFLOW_FAILED]
    assert len(failed) == 1 and failed[0].error["status"] == "FAILED"
    child = await client.history(f"{id}/child-0")
    assert child[0].details["parent_id"] == id
    assert (await client.describe(f"{id}/child-0")).status is bridge.Status.COMPLETED


@pytest.mark.parametrize("policy", ["terminate", "request_cancel", "abandon"])
async def test_parent_close_policy(client: bridge.Client, policy: str) -> None:
    id = f"close-{policy}-{client.backend_name}"
    async with client.worker(WORKFLOWS):
        child_id = await (await client.start(policy_parent, policy, id=id)).result(timeout=60)
        assert child_id == f"{id}/child-0"
        if policy == "abandon":
            await wait_for_status(client, child_id, bridge.Status.WAITING)
            await asyncio.sleep(0.5)
            assert (await client.describe(child_id)).status is bridge.Status.WAITING
            await client.signal(child_id, "go", 1)
            assert await client.result(child_id, timeout=60) == "went:1"
        else:
            ended = bridge.Status.FAILED if policy == "terminate" else bridge.Status.CANCELLED
            await wait_for_status(client, child_id, ended, timeout=60)


async def test_cancelling_a_parent_cancels_the_child_it_awaits(client: bridge.Client) -> None:
    id = f"cancel-parent-{client.backend_name}"
    async with client.worker(WORKFLOWS):
        await client.start(awaiting_parent, id=id)
        await wait_for_status(client, f"{id}/child-0", bridge.Status.WAITING)
        await wait_for_status(client, id, bridge.Status.WAITING)
        await client.cancel(id)
        await wait_for_status(client, id, bridge.Status.CANCELLED, timeout=60)
        await wait_for_status(client, f"{id}/child-0", bridge.Status.CANCELLED, timeout=60)


async def test_signal_and_cancel_a_child_from_its_parent(client: bridge.Client) -> None:
    id = f"signal-child-{client.backend_name}"
    async with client.worker(WORKFLOWS):
        result = await (await client.start(signalling_parent, id=id)).result(timeout=60)
    assert result == ["went:from-parent", "CANCELLED"]


async def test_child_id_in_use_is_refused(client: bridge.Client) -> None:
    id = f"taken-{client.backend_name}"
    async with client.worker(WORKFLOWS):
        await client.start(waiter, id=f"{id}/child-0")
        handle = await client.start(awaiting_parent, id=id)
        with pytest.raises(bridge.WorkflowFailedError, match="ChildWorkflowError"):
            await handle.result(timeout=60)


async def test_worker_killed_while_the_parent_waits_starts_no_child_twice(
    client: bridge.Client, workers: Workers, tmp_path: Path
) -> None:
    id = f"child-crash-{client.backend_name}"
    path, door = str(tmp_path / "ledger.db"), tmp_path / "door"
    first = workers.start("tests.core.test_children")
    await client.start(gated_parent, path, str(door), id=id)
    await asyncio.to_thread(
        wait_until, lambda: ledger.counts_by_activity(path).get("gate"), what="the child's gate"
    )
    first.kill()
    first.wait()
    workers.start("tests.core.test_children")
    door.touch()
    assert await client.result(id, timeout=120) == "child said opened"
    counts = ledger.counts(path)
    assert counts["parent-started"] == 1
    assert counts["child-started"] == 1
    events = await client.history(id)
    assert len([e for e in events if e.type is bridge.EventType.CHILD_WORKFLOW_STARTED]) == 1
    runs = [d.id for d in await client.list(limit=100) if d.name == "ch_gated"]
    assert runs == [f"{id}/child-1"]
