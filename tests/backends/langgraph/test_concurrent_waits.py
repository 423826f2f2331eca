"""Several waits pending at once in one execution (branches of `ctx.gather`) on langgraph.

LangGraph resumes a task's interrupts one per invocation, in the order they were called, and
a replayed interrupt returns its answer at once. The backend lets any of the pending waits
be answered (`_graph.DEFER`) and holds an answer until the other branches are blocked
(`GraphContext._gate`), so these shapes behave as on sql and temporal, also when a new
worker picks the run up while both waits are pending.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import bridge
from tests.conftest import wait_for_status

#: When `mark_seen` ran, by run id (the worker runs in this process).
SEEN: dict[str, float] = {}
#: How long `nap_or_signal` sleeps: far longer than the signal branch needs.
NAP = 6.0


@bridge.activity(name="lgwaits.mark_seen")
async def mark_seen(run: str, value: Any) -> Any:
    SEEN[run] = time.monotonic()
    return value


@bridge.workflow(name="lgwaits.collect_until_exit")
async def collect_until_exit(ctx: bridge.Context) -> list[Any]:
    got: list[Any] = []
    state = {"exit": False}

    async def receive() -> None:
        while not state["exit"]:
            sig = await ctx.wait_for_signal(["greet", "exit"])
            if sig.name == "exit":
                state["exit"] = True
            else:
                got.append(sig.payload)

    async def until_exit() -> list[Any]:
        await ctx.wait_condition(lambda: state["exit"])
        return list(got)

    return (await ctx.gather(receive(), until_exit()))[1]


@bridge.workflow(name="lgwaits.drain_until_exit")
async def drain_until_exit(ctx: bridge.Context) -> list[Any]:
    """A condition re-entered in a loop: each met condition replays at its own point."""
    pending: list[Any] = []
    out: list[Any] = []
    state = {"exit": False}

    async def receive() -> None:
        while not state["exit"]:
            sig = await ctx.wait_for_signal(["greet", "exit"])
            if sig.name == "exit":
                state["exit"] = True
            else:
                pending.append(sig.payload)

    async def drain() -> None:
        while True:
            await ctx.wait_condition(lambda: bool(pending) or state["exit"])
            while pending:
                out.append(pending.pop(0))
            if state["exit"]:
                return

    await ctx.gather(receive(), drain())
    return out


@bridge.workflow(name="lgwaits.nap_or_signal")
async def nap_or_signal(ctx: bridge.Context) -> list[Any]:
    async def nap() -> str:
        await ctx.sleep(NAP)
        return "slept"

    async def signalled() -> Any:
        value = await ctx.wait_for_signal("go")
        return await ctx.run(mark_seen, ctx.workflow_id, value)

    return await ctx.gather(nap(), signalled())


WORKFLOWS = [collect_until_exit, drain_until_exit, nap_or_signal]
NAMES = ["user1", "user2", "user3"]


async def _greet_one_by_one(client: bridge.Client, rid: str, names: list[str]) -> None:
    """Send each greeting once the run waits again, so each is answered by its own resume."""
    for name in names:
        await wait_for_status(client, rid, bridge.Status.WAITING)
        await client.signal(rid, "greet", name)
        await asyncio.sleep(0.3)


async def test_signal_loop_and_condition_in_one_gather(
    langgraph_settings: dict[str, Any],
) -> None:
    async with await bridge.connect(langgraph_settings) as client, client.worker(WORKFLOWS):
        for wf in (collect_until_exit, drain_until_exit):
            rid = f"loop-{wf.name}"
            handle = await client.start(wf, id=rid)
            await _greet_one_by_one(client, rid, NAMES)
            await handle.signal("exit")
            assert await handle.result(timeout=20) == NAMES


async def test_signal_loop_and_condition_across_a_worker_restart(
    langgraph_settings: dict[str, Any],
) -> None:
    async with await bridge.connect(langgraph_settings) as client:
        for wf in (collect_until_exit, drain_until_exit):
            rid = f"restart-{wf.name}"
            async with client.worker(WORKFLOWS):
                handle = await client.start(wf, id=rid)
                await _greet_one_by_one(client, rid, NAMES[:1])
                await wait_for_status(client, rid, bridge.Status.WAITING)
            # No worker: the signal wait and the condition are both pending.
            await client.signal(rid, "greet", NAMES[1])
            async with client.worker(WORKFLOWS):
                await _greet_one_by_one(client, rid, NAMES[2:])
                await handle.signal("exit")
                assert await handle.result(timeout=20) == NAMES


async def test_a_signal_is_answered_while_a_sleep_in_the_same_gather_waits(
    langgraph_settings: dict[str, Any],
) -> None:
    rid = "nap-live"
    async with await bridge.connect(langgraph_settings) as client, client.worker(WORKFLOWS):
        handle = await client.start(nap_or_signal, id=rid)
        await wait_for_status(client, rid, bridge.Status.WAITING)
        started = time.monotonic()
        await handle.signal("go", 7)
        while rid not in SEEN:
            assert time.monotonic() - started < NAP / 2, "the signal waited for the sleep"
            await asyncio.sleep(0.05)
        assert await handle.result(timeout=20) == ["slept", 7]


async def test_sleep_and_signal_across_a_worker_restart(
    langgraph_settings: dict[str, Any],
) -> None:
    rid = "nap-restart"
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker(WORKFLOWS):
            handle = await client.start(nap_or_signal, id=rid)
            await wait_for_status(client, rid, bridge.Status.WAITING)
        # No worker: the sleep and the signal wait are both pending.
        await handle.signal("go", 8)
        started = time.monotonic()
        async with client.worker(WORKFLOWS):
            while rid not in SEEN:
                assert time.monotonic() - started < NAP / 2, "the signal waited for the sleep"
                await asyncio.sleep(0.05)
            assert await handle.result(timeout=20) == ["slept", 8]
