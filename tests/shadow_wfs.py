"""Workflows of the shadow-mode tests, importable by worker subprocesses.

`SHADOW_WFS_VARIANT` (read at import) picks the version of `checkout` a process registers,
under the same name: `same` (default), `changed_args` (charges a fee: the `charge` step,
index 2, gets another amount) or `changed_output` (same steps, another `status` in the
output). A candidate's worker subprocess imports a changed version, the test process the
original, which is how one workflow name has two behaviours, as during a real migration.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import bridge
from tests import ledger

VARIANT = os.environ.get("SHADOW_WFS_VARIANT", "same")
FEE_CENTS = 150

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01, backoff=2.0)


async def _effect(ledger_path: str, activity: str, key: str) -> None:
    await asyncio.to_thread(ledger.record, ledger_path, f"{activity}|{key}", activity)


@bridge.activity(retry=FAST, name="shadow_reserve")
async def reserve(ledger_path: str, order_id: str, qty: int, *, idempotency_key: str) -> str:
    await _effect(ledger_path, "reserve", idempotency_key)
    return f"R-{order_id}-{qty}"


@bridge.activity(retry=FAST, side_effects=False, name="shadow_price")
async def price(ledger_path: str, qty: int, unit_cents: int, *, idempotency_key: str) -> int:
    """Pure: shadow runs execute it for real (the ledger counts its calls to prove that)."""
    await _effect(ledger_path, "price", idempotency_key)
    return qty * unit_cents


@bridge.activity(retry=FAST, name="shadow_charge")
async def charge(
    ledger_path: str, order_id: str, amount_cents: int, *, idempotency_key: str
) -> dict[str, Any]:
    await _effect(ledger_path, "charge", idempotency_key)
    return {"charge_id": f"C-{order_id}", "amount_cents": amount_cents, "at": time.time()}


@bridge.activity(retry=FAST, name="shadow_apply_coupon")
async def apply_coupon(ledger_path: str, code: str, *, idempotency_key: str) -> int:
    """Always fails (retryably): the shadow run must see the same failures and attempts."""
    await _effect(ledger_path, "apply_coupon", idempotency_key)
    raise ValueError(f"coupon {code!r} has expired")


@bridge.activity(retry=FAST, name="shadow_notify")
async def notify(
    ledger_path: str, order_id: str, text: str, sent_at: str, *, idempotency_key: str
) -> None:
    await _effect(ledger_path, "notify", idempotency_key)


@bridge.workflow
async def checkout(
    ctx: bridge.Context, ledger_path: str, order_id: str, qty: int, unit_cents: int
) -> dict[str, Any]:
    reservation = await ctx.run(reserve, ledger_path, order_id, qty)
    amount = await ctx.run(price, ledger_path, qty, unit_cents)
    amount += FEE_CENTS if VARIANT == "changed_args" else 0
    receipt = await ctx.run(charge, ledger_path, order_id, amount)
    try:
        discount = await ctx.run(apply_coupon, ledger_path, "SPRING")
        coupon = f"applied {discount}"
    except bridge.ActivityError as exc:
        coupon = f"rejected: {exc}"
    approval = await ctx.wait_for_signal("approve", timeout=20)
    # ctx.now() differs between two correct runs: the shadow config ignores `sent_at`.
    await ctx.run(
        notify, ledger_path, order_id, f"order {ctx.workflow_id} charged", ctx.now().isoformat()
    )
    return {
        "order": order_id,
        "reservation": reservation,
        "charge": receipt["charge_id"],
        "total": receipt["amount_cents"],
        "coupon": coupon,
        "approved_by": (approval or {}).get("by"),
        "status": "paid" if VARIANT == "changed_output" else "charged",
        "finished_at": ctx.now().isoformat(),
    }


@bridge.activity(retry=FAST, name="shadow_send")
async def send(ledger_path: str, to: str, *, idempotency_key: str) -> str:
    await _effect(ledger_path, "send", idempotency_key)
    return f"sent to {to}"


@bridge.workflow
async def greet(ctx: bridge.Context, ledger_path: str, to: str) -> str:
    """One side effect: a shadow run of it must get the recorded answer, never send."""
    return await ctx.run(send, ledger_path, to)
