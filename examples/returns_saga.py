"""The seeds' returns saga: validate a return, check inventory, create a return shipping label,
issue the refund, send the confirmation email.

Why each step is shaped the way it is (the seed's answer sketch, made runnable):

- The three steps with external side effects (label, refund, email) take a keyword-only
  `idempotency_key`. The bridge passes `"<workflow id>:<step>"`, the same on every retry and
  every replay, and the workflow id is derived from the return id (`run_id`), so a return
  notified twice starts one run and a retried step hands the carrier, the payment provider
  and the mailer the key they have already seen. The offline stand-ins below behave like
  those services: they commit a side effect once per key (`ledger.record_once`) and answer a
  repeated key with the first result.
- The label is the saga's compensable step: `create_label` declares `compensate=void_label`.
  When the refund still fails after its retries, `ctx.compensate()` voids the label (a
  journaled step of its own, idempotent too) and the run completes with the outcome
  `"refund_failed"` rather than failing: the return ended in a consistent state (no label
  the customer could ship with, no money moved), and whoever follows up reads the outcome
  instead of digging through a failure. No confirmation email is sent then.
- Validation and the inventory check are reads (`side_effects=False`); a request they
  reject ends the run with `"rejected"` before anything is created.

Offline by default: the stand-in services write a ledger file (`bridge.testing.ledger`) when
the request names one, which is how the tests count side effects per idempotency key. Every
call is also counted under `call:<key>`, so a test can show a step really ran twice while
its side effect happened once. `refund_failures` and the `hold_*` fields are test plumbing:
injected refund errors and a file gate that parks the label step so a worker can be killed
at a known point.

Run it with
`bridge run examples.returns_saga:returns_saga '{"return_id": "r-1", "order_id": "o-1",
"sku": "SKU-MUG", "amount_cents": 1299, "email": "ann@example.com"}'`.

Nothing happens at import time: worker processes and Temporal's sandbox import this module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

import bridge
from bridge.testing import ledger

__all__ = [
    "CATALOG",
    "ReturnOutcome",
    "ReturnRequest",
    "check_inventory",
    "create_label",
    "issue_refund",
    "returns_saga",
    "run_id",
    "send_confirmation",
    "validate_return",
    "void_label",
]

#: The stand-in inventory: SKUs that can be returned, with the units sold per order.
CATALOG: dict[str, int] = {"SKU-MUG": 4, "SKU-LAMP": 1, "SKU-SOCKS": 10}

#: Short intervals so the offline demo and the tests are quick; production would use seconds.
RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.1, backoff=2.0)
#: The refund is money: a few more tries before the saga gives up and compensates.
REFUND_RETRY = bridge.RetryPolicy(max_attempts=4, initial_interval=0.1, backoff=2.0)


class ReturnRequest(BaseModel):
    """One customer's return. The last four fields are test plumbing (see the module doc)."""

    return_id: str
    order_id: str
    sku: str
    quantity: int = 1
    amount_cents: int
    email: str
    #: Where the stand-in services record their side effects (None: nowhere).
    ledger: str | None = None
    #: How many refund attempts fail before one succeeds (>= REFUND_RETRY.max_attempts:
    #: the refund fails for good).
    refund_failures: int = 0
    #: When set, the first label attempt fails right after the label was created (the
    #: carrier's answer lost on the way), so its retry must not create a second label.
    lose_label_response: bool = False
    #: When set, `create_label` creates the label, touches `<hold_label>.reached` and waits
    #: for the file `hold_label` before answering: the window for killing the worker.
    hold_label: str | None = None


class ReturnOutcome(BaseModel):
    """How the return ended: `refunded`, `refund_failed` (label voided) or `rejected`."""

    return_id: str
    status: Literal["refunded", "refund_failed", "rejected"]
    reason: str = ""
    label: str | None = None
    refund: str | None = None
    label_voided: bool = False
    email: str | None = None


def run_id(return_id: str) -> str:
    """The workflow id of a return: one run per return, however often it is submitted."""
    return f"return/{return_id}"


