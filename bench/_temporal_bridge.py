"""The benchmark's workload written against bridge: the same steps as `_temporal_raw`."""

from __future__ import annotations

import bridge


@bridge.activity
async def inc(x: int) -> int:
    return x + 1


@bridge.workflow
async def chain(ctx: bridge.Context, n: int) -> int:
    """`n` sequential activities, x -> x + 1."""
    x = 0
    for _ in range(n):
        x = await ctx.run(inc, x)
    return x
