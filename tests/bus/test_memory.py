"""The in-memory transport and the Consumer under injected faults: duplicates, reordering,
lost acks and consumer crashes mid-handler. Every event is handled exactly once per
subscription (counted by a ledger the handler writes in the inbox's transaction)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bridge.bus import (
    Consumer,
    ConsumerCrash,
    Event,
    LeaseLostError,
    ManualClock,
    MemoryInbox,
    MemoryTransport,
    Transport,
)

LEASE = 10.0


def _event(i: int, type: str = "doc.uploaded") -> Event:
    return Event.new(type, {"n": i}, source="tests", id=f"e{i}")


def _ledger_handler(ledger: Counter[tuple[str, str]], name: str) -> Any:
    async def handler(event: Event, tx: Any) -> None:
        # The effect is staged in the inbox transaction: it lands only with the inbox row.
        tx.on_commit(lambda: ledger.update([(name, event.id)]))

    return handler


def test_is_a_transport() -> None:
    assert isinstance(MemoryTransport(), Transport)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_faults_never_lose_or_double_handle(seed: int) -> None:
    clock = ManualClock()
    transport = MemoryTransport(
        seed=seed,
        duplicate_rate=0.3,
        reorder=True,
        drop_ack_rate=0.15,
        crash_rate=0.04,
        max_deliveries=1000,  # faults, not poison: nothing may end up dead
        clock=clock,
    )
    inboxes = {"billing": MemoryInbox(), "audit": MemoryInbox()}
    ledger: Counter[tuple[str, str]] = Counter()
    order: list[str] = []

    def consumer(name: str) -> Consumer:
        inner = _ledger_handler(ledger, name)

        async def handler(event: Event, tx: Any) -> None:
            if name == "billing":
                tx.on_commit(lambda: order.append(event.id))
            await inner(event, tx)

        return Consumer(
            transport=transport,
            subscription=name,
            handler=transport.crashing(handler),
            inbox=inboxes[name],
            batch_size=7,
            lease_seconds=LEASE,
        )

    consumers = {name: consumer(name) for name in inboxes}
    for c in consumers.values():
        await c.subscribe()
    events = [_event(i) for i in range(300)]
    for e in events:
        await transport.publish(e)
    for e in events[::10]:
        await transport.publish(e)  # the producer retried: same (source, id)

    for _ in range(10_000):
        if all(transport.backlog(n) == 0 for n in consumers):
            break
        progressed = False
        for name in list(consumers):
            try:
                progressed |= await consumers[name].run_once() > 0
            except ConsumerCrash:
                # The process died: its claims come back after the lease; a new one starts.
                consumers[name] = consumer(name)
                progressed = True
        if not progressed:
            clock.advance(LEASE + 1)  # only leased messages (lost acks, crashes) are left
    else:
        pytest.fail("the consumers never drained the backlog")

    for name in consumers:
        handled = {eid: n for (sub, eid), n in ledger.items() if sub == name}
        assert handled == {e.id: 1 for e in events}, f"{name}: lost or double-handled events"
        assert not transport.dead_letters.get(name)
    assert all(v > 0 for v in transport.injected.values()), transport.injected
    assert order != [e.id for e in events]  # reordering really happened


async def test_lease_expiry_redelivers_and_fences_the_old_token() -> None:
    clock = ManualClock()
    t = MemoryTransport(clock=clock)
    await t.subscribe("s")
    await t.publish(_event(1))
    [first] = await t.claim("s", lease_seconds=5)
    assert await t.claim("s") == []  # leased
    clock.advance(6)
    [second] = await t.claim("s", lease_seconds=5)
    assert second.attempt == 2 and second.token != first.token
    with pytest.raises(LeaseLostError):
        await t.ack(first)
    with pytest.raises(LeaseLostError):
        await t.nack(first)
    await t.ack(second)
    assert t.backlog("s") == 0


async def test_failing_handler_is_retried_then_dead_lettered() -> None:
    clock = ManualClock()
    t = MemoryTransport(clock=clock, max_deliveries=3)
    calls = Counter[str]()

    async def handler(event: Event, tx: Any) -> None:
        calls[event.id] += 1
        if event.id == "e1":
            raise ValueError("poison")

    c = Consumer(transport=t, subscription="s", handler=handler, retry_base=1.0)
    await c.subscribe()
    await t.publish(_event(1))
    await t.publish(_event(2))
    for _ in range(5):
        await c.run_once()
        clock.advance(100)
    assert calls == {"e1": 3, "e2": 1}
    [(event, attempts, error)] = t.dead_letters["s"]
    assert (event.id, attempts) == ("e1", 3)
    assert error == "ValueError: poison"
    assert c.stats.failed == 3 and c.stats.handled == 1


async def test_each_subscription_gets_every_event_of_its_types() -> None:
    t = MemoryTransport()
    await t.subscribe("all")
    await t.subscribe("docs", ["doc.uploaded"])
    await t.publish(_event(1, "doc.uploaded"))
    await t.publish(_event(2, "payment.received"))
    got_all = [d.event.id for d in await t.claim("all")]
    got_docs = [d.event.id for d in await t.claim("docs")]
    assert got_all == ["e1", "e2"]
    assert got_docs == ["e1"]
