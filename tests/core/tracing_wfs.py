"""Workflows whose spans tests/core/test_tracing.py reads: one with a plain step, one that
fails once and is retried and one that waits for a gate file (where a worker is stopped); a
parent and its child; one that logs inside its step; one a bus event starts."""

from __future__ import annotations

import asyncio
import logging
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


@bridge.workflow(name="tracing.child")
async def child(ctx: bridge.Context, label: str) -> str:
    return await ctx.run(plain, f"child {label}")


@bridge.workflow(name="tracing.parent")
async def parent(ctx: bridge.Context, label: str) -> list[str]:
    return [await ctx.run(plain, label), await ctx.execute_child(child, label)]


#: The logger the `logs` activity writes to (tests attach a handler to it).
LOGGER = "tests.tracing"


@bridge.activity(name="tracing.logs", retry=RETRY)
def logs(label: str) -> str:
    """A blocking activity (run in a thread) that logs one record."""
    logging.getLogger(LOGGER).info("inside %s", label)
    return label


@bridge.workflow(name="tracing.logged")
async def logged(ctx: bridge.Context, label: str) -> str:
    return await ctx.run(logs, label)


@bridge.workflow(name="tracing.from_event")
async def from_event(ctx: bridge.Context, data: dict[str, str]) -> str:
    return await ctx.run(plain, data["label"])
