"""The consumer runner: claim -> handler -> inbox -> ack, with retries, over any Transport.

A claimed batch is handled in one inbox transaction (one commit per batch), each delivery
in its own savepoint: a handler that raises undoes only its own writes and its delivery is
nacked with exponential backoff; the others commit. A redelivered event finds its inbox row
and is acked without calling the handler again.

With the SQL outbox and its own inbox (`outbox.inbox()`, the default), the ack is written in
that same transaction too, fenced by the lease token: if the lease was lost meanwhile, the
delivery's savepoint is rolled back (handler writes included) and the new holder does the
work. With other transports the ack follows the commit; a lost ack only means one more
redelivery, which the inbox drops.

A crash (process death, or any BaseException such as cancellation) rolls the whole batch
back and acks nothing: the transport redelivers every claimed event after its lease.

Each handler call runs in the trace its event carries (`traceparent`, see
`bridge.bus.envelope.traced`) as a `HandleEvent:<type>` span, so a run a trigger starts or
signals there continues the publisher's trace (`bridge.tracing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.bus.envelope import Event
from bridge.bus.inbox import Inbox
from bridge.bus.transport import Delivery, LeaseLostError, Transport
from bridge.errors import BridgeError
from bridge.tracing import handling

__all__ = ["Consumer", "ConsumerStats", "Handler"]

log = logging.getLogger("bridge.bus.consumer")

#: `async def handler(event, connection)`; `connection` is the inbox transaction's handle
#: (a SQLAlchemy Connection for a SQL inbox): write through it to commit with the inbox.
Handler = Callable[[Event, Any], Awaitable[None]]


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    failed: int = 0
    lease_lost: int = 0


class Consumer:
    """Runs `handler` for every event of `subscription`, exactly once per consumer name.

    `inbox` defaults to the transport's own (`transport.inbox()`, which the SQL outbox and
    the memory transport provide); other transports need one passed explicitly.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        subscription: str,
        handler: Handler,
        inbox: Inbox | None = None,
        name: str | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 100,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.05,
        retry_base: float = 0.5,
        retry_max: float = 60.0,
    ) -> None:
        if inbox is None:
            make = getattr(transport, "inbox", None)
            if make is None:
                raise BridgeError(
                    f"Consumer for subscription {subscription!r}: {type(transport).__name__} "
                    "has no inbox of its own; pass inbox=SqlInbox(url=...)"
                )
            inbox = make()
        bound = getattr(inbox, "outbox", None)
        if bound is not None and bound is not transport:
            raise BridgeError(
                f"Consumer for subscription {subscription!r}: the inbox belongs to another "
                "outbox than the transport; use transport.inbox() or SqlInbox(url=...)"
            )
        self.transport = transport
        self.subscription = subscription
        self.handler = handler
        self.inbox = inbox
        self.name = name or subscription
        self.types = types
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.stats = ConsumerStats()
        self._stopping = False

    async def subscribe(self) -> None:
        """Create the durable subscription (events published before it are not seen)."""
        await self.transport.subscribe(self.subscription, self.types)

    def backoff(self, attempt: int) -> float:
        return min(self.retry_max, self.retry_base * 2 ** max(0, attempt - 1))

    async def run_once(self) -> int:
        """Claim and handle one batch; the number of deliveries claimed."""
        deliveries = await self.transport.claim(
            self.subscription, max_messages=self.batch_size, lease_seconds=self.lease_seconds
        )
        if not deliveries:
            return 0
        to_ack: list[Delivery] = []
        failed: list[tuple[Delivery, BaseException]] = []
        async with self.inbox.transaction() as tx:
            for d in deliveries:
                try:
                    with tx.savepoint():
                        new = tx.record(self.name, d.event)
                        if new:
                            with handling(
                                f"HandleEvent:{d.event.type}",
                                d.event.trace_headers,
                                {
                                    "bridge.event_id": d.event.id,
                                    "bridge.event_source": d.event.source,
                                    "bridge.consumer": self.name,
                                    "bridge.delivery_attempt": d.attempt,
                                },
                            ):
                                await self.handler(d.event, tx.connection)
                        acked = tx.ack_in(d)
                except LeaseLostError as exc:
                    self.stats.lease_lost += 1
                    log.info("%s", exc)
                    continue
                except Exception as exc:
                    failed.append((d, exc))
                    continue
                if new:
                    self.stats.handled += 1
                else:
                    self.stats.duplicates += 1
                if not acked:
                    to_ack.append(d)
        for d in to_ack:
            try:
                await self.transport.ack(d)
            except LeaseLostError:
                # Handled and recorded; the redelivery finds the inbox row and is dropped.
                self.stats.lease_lost += 1
        for d, exc in failed:
            self.stats.failed += 1
            log.warning(
                "consumer %s: handler failed on event %s/%s (delivery %d): %r",
                self.name,
                d.event.source,
                d.event.id,
                d.attempt,
                exc,
            )
            try:
                await self.transport.nack(
                    d, delay=self.backoff(d.attempt), error=f"{type(exc).__name__}: {exc}"
                )
            except LeaseLostError:
                self.stats.lease_lost += 1
        return len(deliveries)

    async def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Subscribe, then handle batches until `stop()` (or `until()` is true)."""
        await self.subscribe()
        while not self._stopping and not (until is not None and until()):
            if await self.run_once() == 0:
                await asyncio.sleep(self.poll_interval)

    def stop(self) -> None:
        self._stopping = True
