"""The in-memory transport: the test double of `Transport`, able to inject faults.

Faults, all drawn from one seeded `random.Random`, so a failing run replays exactly:

- `duplicate_rate`: a claimed message is also put back as a second copy (the broker
  delivered it twice);
- `reorder`: a claim takes random ready messages instead of the oldest;
- `drop_ack_rate`: an ack is lost on the way (the consumer died after its commit), so the
  message comes back after its lease;
- `crash_rate`: `crashing(handler)` wraps a handler so that it dies (raises
  `ConsumerCrash`, a BaseException like a killed process) after doing its work but before
  its consumer commits; the claimed messages come back after their lease.

Time comes from `clock` (a `ManualClock` lets a test expire leases without sleeping).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.bus.envelope import Event, traced
from bridge.bus.inbox import MemoryInbox
from bridge.bus.transport import Delivery, LeaseLostError

__all__ = ["ConsumerCrash", "ManualClock", "MemoryTransport"]

Handler = Callable[[Event, Any], Any]


class ConsumerCrash(BaseException):
    """The simulated death of a consumer mid-handler. A BaseException, as a SIGKILL is not
    something handler code could catch and carry on from."""


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Message:
    event: Event
    attempts: int = 0
    visible_at: float = 0.0
    token: str | None = None
    error: str | None = None


@dataclass
class _Subscription:
    types: frozenset[str] | None
    # Insertion-ordered: message number -> message.
    messages: dict[int, _Message] = field(default_factory=dict)


class MemoryTransport:
    def __init__(
        self,
        *,
        max_deliveries: int = 5,
        seed: int = 0,
        duplicate_rate: float = 0.0,
        reorder: bool = False,
        drop_ack_rate: float = 0.0,
        crash_rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_deliveries = max_deliveries
        self.duplicate_rate = duplicate_rate
        self.reorder = reorder
        self.drop_ack_rate = drop_ack_rate
        self.crash_rate = crash_rate
        self.clock = clock
        self.rng = random.Random(seed)
        self.subscriptions: dict[str, _Subscription] = {}
        self.dead_letters: dict[str, list[tuple[Event, int, str | None]]] = {}
        #: How many faults were injected, by kind (tests assert they really happened).
        self.injected = {"duplicates": 0, "dropped_acks": 0, "crashes": 0}
        self._published: set[tuple[str, str]] = set()
        self._next = 0
        # token -> (subscription, message number)
        self._leases: dict[str, tuple[str, int]] = {}

    def inbox(self) -> MemoryInbox:
        return MemoryInbox()

    def _add(self, sub: _Subscription, message: _Message) -> None:
        self._next += 1
        sub.messages[self._next] = message

    async def subscribe(self, subscription: str, types: Sequence[str] | None = None) -> None:
        wanted = None if types is None else frozenset(types)
        sub = self.subscriptions.get(subscription)
        if sub is None:
            self.subscriptions[subscription] = _Subscription(types=wanted)
        else:
            sub.types = wanted

    async def publish(self, event: Event) -> None:
        if event.key in self._published:
            return
        event = traced(event)
        self._published.add(event.key)
        for sub in self.subscriptions.values():
            if sub.types is None or event.type in sub.types:
                self._add(sub, _Message(event=event, visible_at=self.clock()))

    async def claim(
        self, subscription: str, *, max_messages: int = 10, lease_seconds: float = 30.0
    ) -> list[Delivery]:
        sub = self.subscriptions[subscription]
        now = self.clock()
        for number, m in list(sub.messages.items()):
            if m.token is not None and m.visible_at <= now and m.attempts >= self.max_deliveries:
                self._bury(subscription, number, "the lease expired on every delivery")
        ready = [n for n, m in sub.messages.items() if m.visible_at <= now]
        if self.reorder:
            self.rng.shuffle(ready)
        out = []
        for number in ready[:max_messages]:
            m = sub.messages[number]
            if m.token is not None:
                self._leases.pop(m.token, None)
            m.token = uuid.uuid4().hex
            m.attempts += 1
            m.visible_at = now + lease_seconds
            self._leases[m.token] = (subscription, number)
            out.append(
                Delivery(
                    event=m.event, subscription=subscription, token=m.token, attempt=m.attempts
                )
            )
            if self.rng.random() < self.duplicate_rate:
                self.injected["duplicates"] += 1
                self._add(sub, _Message(event=m.event, visible_at=now))
        return out

    def _held(self, delivery: Delivery) -> tuple[_Subscription, int, _Message]:
        where = self._leases.get(delivery.token)
        if where is None:
            e = delivery.event
            raise LeaseLostError(
                f"subscription {delivery.subscription!r}: the lease on event "
                f"{e.source}/{e.id} (delivery {delivery.attempt}) no longer holds"
            )
        sub = self.subscriptions[where[0]]
        return sub, where[1], sub.messages[where[1]]

    def _bury(self, subscription: str, number: int, error: str | None) -> None:
        m = self.subscriptions[subscription].messages.pop(number)
        if m.token is not None:
            self._leases.pop(m.token, None)
        self.dead_letters.setdefault(subscription, []).append((m.event, m.attempts, error))

    async def ack(self, delivery: Delivery) -> None:
        sub, number, _ = self._held(delivery)
        if self.rng.random() < self.drop_ack_rate:
            self.injected["dropped_acks"] += 1
            return
        del sub.messages[number]
        self._leases.pop(delivery.token, None)

    async def nack(
        self, delivery: Delivery, *, delay: float = 0.0, error: str | None = None
    ) -> None:
        _sub, number, m = self._held(delivery)
        if m.attempts >= self.max_deliveries:
            self._bury(delivery.subscription, number, error)
            return
        self._leases.pop(delivery.token, None)
        m.token = None
        m.error = error
        m.visible_at = self.clock() + max(0.0, delay)

    async def close(self) -> None:
        """Nothing to release; unacked messages stay for the next consumer."""

    def backlog(self, subscription: str) -> int:
        return len(self.subscriptions[subscription].messages)

    def crashing(self, handler: Handler) -> Handler:
        """`handler`, dying with `ConsumerCrash` after its work at `crash_rate`."""

        async def crashy(event: Event, connection: Any) -> None:
            await handler(event, connection)
            if self.rng.random() < self.crash_rate:
                self.injected["crashes"] += 1
                raise ConsumerCrash(f"simulated consumer crash while handling {event.id}")

        return crashy
