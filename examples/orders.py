"""The order workflow of the live-migration runbook (migrations-guide/runbook.md): reserve
stock, charge, wait for the warehouse's "shipped" signal, email the customer.

It is the workload a migration must not break: two side effects that must happen exactly
once (the charge and the email) and a wait that can last days, so runs are in flight on the
old engine while new ones start on the new one. The three side-effecting activities take a
keyword-only `idempotency_key` (the bridge passes `"<workflow id>:<step>"`, the same on
every retry and replay); the offline stand-ins commit each side effect once per order in a
ledger file and count every call, which is what `python -m examples.orders_load check`
reads to prove no order was lost or doubled.

Nothing happens at import time: worker processes and Temporal's sandbox import this module.
"""

from __future__ import annotations

from pydantic import BaseModel

import bridge
from bridge.testing import ledger

__all__ = ["Order", "OrderResult", "charge", "place_order", "reserve_stock", "send_email"]

RETRY = bridge.RetryPolicy(max_attempts=5, initial_interval=0.2, backoff=2.0)
#: How long an order waits for "shipped" before it is reported unshipped (a week).
SHIP_TIMEOUT = 7 * 24 * 3600.0


class Order(BaseModel):
    order_id: str
    sku: str
    quantity: int = 1
    amount_cents: int
    email: str
    #: The stand-in services' ledger file (None: record nothing).
    ledger: str | None = None


class OrderResult(BaseModel):
    order_id: str
    status: str  # "emailed" or "not_shipped"
    tracking: str | None = None


def _commit(order: Order, effect: str, key: str) -> None:
    """Count the call, then commit the side effect once per order, as a real provider
    does with an idempotency key: calls > 1 is a repeat the key absorbed; a second
    committed row would be a doubled order."""
    if order.ledger:
        ledger.record(order.ledger, f"call:{effect}:{order.order_id}", effect)
        ledger.record_once(order.ledger, f"{effect}:{order.order_id}", key)


@bridge.activity(retry=RETRY)
async def reserve_stock(order: Order, *, idempotency_key: str) -> str:
    _commit(order, "reserve", idempotency_key)
    return f"rsv-{order.order_id}"


@bridge.activity(retry=RETRY)
async def charge(order: Order, *, idempotency_key: str) -> str:
    _commit(order, "charge", idempotency_key)
    return f"pay-{order.order_id}"


@bridge.activity(retry=RETRY)
async def send_email(order: Order, tracking: str, *, idempotency_key: str) -> str:
    _commit(order, "email", idempotency_key)
    return f"mail-{order.order_id}"


@bridge.workflow
async def place_order(
    ctx: bridge.Context, order: Order, ship_timeout: float = SHIP_TIMEOUT
) -> OrderResult:
    await ctx.run(reserve_stock, order)
    await ctx.run(charge, order)
    shipped = await ctx.wait_for_signal("shipped", timeout=ship_timeout)
    if shipped is None:
        return OrderResult(order_id=order.order_id, status="not_shipped")
    tracking = str(shipped.get("tracking", "")) if isinstance(shipped, dict) else str(shipped)
    await ctx.run(send_email, order, tracking)
    return OrderResult(order_id=order.order_id, status="emailed", tracking=tracking)
