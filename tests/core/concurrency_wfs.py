"""Workflows for the concurrency-limit tests: steps that log when they run, per tenant."""

from __future__ import annotations

import asyncio
import os
import time

import bridge

#: How many steps of one tenant may run at once.
PER_TENANT = 2


def log_interval(log: str, tenant: str, started: float) -> None:
    """Append `tenant start end` as one line: O_APPEND keeps lines whole across processes."""
    line = f"{tenant} {started:.6f} {time.time():.6f} {os.getpid()}\n".encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@bridge.activity(concurrency=bridge.Limit(key="tenant", max=PER_TENANT))
async def tenant_embed(tenant: str, item: int, log: str) -> int:
    started = time.time()
    await asyncio.sleep(0.15)
    log_interval(log, tenant, started)
    return item * 2


@bridge.workflow
async def embed_all(ctx: bridge.Context, tenant: str, items: int, log: str) -> int:
    done = await ctx.gather(*(ctx.run(tenant_embed, tenant, i, log) for i in range(items)))
    return sum(done)


@bridge.workflow
async def embed_one(ctx: bridge.Context, tenant: str, item: int, log: str) -> int:
    return await ctx.run(tenant_embed, tenant, item, log)


def peaks(log: str) -> dict[str, int]:
    """The most steps of each tenant that ran at the same moment, from the log's intervals."""
    events: dict[str, list[tuple[float, int]]] = {}
    with open(log) as f:
        for line in f:
            tenant, start, end, _ = line.split()
            events.setdefault(tenant, []).extend([(float(start), 1), (float(end), -1)])
    out = {}
    for tenant, evs in events.items():
        now = peak = 0
        for _, delta in sorted(evs, key=lambda e: (e[0], e[1])):  # ends before starts on ties
            now += delta
            peak = max(peak, now)
        out[tenant] = peak
    return out


def count(log: str) -> int:
    with open(log) as f:
        return sum(1 for _ in f)


#: Attempts a second per tenant for the rate-limit tests.
RATE = 5.0


@bridge.activity(rate_limit=bridge.RateLimit(per_second=RATE, burst=1, key="tenant"))
def paced(tenant: str, item: int, log: str) -> int:
    log_interval(log, tenant, time.time())
    return item


@bridge.workflow
async def paced_all(ctx: bridge.Context, tenant: str, items: int, log: str) -> list[int]:
    return await ctx.gather(*(ctx.run(paced, tenant, i, log) for i in range(items)))


def starts(log: str) -> dict[str, list[float]]:
    """Each tenant's attempt start times, in order."""
    out: dict[str, list[float]] = {}
    with open(log) as f:
        for line in f:
            tenant, start, _, _ = line.split()
            out.setdefault(tenant, []).append(float(start))
    return {t: sorted(v) for t, v in out.items()}
