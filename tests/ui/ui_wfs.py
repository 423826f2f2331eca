"""Workflows of the `bridge ui` tests: every kind of event a run page draws.

Names start with `ui_` so they clash with no other test module's activities or workflows.
`ui_order` runs a step, a step that fails on its first attempt (the injected failure,
retried), a compensation registered for a completed step, a timer, a child run, and then
waits for the signal `approve` sent from the run page. `ui_quote` is shadowed: its
`MARKUP` is changed by the test between the primary run and the shadow run, which is how
one workflow name gets two behaviours in one process (the shadow's steps then differ).
"""

from __future__ import annotations

from typing import Any

import bridge

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.05, backoff=1.0)

#: Attempts so far per idempotency key: `ui_flaky_charge` fails the first one of each.
_ATTEMPTS: dict[str, int] = {}

#: Added to the quote's amount; a test raises it to make the shadow run's step differ.
MARKUP = {"cents": 0}


@bridge.activity(retry=FAST, name="ui_release")
async def release(order: str) -> str:
    return f"released {order}"


@bridge.activity(retry=FAST, name="ui_reserve", compensate=release)
async def reserve(order: str) -> str:
    return f"reserved {order}"


@bridge.activity(retry=FAST, name="ui_flaky_charge")
async def flaky_charge(order: str, cents: int, *, idempotency_key: str) -> dict[str, Any]:
    """Fails its first attempt (a transient error), then charges: the injected failure."""
    _ATTEMPTS[idempotency_key] = _ATTEMPTS.get(idempotency_key, 0) + 1
    if _ATTEMPTS[idempotency_key] == 1:
        raise ConnectionError(f"payment gateway timed out for {order}")
    return {"order": order, "charged": cents}


@bridge.activity(retry=FAST, name="ui_ship")
async def ship(order: str, approver: str) -> str:
    return f"shipped {order} (approved by {approver})"


@bridge.workflow(name="ui_label")
async def label(ctx: bridge.Context, order: str) -> str:
    return f"label-{order}"


@bridge.workflow(name="ui_order")
async def order(ctx: bridge.Context, order_id: str, cents: int) -> dict[str, Any]:
    reserved = await ctx.run(reserve, order_id)
    charged = await ctx.run(flaky_charge, order_id, cents)
    await ctx.sleep(0.05)
    tag = await ctx.execute_child(label, order_id, id=f"{ctx.workflow_id}-label")
    approval = await ctx.wait_for_signal("approve", timeout=600)
    if not approval or not approval.get("ok"):
        await ctx.compensate()
        return {"order": order_id, "status": "rejected"}
    shipped = await ctx.run(ship, order_id, approval.get("by", "?"))
    return {
        "order": order_id,
        "reserved": reserved,
        "charged": charged,
        "label": tag,
        "shipped": shipped,
    }


@bridge.activity(retry=FAST, name="ui_price")
async def price(item: str, cents: int) -> int:
    return cents


@bridge.workflow(name="ui_quote")
async def quote(ctx: bridge.Context, item: str, cents: int) -> dict[str, Any]:
    amount = await ctx.run(price, item, cents + MARKUP["cents"])
    return {"item": item, "amount": amount}


@bridge.workflow(name="ui_nap")
async def nap(ctx: bridge.Context, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "rested"
