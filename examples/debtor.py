"""The seeds' debtor workflow: call a debtor, wait for the call to end, summarize, wait up to
seven days for payment, and escalate if none came; never call anyone more than once a day.

Events drive it (`bind_triggers`): an overdue notice starts one run per debtor (the run id is
derived from the debtor id, so a repeated notice starts nothing twice), and the LiveKit
"call completed" and payment webhooks become signals to that debtor's run, on whichever engine
owns it while a migration is under way (`bridge.migrate.router`).

The "once a day" rule is a deterministic guard in workflow code: the time of the last call is
kept in workflow state from `ctx.now()` (replay-safe), and a call that would come too soon
waits on a durable timer instead. Activities are offline stand-ins that append each real
side effect, keyed by its idempotency key, to a ledger file when one is given, so a test can
prove no call was ever placed twice.

Nothing happens at import time: worker processes import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

import bridge
from bridge.bus.envelope import Event
from bridge.bus.triggers import Trigger
from bridge.testing import ledger

__all__ = [
    "CALL_COMPLETED",
    "DAY",
    "OVERDUE",
    "PAYMENT_RECEIVED",
    "PAYMENT_WINDOW",
    "Debtor",
    "Outcome",
    "bind_triggers",
    "debtor",
    "dispatch_call",
    "escalate",
    "run_id",
    "summarize_call",
]

OVERDUE = "billing.debtor.overdue"
CALL_COMPLETED = "livekit.call.completed"
PAYMENT_RECEIVED = "billing.payment.received"

DAY = timedelta(days=1).total_seconds()
PAYMENT_WINDOW = timedelta(days=7).total_seconds()

RETRY = bridge.RetryPolicy(max_attempts=5, initial_interval=0.5, backoff=2.0)


class Debtor(BaseModel):
    """One collection case. The two durations are arguments so tests can shrink them."""

    debtor_id: str
    room: str
    amount_cents: int
    payment_timeout: float = PAYMENT_WINDOW
    min_call_interval: float = DAY
    #: The last call placed to this debtor before this case (by an earlier case), if any.
    last_call_at: datetime | None = None
    #: Where activities record their side effects (None: nowhere).
    ledger: str | None = None


class Outcome(BaseModel):
    debtor_id: str
    summary: str
    paid: bool
    escalated: bool
    calls: int


def run_id(debtor_id: str) -> str:
    """The workflow id of a debtor's case: one run per debtor, however often it is notified."""
    return f"debtor/{debtor_id}"


def _record(path: str | None, idempotency_key: str, activity: str) -> None:
    if path:
        ledger.record(path, idempotency_key, activity)


@bridge.activity(retry=RETRY)
def dispatch_call(
    agent: str, debtor_id: str, room: str, ledger_path: str | None, *, idempotency_key: str
) -> str:
    """Dispatch a voice agent into the debtor's room (offline: the dispatch is recorded)."""
    _record(ledger_path, idempotency_key, "dispatch_call")
    return f"call:{agent}:{room}"


@bridge.activity(retry=RETRY)
def summarize_call(
    debtor_id: str, transcript: str, ledger_path: str | None, *, idempotency_key: str
) -> str:
    """Summarize the call transcript (offline: its first sentence)."""
    _record(ledger_path, idempotency_key, "summarize_call")
    first = transcript.split(".")[0].strip()
    return f"{debtor_id}: {first or 'no transcript'}"


@bridge.activity(retry=RETRY)
def escalate(
    debtor_id: str, room: str, amount_cents: int, ledger_path: str | None, *, idempotency_key: str
) -> str:
    """Send the escalation agent (the seeds' second dispatch) for an unpaid debt."""
    _record(ledger_path, idempotency_key, "escalate")
    return f"escalated:{debtor_id}:{amount_cents}"


class _CallGuard:
    """'Never call more than once a day', decided from workflow state and `ctx.now()`."""

    def __init__(self, ctx: bridge.Context, case: Debtor) -> None:
        self.ctx = ctx
        self.interval = case.min_call_interval
        self.last_call_at = case.last_call_at
        self.calls = 0

    async def wait_until_allowed(self) -> None:
        if self.last_call_at is not None:
            since = (self.ctx.now() - self.last_call_at).total_seconds()
            if since < self.interval:
                await self.ctx.sleep(self.interval - since)  # a durable timer, not a skip

    def called(self) -> None:
        self.last_call_at = self.ctx.now()
        self.calls += 1


@bridge.workflow
async def debtor(ctx: bridge.Context, case: Debtor) -> Outcome:
    guard = _CallGuard(ctx, case)

    # 1. Call the debtor (the LiveKit agent).
    await guard.wait_until_allowed()
    await ctx.run(dispatch_call, "agent_1", case.debtor_id, case.room, case.ledger)
    guard.called()

    # 2. Wait for the call-completed webhook; no worker is held while waiting.
    call = await ctx.wait_for_signal("call_completed")
    transcript = str((call or {}).get("transcript", ""))

    # 3. Summarize the call.
    summary = await ctx.run(summarize_call, case.debtor_id, transcript, case.ledger)

    # 4. Wait for the payment webhook, up to seven days.
    payment = await ctx.wait_for_signal("payment_received", timeout=case.payment_timeout)

    # 5. Escalate if unpaid: another call, so the once-a-day rule applies to it too.
    escalated = payment is None
    if escalated:
        await guard.wait_until_allowed()
        await ctx.run(escalate, case.debtor_id, case.room, case.amount_cents, case.ledger)
        guard.called()
    return Outcome(
        debtor_id=case.debtor_id,
        summary=summary,
        paid=not escalated,
        escalated=escalated,
        calls=guard.calls,
    )


def _data(event: Event) -> dict[str, Any]:
    if not isinstance(event.data, dict) or "debtor_id" not in event.data:
        raise bridge.ConfigError(
            f"event {event.source}/{event.id} ({event.type}) needs data with a debtor_id"
        )
    return event.data


def bind_triggers(
    *,
    ledger_path: str | None = None,
    payment_timeout: float = PAYMENT_WINDOW,
    min_call_interval: float = DAY,
) -> list[Trigger]:
    """Bind the three events of the case to the workflow (see the module docstring)."""

    def case(event: Event) -> list[Debtor]:
        data = _data(event)
        return [
            Debtor(
                debtor_id=data["debtor_id"],
                room=data.get("room", f"room-{data['debtor_id']}"),
                amount_cents=int(data.get("amount_cents", 0)),
                payment_timeout=payment_timeout,
                min_call_interval=min_call_interval,
                ledger=ledger_path,
            )
        ]

    by_debtor: Callable[[Event], str] = lambda event: run_id(_data(event)["debtor_id"])  # noqa: E731
    return [
        bridge.on(
            OVERDUE,
            debtor,
            id_from=by_debtor,
            args_from=case,
            key_from=lambda event: _data(event)["debtor_id"],
        ),
        bridge.on(CALL_COMPLETED, signal="call_completed", id_from=by_debtor),
        bridge.on(PAYMENT_RECEIVED, signal="payment_received", id_from=by_debtor),
    ]
