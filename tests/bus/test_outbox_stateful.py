"""A hypothesis state machine over the SQL outbox: random publish (with producer retries),
claim, handle (ack in the handler's transaction, or after it as other transports do),
nack, crash (a claim dropped on the floor) and lease expiry (an injected clock) never lose
an event nor handle one twice.

The handler's effect is a ledger row written in the inbox's transaction; at any point each
event is in the ledger at most once, and after a drain every published event is in the
ledger or in the dead letters, never both (checked by the `drain_now` rule, which most
runs reach several times).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select

from bridge.bus import Delivery, Event, LeaseLostError, ManualClock, SqlOutbox
from tests.bus_consumer_proc import ledger, ledger_meta

SUB = "s"
LEASE = 10.0
MAX_DELIVERIES = 4


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="bus-stateful-")
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.outbox = SqlOutbox(
            url=f"sqlite:///{self.dir}/bus.db",
            max_deliveries=MAX_DELIVERIES,
            durability="NORMAL",
            clock=self.clock,
        )
        with self.outbox.engine.begin() as conn:
            ledger_meta.create_all(conn)
        self.run(self.outbox.subscribe(SUB))
        self.published: set[str] = set()
        # Deliveries claimed and not yet acked, nacked or dropped, in claim order.
        self.held: list[Delivery] = []
        self.inbox = self.outbox.inbox()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.outbox.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------
    def ledger_counts(self) -> Counter[str]:
        with self.outbox._reader() as conn:
            return Counter(conn.execute(select(ledger.c.event_id)).scalars())

    def dead(self) -> set[str]:
        return {d.event.id for d in self.run(self.outbox.dead_letters(SUB))}

    async def _handle(self, d: Delivery, *, ack_inside: bool) -> None:
        async with self.inbox.transaction() as tx:
            try:
                with tx.savepoint():
                    if tx.record(SUB, d.event):
                        tx.connection.execute(ledger.insert().values(event_id=d.event.id, pid=0))
                    if ack_inside:
                        tx.ack_in(d)
            except LeaseLostError:
                return
        if not ack_inside:
            # A lost lease here is fine: handled and recorded, the redelivery finds the row.
            with contextlib.suppress(LeaseLostError):
                await self.outbox.ack(d)

    def drain(self) -> None:
        self.held.clear()  # every holder crashed
        for _ in range(MAX_DELIVERIES * 4):
            self.clock.advance(LEASE + 1)
            claimed = self.run(self.outbox.claim(SUB, max_messages=1000, lease_seconds=LEASE))
            if not claimed:
                break
            for d in claimed:
                self.run(self._handle(d, ack_inside=True))
        assert self.run(self.outbox.backlog(SUB)) == 0
        handled, dead = set(self.ledger_counts()), self.dead()
        assert handled | dead == self.published, "an event was lost"
        assert not handled & dead, "an event was both handled and dead-lettered"

    # -- rules ------------------------------------------------------------------------------
    @rule(n=st.integers(0, 8))
    def publish(self, n: int) -> None:
        event = Event.new("t", {"n": n}, source="machine", id=f"e{n}")
        self.run(self.outbox.publish(event))  # a repeated n is a producer retry
        self.published.add(event.id)

    @rule(k=st.integers(1, 5))
    def claim(self, k: int) -> None:
        self.held.extend(self.run(self.outbox.claim(SUB, max_messages=k, lease_seconds=LEASE)))

    @rule(i=st.integers(0, 3), ack_inside=st.booleans())
    def handle(self, i: int, ack_inside: bool) -> None:
        if self.held:
            self.run(self._handle(self.held.pop(i % len(self.held)), ack_inside=ack_inside))

    @rule(i=st.integers(0, 20))
    def nack(self, i: int) -> None:
        if self.held:
            d = self.held.pop(i % len(self.held))
            with contextlib.suppress(LeaseLostError):
                self.run(self.outbox.nack(d, delay=1.0, error="flaky"))

    @rule(i=st.integers(0, 20))
    def crash(self, i: int) -> None:
        """The holder dies: its claim is never acked nor nacked."""
        if self.held:
            self.held.pop(i % len(self.held))

    @rule(k=st.integers(1, 5))
    def lease_expires_and_a_rival_claims(self, k: int) -> None:
        """A holder stalls past its lease; another consumer claims the same rows. The
        stalled one may still try to handle and ack them (see `handle`)."""
        self.clock.advance(LEASE + 1)
        self.claim(k)

    @rule(ack_inside=st.booleans(), rival_first=st.booleans())
    def a_stalled_holder_finishes_late(self, ack_inside: bool, rival_first: bool) -> None:
        """The oldest holder stalls past its lease and a rival claims its event; both then
        handle it, in either order."""
        if not self.held:
            return
        stalled = self.held.pop(0)
        self.clock.advance(LEASE + 1)
        rivals = self.run(self.outbox.claim(SUB, max_messages=1000, lease_seconds=LEASE))
        mine = [d for d in rivals if d.event.id == stalled.event.id]
        self.held.extend(d for d in rivals if d.event.id != stalled.event.id)
        order = [*mine, stalled] if rival_first else [stalled, *mine]
        for d in order:
            self.run(self._handle(d, ack_inside=ack_inside or d is not stalled))

    @rule(seconds=st.sampled_from([0.5, 2.0, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def drain_now(self) -> None:
        self.drain()

    @invariant()
    def never_handled_twice(self) -> None:
        counts = self.ledger_counts()
        assert all(v == 1 for v in counts.values()), counts
        assert set(counts) <= self.published


# CI explores the same 100 runs every time, so a red CI names a real regression, not a new
# draw; elsewhere each run draws afresh. No `explain` phase: on Python 3.11 its line tracer
# made shrinking a failure outlast the test timeout and hid it behind FlakyStrategyDefinition.
OutboxMachine.TestCase.settings = settings(
    derandomize=bool(os.environ.get("CI")),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxMachine = OutboxMachine.TestCase
