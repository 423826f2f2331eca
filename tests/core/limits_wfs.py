"""A workflow whose activity returns more than bridge.limits allows (tests/core/test_limits.py)."""

from __future__ import annotations

import bridge
from bridge.testing import ledger


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.01))
async def big_result(ledger_path: str, size: int, *, idempotency_key: str) -> str:
    ledger.record(ledger_path, idempotency_key, "big_result")
    return "x" * size


@bridge.workflow
async def returns_big(ctx: bridge.Context, ledger_path: str, size: int) -> str:
    try:
        return await ctx.run(big_result, ledger_path, size)
    except bridge.ActivityError as exc:
        return f"{exc.error_type}: {exc.message}"
