"""A workflow whose steps take long enough for a wrongful lease takeover to run them twice.

Loaded by worker processes in tests/journal/test_owner_pidns.py; each step records in the
side-effect ledger which process (PID namespace and pid) ran it.
"""

from __future__ import annotations

import asyncio
import os

import bridge
from bridge.testing import ledger

STEPS = 10
STEP_SECONDS = 0.3


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=1))
async def slow_effect(ledger_path: str, label: str, *, idempotency_key: str) -> str:
    who = f"{os.stat('/proc/self/ns/pid').st_ino}:{os.getpid()}"
    await asyncio.to_thread(ledger.record, ledger_path, f"{label}|{idempotency_key}", who)
    await asyncio.sleep(STEP_SECONDS)
    return label


@bridge.workflow
async def slow_steps(ctx: bridge.Context, ledger_path: str) -> list[str]:
    return [await ctx.run(slow_effect, ledger_path, f"step{i}") for i in range(1, STEPS + 1)]
