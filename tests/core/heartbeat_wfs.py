"""Workflows whose activities heartbeat (tests/core/test_heartbeat.py): one that goes silent
on its first attempt, async and sync, and long ones that beat until they are cancelled."""

from __future__ import annotations

import asyncio
import time

import bridge
from tests import ledger

RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.05, backoff=1.0)


@bridge.activity(retry=RETRY, heartbeat_timeout=1.0)
async def silent_once(ledger_path: str) -> dict[str, object]:
    info = bridge.activity_info()
    ledger.record(ledger_path, f"attempt-{info.attempt}")
    if info.attempt == 1:
        bridge.heartbeat({"done": 2})
        await asyncio.sleep(30)  # stuck: no more heartbeats
    return {"previous": info.heartbeat_details, "attempt": info.attempt}


@bridge.activity(retry=RETRY, heartbeat_timeout=1.0)
def silent_once_sync(ledger_path: str) -> dict[str, object]:
    info = bridge.activity_info()
    ledger.record(ledger_path, f"attempt-{info.attempt}")
    if info.attempt == 1:
        bridge.heartbeat({"done": 3})
        time.sleep(4)  # stuck in a thread; abandoned when the heartbeat timeout passes
    return {"previous": info.heartbeat_details, "attempt": info.attempt}


@bridge.workflow
async def goes_silent(ctx: bridge.Context, ledger_path: str, sync: bool) -> dict[str, object]:
    return await ctx.run(silent_once_sync if sync else silent_once, ledger_path)


@bridge.activity(retry=RETRY, heartbeat_timeout=5.0)
async def beats_until_cancelled(ledger_path: str) -> str:
    ledger.record(ledger_path, "started")
    try:
        for _ in range(600):
            bridge.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        ledger.record(ledger_path, "cancelled")
        raise
    return "finished"


@bridge.activity(retry=RETRY, heartbeat_timeout=5.0)
def beats_until_cancelled_sync(ledger_path: str) -> str:
    ledger.record(ledger_path, "started")
    try:
        for _ in range(600):
            bridge.heartbeat()
            time.sleep(0.05)
    except asyncio.CancelledError:
        ledger.record(ledger_path, "cancelled")
        raise
    return "finished"


@bridge.workflow
async def long_beating(ctx: bridge.Context, ledger_path: str, sync: bool) -> str:
    return await ctx.run(beats_until_cancelled_sync if sync else beats_until_cancelled, ledger_path)
