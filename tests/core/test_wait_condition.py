"""`ctx.wait_condition` and waiting for the first of several signals, on every backend.

A condition over workflow state is True once it holds and False when its timeout passes
first; its outcome is journaled (sql, langgraph) or kept in Temporal's history, so a replay
answers the same. State a condition reads changes through the run's other branches: an
activity that finishes, a signal another branch takes (the parked run is woken by the
signal and the condition evaluated again at the same point on replay).

`ctx.wait_for_signal([...])` returns a `Signal(name, payload)` or None on timeout, so a
signal sent without a payload is never taken for a timeout; signals sent before the wait
are taken oldest first. Workflows live at module level for Temporal's sandbox.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import bridge
from bridge.workflow import Signal
from tests.conftest import wait_for_status


@bridge.activity(name="t_cond_slow")
async def slow(n: int) -> int:
    await asyncio.sleep(0.3)
    return n


@bridge.activity(name="t_cond_echo")
async def echo(n: int) -> int:
    return n


@bridge.workflow(name="wc_held_by_a_branch")
async def held_by_a_branch(ctx: bridge.Context) -> list[Any]:
    state = {"done": False}

    async def work() -> int:
        value = await ctx.run(slow, 7)
        state["done"] = True
        return value

    async def watch() -> bool:
        return await ctx.wait_condition(lambda: state["done"], timeout=60)

    value, held = await ctx.gather(work(), watch())
    after = await ctx.run(echo, 1)  # numbered after both branches on every engine
    return [value, held, after]


@bridge.workflow(name="wc_times_out")
async def times_out(ctx: bridge.Context) -> list[Any]:
    held = await ctx.wait_condition(lambda: False, timeout=0.5)
    at_once = await ctx.wait_condition(lambda: True)
    return [held, at_once, await ctx.run(echo, 2)]


@bridge.workflow(name="wc_woken_by_a_signal")
async def woken_by_a_signal(ctx: bridge.Context) -> list[Any]:
    state = {"votes": 0}
    ctx.set_query_handler("votes", lambda: state["votes"])

    async def collect() -> None:
        state["votes"] += await ctx.wait_for_signal("vote")

    async def enough() -> bool:
        return await ctx.wait_condition(lambda: state["votes"] >= 2, timeout=120)

    _, held = await ctx.gather(collect(), enough())
    return [held, state["votes"]]


@bridge.workflow(name="wc_first_of_several")
async def first_of_several(ctx: bridge.Context) -> list[Any]:
    await ctx.wait_for_signal("go")
    seen: list[Any] = []
    for _ in range(2):
        got = await ctx.wait_for_signal(["approve", "reject"], timeout=60)
        assert isinstance(got, Signal)
        seen.append([got.name, got.payload])
    seen.append(await ctx.wait_for_signal(["approve", "reject"], timeout=0.3))
    seen.append(await ctx.wait_for_signal("single", timeout=0.3))
    return seen


@bridge.workflow(name="wc_collects_until_exit")
async def collects_until_exit(ctx: bridge.Context) -> list[str]:
    """Temporal's hello_signal shape with branches: one loops on the first of two signals,
    the other waits for the condition the first makes true."""
    got: list[str] = []
    done = {"exit": False}

    async def receive() -> None:
        while not done["exit"]:
            signal = await ctx.wait_for_signal(["greet", "exit"])
            if signal.name == "exit":
                done["exit"] = True
            else:
                got.append(signal.payload)

    async def until_exit() -> None:
        await ctx.wait_condition(lambda: done["exit"])

    await ctx.gather(receive(), until_exit())
    return got


async def test_branches_replay_in_the_order_they_ran_with_signals_one_at_a_time(
    client: bridge.Client,
) -> None:
    """Each signal wakes a parked run, whose replay must give the signal loop's answered
    wait back only once the condition's branch has taken its own index again (it hung)."""
    rid = f"wc-collect-{uuid.uuid4()}"
    async with client.worker([collects_until_exit]):
        await client.start(collects_until_exit, id=rid)
        for name in ("ann", "bob", "cy"):
            await wait_for_status(client, rid, bridge.Status.WAITING)
            await client.signal(rid, "greet", name)
            await asyncio.sleep(0.2)
        await client.signal(rid, "exit")
        assert await client.result(rid, timeout=30) == ["ann", "bob", "cy"]


async def test_condition_held_by_another_branch(client: bridge.Client) -> None:
    async with client.worker([held_by_a_branch]):
        result = await client.execute(held_by_a_branch, id=f"cond-branch-{client.backend_name}")
    assert result == [7, True, 1]


async def test_condition_times_out_with_false(client: bridge.Client) -> None:
    async with client.worker([times_out]):
        result = await client.execute(times_out, id=f"cond-timeout-{client.backend_name}")
    assert result == [False, True, 2]


async def test_a_signal_taken_by_another_branch_wakes_the_condition(
    client: bridge.Client,
) -> None:
    id = f"cond-signal-{client.backend_name}"
    async with client.worker([woken_by_a_signal]):
        handle = await client.start(woken_by_a_signal, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
        assert await handle.query("votes") == 0
        await handle.signal("vote", 2)
        assert await handle.result(timeout=60) == [True, 2]


async def test_condition_answers_the_same_after_the_worker_changes(
    client: bridge.Client,
) -> None:
    """The run parks on its condition; a new worker replays it and goes on from there."""
    id = f"cond-resume-{client.backend_name}"
    async with client.worker([woken_by_a_signal]):
        handle = await client.start(woken_by_a_signal, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
    await handle.signal("vote", 3)
    async with client.worker([woken_by_a_signal]):
        assert await handle.result(timeout=60) == [True, 3]


async def test_first_of_several_signals_and_none_is_not_a_timeout(client: bridge.Client) -> None:
    id = f"multi-{client.backend_name}"
    async with client.worker([first_of_several]):
        handle = await client.start(first_of_several, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
        # Both arrive before the wait begins: the oldest is taken first.
        await handle.signal("reject", None)
        await handle.signal("approve", {"by": "ada"})
        await handle.signal("go")
        result = await handle.result(timeout=60)
    assert result == [["reject", None], ["approve", {"by": "ada"}], None, None]
