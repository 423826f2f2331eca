"""The scale-out benchmark's workload (`bench.scale_out`): a chain of x -> x + 1 activity
steps, and a run that parks on a signal. A module of its own that does nothing at import, so
worker processes can import it.

`EXECUTED` is the ledger of one worker process: how many times each (run, step) executed
there. It lives in memory (no extra write per step, so it costs the measurement nothing);
the worker writes it out when it stops and the parent merges the files of all workers.
"""

from __future__ import annotations

from collections import Counter

import bridge

EXECUTED: Counter[tuple[str, int]] = Counter()


@bridge.activity(name="bench_scale.step")
async def step(x: int) -> int:
    info = bridge.activity_info()
    EXECUTED[(info.workflow_id, info.step)] += 1
    return x + 1


@bridge.workflow(name="bench_scale.chain")
async def chain(ctx: bridge.Context, x: int, steps: int) -> int:
    """`steps` activity steps; returns x + steps."""
    for _ in range(steps):
        x = await ctx.run(step, x)
    return x


@bridge.workflow(name="bench_scale.parked")
async def parked(ctx: bridge.Context, x: int) -> int:
    """Parks until signal "go" arrives; returns x + its payload."""
    delta = await ctx.wait_for_signal("go")
    return x + int(delta)