# -- reads: no side effect, so no idempotency key -----------------------------------------
@bridge.activity(retry=RETRY, side_effects=False)
def validate_return(request: ReturnRequest) -> str | None:
    """Why the request cannot be accepted, or None when it can."""
    if request.quantity < 1:
        return f"quantity must be at least 1, got {request.quantity}"
    if request.amount_cents <= 0:
        return f"refund amount must be positive, got {request.amount_cents}"
    if "@" not in request.email:
        return f"no valid email address: {request.email!r}"
    return None


@bridge.activity(retry=RETRY, side_effects=False)
def check_inventory(sku: str, quantity: int) -> str | None:
    """Why the item cannot be taken back (unknown SKU, more units than sold), or None."""
    sold = CATALOG.get(sku)
    if sold is None:
        return f"{sku} is not a returnable item"
    if quantity > sold:
        return f"{quantity} x {sku} returned but only {sold} sold"
    return None


# -- side effects: each keyed, each committed once per key --------------------------------
def _effect(request: ReturnRequest, key: str, activity: str) -> None:
    """Count the call, then commit the side effect once per idempotency key."""
    if request.ledger:
        ledger.record(request.ledger, f"call:{key}", f"{activity}.call")
        ledger.record_once(request.ledger, key, activity)


@bridge.activity(retry=RETRY)
def void_label(request: ReturnRequest, *, idempotency_key: str) -> str:
    """The compensation of `create_label`: cancel the return label of this return.

    Called by `ctx.compensate()` with `create_label`'s arguments; the label is found by
    return id, which is what a carrier's void endpoint takes.
    """
    _effect(request, idempotency_key, "void_label")
    return f"voided LBL-{request.return_id}"


@bridge.activity(retry=RETRY, compensate=void_label)
def create_label(request: ReturnRequest, *, idempotency_key: str) -> str:
    """Create the return shipping label (offline: recorded once per key)."""
    _effect(request, idempotency_key, "create_label")
    if request.hold_label:
        Path(f"{request.hold_label}.reached").touch()
        while not Path(request.hold_label).exists():
            time.sleep(0.02)
    if request.lose_label_response and bridge.activity_info().attempt == 1:
        raise ConnectionError("carrier created the label but its answer was lost")
    return f"LBL-{request.return_id}"


@bridge.activity(retry=REFUND_RETRY)
def issue_refund(request: ReturnRequest, *, idempotency_key: str) -> str:
    """Refund the customer (offline: the first `refund_failures` attempts are declined)."""
    if bridge.activity_info().attempt <= request.refund_failures:
        raise RuntimeError(f"payment provider declined refund for {request.order_id}")
    _effect(request, idempotency_key, "issue_refund")
    return f"RF-{request.return_id}-{request.amount_cents}"


@bridge.activity(retry=RETRY)
def send_confirmation(request: ReturnRequest, label: str, *, idempotency_key: str) -> str:
    """Email the customer the label and the refund confirmation (offline: recorded)."""
    _effect(request, idempotency_key, "send_confirmation")
    return f"mail to {request.email}: return {request.return_id}, label {label}"


@bridge.workflow
async def returns_saga(ctx: bridge.Context, request: ReturnRequest) -> ReturnOutcome:
    """Validate, check inventory, label, refund (voiding the label if it fails), email."""
    reason = await ctx.run(validate_return, request)
    if reason is None:
        reason = await ctx.run(check_inventory, request.sku, request.quantity)
    if reason is not None:
        return ReturnOutcome(return_id=request.return_id, status="rejected", reason=reason)

    label = await ctx.run(create_label, request)
    try:
        refund = await ctx.run(issue_refund, request)
    except bridge.ActivityError as exc:
        await ctx.compensate()  # voids the label: the customer must not ship an unrefunded item
        return ReturnOutcome(
            return_id=request.return_id,
            status="refund_failed",
            reason=f"{exc.message} (after {exc.attempts} attempts)",
            label=label,
            label_voided=True,
        )
    email = await ctx.run(send_confirmation, request, label)
    return ReturnOutcome(
        return_id=request.return_id, status="refunded", label=label, refund=refund, email=email
    )
