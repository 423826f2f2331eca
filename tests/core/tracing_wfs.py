"""A workflow whose spans tests/core/test_tracing.py reads: one plain step, one that fails
once and is retried, one that waits for a gate file (where a worker is stopped)."""

from __future__ import annotations

import asyncio
import os

import bridge

RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01, backoff=1.0)


@bridge.activity(name="tracing.plain", retry=RETRY)
async def plain(label: str) -> str:
    return label


@bridge.activity(name="tracing.fails_once", retry=RETRY)
async def fails_once(label: str) -> str:
    if bridge.activity_info().attempt == 1:
        raise RuntimeError("first attempt fails")
    return label


@bridge.activity(name="tracing.gated", retry=RETRY)
async def gated(gate: str) -> str:
    while not os.path.exists(gate):
        await asyncio.sleep(0.02)
    return "through"


@bridge.workflow(name="tracing.traced")
async def traced(ctx: bridge.Context, gate: str) -> list[str]:
    return [
        await ctx.run(plain, "a"),
        await ctx.run(fails_once, "b"),
        await ctx.run(gated, gate),
    ]
