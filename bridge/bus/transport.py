"""The one small protocol every transport implements (in-memory, SQL outbox, NATS).

Delivery is at-least-once: a claimed message that is neither acked nor nacked before its
lease runs out is delivered again, so handlers must be idempotent (see `bridge.bus.inbox`).
Every subscription receives every published event whose type it subscribed to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bridge.bus.envelope import Event
from bridge.errors import BridgeError

__all__ = ["Delivery", "LeaseLostError", "Transport"]


class LeaseLostError(BridgeError):
    """An ack/nack came with a lease token that no longer holds (the lease expired and the
    message was claimed again). The other claimant now owns it; this one must drop it."""


@dataclass(frozen=True)
class Delivery:
    """One claimed message for one subscription. `token` fences every later write."""

    event: Event
    subscription: str
    token: str
    #: 1 on the first delivery to this subscription, then 2, 3, ...
    attempt: int


@runtime_checkable
class Transport(Protocol):
    async def subscribe(self, subscription: str, types: Sequence[str] | None = None) -> None:
        """Create (or keep) a durable subscription; it receives every later event of
        `types` (all types when None). Idempotent."""

    async def publish(self, event: Event) -> None:
        """Publish durably. Publishing the same (source, id) twice delivers it once."""

    async def claim(
        self, subscription: str, *, max_messages: int = 10, lease_seconds: float = 30.0
    ) -> list[Delivery]:
        """Claim up to `max_messages` ready messages for `subscription`, leased to the
        caller for `lease_seconds`; returns at once (an empty list when none are ready)."""

    async def ack(self, delivery: Delivery) -> None:
        """The message is handled; never deliver it to this subscription again.
        Raises LeaseLostError when the lease token no longer holds."""

    async def nack(
        self, delivery: Delivery, *, delay: float = 0.0, error: str | None = None
    ) -> None:
        """Handling failed; deliver again after `delay` seconds, or move the message to the
        dead letters once it has failed `max_deliveries` times."""

    async def close(self) -> None:
        """Release connections; unacked claims are redelivered after their lease."""
