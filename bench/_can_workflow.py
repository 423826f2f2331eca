"""The continue-as-new benchmark's workload (`bench.continue_as_new`): a loop of x -> x + 1
steps that continues as new every `every` iterations. A module of its own that does nothing
at import, so worker processes and Temporal's sandbox can import it."""

from __future__ import annotations

import bridge


@bridge.activity(name="bench_can.step")
async def step(x: int) -> int:
    return x + 1


@bridge.workflow(name="bench_can.loop")
async def loop(ctx: bridge.Context, x: int, done: int, total: int, every: int) -> int:
    """`total` iterations in generations of `every`; each generation's history holds only
    its own steps."""
    for _ in range(min(every, total - done)):
        x = await ctx.run(step, x)
        done += 1
    if done < total:
        ctx.continue_as_new(x, done, total, every)
    return x
