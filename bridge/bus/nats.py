"""NATS JetStream transport: the bus for scale, behind the same `Transport` protocol.

Layout on the server (one bus = one pair of streams):

- stream `STREAM` holds every event under `<prefix>.<event type>`, as CloudEvents structured
  JSON (`Event.to_dict`). Its duplicate window drops a republished event: the
  `Nats-Msg-Id` header is a digest of the event's duplicate key (source, id), because the
  id alone is only unique per source and a header value may not carry every character.
- each subscription is a durable pull consumer of that stream, filtered to its event types
  (several types need `filter_subjects`, NATS 2.10+; older servers get the whole prefix and
  the transport acks the other types at claim).
- stream `STREAM_DLQ` holds dead letters under `<prefix>_dlq.<consumer>`. JetStream has no
  dead-letter queue of its own: a message whose last allowed delivery fails is published
  there (with its error and attempt count) and then terminated (`+TERM`).

Leases. The lease is the consumer's `ack_wait`; a claim asking for another lease updates the
consumer, so the lease is per subscription, not per claim. A lease token is the message's
ack subject (which names stream sequence and delivery count) plus a fence time. What NATS
can and cannot fence: the server accepts an ack for a message it has already redelivered
(measured on 2.9 and 2.15: a first delivery's ack after the redelivery removes the message
for both), and answers an ack for a message it no longer tracks with the same empty reply.
So the fence is kept on the client: ack and nack refuse (LeaseLostError) once the fence
time has passed. The fence is taken from the claimant's wall clock before the pull request
was sent, minus a margin (10% of the lease, at most 1 s), so it falls before the server's
own redelivery timer on any host whose clock agrees with the server's. An ack sent just
before the fence that reaches the server after a redelivery still acks the message; that
is harmless, because an ack is only sent after the work was durably recorded. An ack
returns once the server has read it (one PING/PONG for every ack written in the same loop
iteration; `ack_many` for a batch), unless `confirm_acks=False`.

max_deliveries counts handling attempts: a nack on the last one dead-letters the message;
a message whose lease ran out on its last attempt is dead-lettered when it is next claimed
(the consumer's own max_deliver is unlimited, so NATS never drops it silently).

With payload encryption (`bridge.encryption`) a message body is the event's JSON sealed with
the keyring (`bridge-enc:v1:<key id>:...`), so the streams hold no plaintext data; subjects
and headers (event type, digest of the id) stay readable for routing. A body that does not
open with the configured keys fails the claim with `PayloadKeyError` and is not
dead-lettered: the message waits for a consumer with the right key.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

try:
    import nats
    import nats.errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js import JetStreamContext, api
    from nats.js.errors import APIError, NotFoundError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('bridge.bus.nats needs nats-py: pip install "durable-bridge[nats]"') from exc

from bridge.bus.envelope import Event, EventError, traced
from bridge.bus.transport import Delivery, LeaseLostError
from bridge.encryption import Keyring, open_text, process_codec
from bridge.errors import BridgeError

__all__ = ["DeadLetter", "NatsTransport", "NatsTransportError"]

# A subject token: no whitespace, no wildcards, no empty token (so no leading, trailing or
# doubled dot).
_SUBJECT = re.compile(r"^[^\s*>.]+(\.[^\s*>.]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_NAME = 64
_HEARTBEAT = "100"
_ERROR_HEADER_LIMIT = 1000
_log = logging.getLogger("bridge.bus.nats")


async def _log_error(exc: Exception) -> None:
    """nats-py reports connection trouble here; one line, not its default traceback."""
    _log.warning("NATS connection: %s", exc)


class NatsTransportError(BridgeError):
    """The NATS server refused or could not be reached; the message names what and where."""


@dataclass(frozen=True)
class DeadLetter:
    """A message a subscription gave up on after `attempts` deliveries; the fields of the
    SQL outbox's `DeadLetter`, plus what NATS adds. `event` is None when the message was not
    a valid envelope (then `raw` is all there is)."""

    subscription: str
    event: Event | None
    attempts: int
    error: str | None
    dead_at: float
    raw: bytes
    stream_sequence: int
    #: The letter's own sequence in the dead-letter stream (what replay and drop remove).
    dead_letter_sequence: int = 0


@dataclass
class _PublishBatch:
    waiting: int
    errors: list[tuple[int, str]] = field(default_factory=list)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Pull:
    """One pull request being answered: the messages so far, done at `want` or a status."""

    want: int
    sent_at: float
    msgs: list[tuple[float, Msg]] = field(default_factory=list)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Subscription:
    name: str
    consumer: str
    config: api.ConsumerConfig
    types: frozenset[str] | None
    #: the server could not filter on every type; the others are acked at claim
    client_filter: bool
    inbox: str = ""
    sub: Subscription | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pull: _Pull | None = None
    last_sent_at: float = 0.0
    #: messages that arrived after their pull request gave up waiting, with the time that
    #: request was sent (their lease started after it); the next claim takes them first
    leftover: list[tuple[float, Msg]] = field(default_factory=list)

    async def on_message(self, msg: Msg) -> None:
        """The inbox callback: messages and the status that ends a pull request."""
        status = msg.headers.get("Status") if msg.headers else None
        pull = self.pull
        if status:
            if status == _HEARTBEAT or pull is None or pull.done.done():
                return
            description = str(msg.headers.get("Description", "")) if msg.headers else ""
            if status == "409" and "deleted" in description.lower():
                pull.done.set_exception(
                    NatsTransportError(
                        f"the NATS consumer {self.consumer!r} of subscription {self.name!r} "
                        "was deleted; call subscribe() again"
                    )
                )
            else:  # 404 no messages, 408 fewer than asked, 409 max ack pending...
                pull.done.set_result(None)
            return
        if pull is None or pull.done.done():
            self.leftover.append((self.last_sent_at, msg))
            return
        pull.msgs.append((pull.sent_at, msg))
        if len(pull.msgs) >= pull.want:
            pull.done.set_result(None)


def _check_subject(value: str, what: str) -> str:
    if not _SUBJECT.match(value):
        raise EventError(
            f"{what} {value!r} cannot be a NATS subject: use dot-separated tokens without "
            "spaces, '*' or '>'"
        )
    return value


def _consumer_name(subscription: str) -> str:
    """The durable name for a subscription: the name itself when NATS allows it, else a
    readable part plus a digest, so two different subscriptions never share a consumer."""
    if _NAME.match(subscription) and len(subscription) <= _MAX_NAME:
        return subscription
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", subscription)[:40]
    digest = hashlib.sha256(subscription.encode()).hexdigest()[:16]
    return f"{readable}-{digest}"


def _msg_id(event: Event) -> str:
    # Length-prefixed, so no (source, id) pair can spell another's input.
    key = f"{len(event.source)}:{event.source}:{event.id}"
    return hashlib.sha256(key.encode()).hexdigest()


def _token(reply: str, fence: float) -> str:
    return f"{fence:.6f} {reply}"


def _parse_token(delivery: Delivery) -> tuple[str, float]:
    fence, _, reply = delivery.token.partition(" ")
    try:
        return reply, float(fence)
    except ValueError:
        raise LeaseLostError(
            f"delivery of event {delivery.event.id!r} to {delivery.subscription!r} has lease "
            f"token {delivery.token!r}, which no NATS transport issued"
        ) from None


def _fence(started: float, lease: float) -> float:
    return started + lease - min(1.0, 0.1 * lease)


class NatsTransport:
    """Events on a JetStream stream, one durable pull consumer per subscription.

    Connects on first use (or `await transport.connect()`); `close()` or `async with`
    releases the connection. Unacked claims are redelivered after their lease.
    """

    def __init__(
        self,
        *,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        stream: str = "BRIDGE",
        subject_prefix: str = "bridge",
        duplicate_window: float = 120.0,
        max_deliveries: int = 5,
        lease_seconds: float = 30.0,
        max_ack_pending: int = 20_000,
        max_age: float | None = None,
        storage: Literal["file", "memory"] = "file",
        confirm_acks: bool = True,
        request_timeout: float = 5.0,
        codec: Keyring | None = None,
    ) -> None:
        """`codec`: the payload keyring (`bridge.encryption`) bodies are sealed and opened
        with; by default the one this process's settings configure (`process_codec`)."""
        if not _NAME.match(stream):
            raise NatsTransportError(
                f"NATS stream name {stream!r} may use only letters, digits, '_' and '-'"
            )
        _check_subject(subject_prefix, "subject prefix")
        if max_deliveries < 1:
            raise NatsTransportError(f"max_deliveries must be at least 1, got {max_deliveries}")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.dead_letter_stream = f"{stream}_DLQ"
        self.prefix = subject_prefix
        self.duplicate_window = duplicate_window
        self.max_deliveries = max_deliveries
        self.lease_seconds = lease_seconds
        self.max_ack_pending = max_ack_pending
        self.max_age = max_age
        self.storage = api.StorageType.FILE if storage == "file" else api.StorageType.MEMORY
        #: ack/nack return once the server has read them (one PING/PONG shared by every
        #: ack written in the same loop iteration); else they return once buffered, and an
        #: ack lost with the connection means one more delivery, which the inbox drops
        self.confirm_acks = confirm_acks
        self.request_timeout = request_timeout
        self.codec = codec if codec is not None else process_codec()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._subs: dict[str, _Subscription] = {}
        self._connect_lock = asyncio.Lock()
        self._flush: asyncio.Future[None] | None = None
        self._subjects: dict[str, str] = {}
        self._batches: dict[int, _PublishBatch] = {}
        self._batch_ids = itertools.count()
        self._acks_inbox: str | None = None

    # -- connection and streams --------------------------------------------------------
    async def __aenter__(self) -> NatsTransport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and create (or check) the event and dead-letter streams."""
        await self._ready()

    async def _ready(self) -> tuple[NatsClient, JetStreamContext]:
        if self._nc is not None and self._js is not None:
            return self._nc, self._js
        async with self._connect_lock:
            if self._nc is None or self._js is None:
                try:
                    # One retry on the first connection, so a wrong address fails in seconds;
                    # once connected, reconnect for as long as it takes.
                    nc = await nats.connect(
                        servers=self.servers,
                        connect_timeout=self.request_timeout,
                        max_reconnect_attempts=1,
                        error_cb=_log_error,
                    )
                    nc.options["max_reconnect_attempts"] = -1
                except (OSError, nats.errors.Error) as exc:
                    raise NatsTransportError(
                        f"cannot connect to NATS at {', '.join(self.servers)}: {exc}. Start a "
                        "server with JetStream enabled (nats-server -js) or fix `servers`"
                    ) from exc
                js = nc.jetstream(timeout=self.request_timeout)
                try:
                    await self._ensure_stream(js, self.stream, f"{self.prefix}.>")
                    await self._ensure_stream(js, self.dead_letter_stream, f"{self.prefix}_dlq.>")
                except BaseException:
                    await nc.close()
                    raise
                self._nc, self._js = nc, js
        assert self._nc is not None and self._js is not None
        return self._nc, self._js

    async def _ensure_stream(self, js: JetStreamContext, name: str, subject: str) -> None:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            config = api.StreamConfig(
                name=name,
                subjects=[subject],
                duplicate_window=self.duplicate_window,
                storage=self.storage,
                retention=api.RetentionPolicy.LIMITS,
                max_age=self.max_age,
            )
            try:
                await js.add_stream(config)
            except APIError as exc:
                raise NatsTransportError(
                    f"cannot create NATS stream {name!r} for subjects {subject!r}: "
                    f"{exc.description}"
                ) from exc
            return
        except APIError as exc:
            if exc.code == 503:
                raise NatsTransportError(
                    f"the NATS server at {', '.join(self.servers)} has JetStream disabled; "
                    "start it with -js"
                ) from exc
            raise
        if subject not in (info.config.subjects or []):
            raise NatsTransportError(
                f"NATS stream {name!r} exists with subjects {info.config.subjects}, not "
                f"{subject!r}; choose another stream name or subject prefix"
            )
        if info.config.duplicate_window != self.duplicate_window:
            await js.update_stream(replace(info.config, duplicate_window=self.duplicate_window))

    # -- publishing ----------------------------------------------------------------------
    def _subject(self, event_type: str) -> str:
        subject = self._subjects.get(event_type)
        if subject is None:
            subject = f"{self.prefix}.{_check_subject(event_type, 'event type')}"
            self._subjects[event_type] = subject
        return subject

    def _message(self, event: Event) -> tuple[str, bytes, dict[str, str]]:
        # No Nats-Expected-Stream header: it is stored with every message and parsed on
        # every delivery, and streams' subjects cannot overlap, so the subject already
        # names the stream (with none, the server answers "no responders").
        # The trace context goes in the envelope (what consumers read) and, for NATS
        # tooling that follows W3C headers, in the message headers too.
        event = traced(event)
        headers = {"Nats-Msg-Id": _msg_id(event), **event.trace_headers}
        return self._subject(event.type), self._body(event), headers

    def _body(self, event: Event) -> bytes:
        text = json.dumps(event.to_dict(), separators=(",", ":"))
        return (text if self.codec is None else self.codec.seal(text)).encode()

    def _event(self, data: bytes) -> Event:
        """A body back as an event; a sealed one opened with the keyring (a wrong or
        missing key raises `PayloadKeyError`, which is not a bad event)."""
        text = open_text(self.codec, data.decode(), where="a NATS message")
        return Event.from_dict(json.loads(text))

    async def publish(self, event: Event) -> None:
        """Publish and wait for the stream to store it (a duplicate is acknowledged too)."""
        _, js = await self._ready()
        subject, body, headers = self._message(event)
        try:
            await js.publish(subject, body, headers=headers)
        except (APIError, nats.errors.Error) as exc:
            raise NatsTransportError(
                f"publishing event {event.id!r} ({event.type}) to NATS stream "
                f"{self.stream!r} failed: {exc}"
            ) from exc

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish a batch without waiting for each acknowledgement in turn, then wait for
        all of them; raises after the batch if any was refused (re-publishing is safe).

        Why not nats-py's `publish_async`: it keeps a future, a semaphore slot and a fresh
        reply token per message, which cost about a third of the publishing CPU here; one
        counter per batch does the same job.
        """
        if not events:
            return
        nc, _ = await self._ready()
        if self._acks_inbox is None:
            inbox = nc.new_inbox()
            await nc.subscribe(f"{inbox}.*", cb=self._on_publish_ack)
            self._acks_inbox = inbox
        number = next(self._batch_ids)
        batch = _PublishBatch(waiting=len(events))
        self._batches[number] = batch
        try:
            for index, event in enumerate(events):
                subject, body, headers = self._message(event)
                await nc.publish(
                    subject, body, reply=f"{self._acks_inbox}.{number}x{index}", headers=headers
                )
            await asyncio.wait_for(asyncio.shield(batch.done), timeout=self.request_timeout)
        except TimeoutError:
            raise NatsTransportError(
                f"{batch.waiting} of {len(events)} events were not acknowledged by NATS stream "
                f"{self.stream!r} within {self.request_timeout:g} s; publishing them again is "
                "safe (duplicates are dropped)"
            ) from None
        finally:
            del self._batches[number]
        if batch.errors:
            index, error = batch.errors[0]
            raise NatsTransportError(
                f"{len(batch.errors)} of {len(events)} events were not stored in NATS stream "
                f"{self.stream!r}; first: event {events[index].id!r}: {error}"
            )

    async def _on_publish_ack(self, msg: Msg) -> None:
        """A stream's answer to one message of a `publish_many` batch."""
        number, _, index = msg.subject.rpartition(".")[2].partition("x")
        batch = self._batches.get(int(number))
        if batch is None or batch.done.done():
            return  # a batch that gave up waiting
        if msg.headers and msg.headers.get("Status") == "503":
            batch.errors.append((int(index), "no stream listens on this subject"))
        elif b'"error"' in msg.data:
            error = json.loads(msg.data).get("error", {})
            batch.errors.append((int(index), str(error.get("description", error))))
        batch.waiting -= 1
        if batch.waiting == 0:
            batch.done.set_result(None)

    # -- subscriptions -------------------------------------------------------------------
    async def subscribe(self, subscription: str, types: Sequence[str] | None = None) -> None:
        """Create (or update) the durable consumer; it gets every event published later."""
        nc, js = await self._ready()
        wanted = None if types is None else frozenset(types)
        subjects = (
            [f"{self.prefix}.>"] if wanted is None else sorted(self._subject(t) for t in wanted)
        )
        version = nc.connected_server_version
        multi = (version.major, version.minor) >= (2, 10)
        client_filter = len(subjects) > 1 and not multi
        consumer = _consumer_name(subscription)
        config = api.ConsumerConfig(
            name=consumer,
            durable_name=consumer,
            description=json.dumps(
                {"subscription": subscription, "types": None if wanted is None else sorted(wanted)}
            ),
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.lease_seconds,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
        )
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        elif multi:
            config.filter_subjects = subjects
        else:
            config.filter_subject = f"{self.prefix}.>"
        try:
            info = await js.consumer_info(self.stream, consumer)
        except NotFoundError:
            info = None
        if info is not None:
            old = (info.config.filter_subject, info.config.filter_subjects or None)
            if old != (config.filter_subject, config.filter_subjects) and not multi:
                # Measured on 2.9.10: the update is accepted, then the consumer delivers
                # nothing at all. Changing a filter is supported from 2.10.
                raise NatsTransportError(
                    f"subscription {subscription!r} exists with other event types, and NATS "
                    f"{version.major}.{version.minor} cannot change a consumer's filter; "
                    f"delete the consumer {consumer!r} of stream {self.stream!r} (its position "
                    "is lost) or upgrade the server to 2.10 or later"
                )
            # Keep the consumer's position and its current lease; change only its filter.
            config = replace(
                info.config,
                description=config.description,
                filter_subject=config.filter_subject,
                filter_subjects=config.filter_subjects,
            )
        try:
            info = await js.add_consumer(self.stream, config)
        except APIError as exc:
            raise NatsTransportError(
                f"cannot create the NATS consumer {consumer!r} for subscription "
                f"{subscription!r} on stream {self.stream!r}: {exc.description}"
            ) from exc
        old = self._subs.pop(subscription, None)
        if old is not None and old.sub is not None:
            await old.sub.unsubscribe()
        self._subs[subscription] = _Subscription(
            name=subscription,
            consumer=consumer,
            config=info.config,
            types=wanted,
            client_filter=client_filter,
        )

    async def _subscription(self, subscription: str) -> _Subscription:
        state = self._subs.get(subscription)
        if state is not None:
            return state
        _, js = await self._ready()
        consumer = _consumer_name(subscription)
        try:
            info = await js.consumer_info(self.stream, consumer)
        except NotFoundError:
            raise NatsTransportError(
                f"subscription {subscription!r} does not exist on NATS stream "
                f"{self.stream!r}; call subscribe({subscription!r}, types) first"
            ) from None
        try:
            described = json.loads(info.config.description or "{}")
        except ValueError:  # a consumer made by hand: no types recorded, the filter rules
            described = {}
        types = described.get("types") if isinstance(described, dict) else None
        wanted = None if types is None else frozenset(types)
        filtered = info.config.filter_subjects or [info.config.filter_subject]
        state = _Subscription(
            name=subscription,
            consumer=consumer,
            config=info.config,
            types=wanted,
            client_filter=wanted is not None and filtered == [f"{self.prefix}.>"],
        )
        return self._subs.setdefault(subscription, state)

    async def _set_lease(self, state: _Subscription, lease_seconds: float) -> None:
        _, js = await self._ready()
        info = await js.add_consumer(self.stream, replace(state.config, ack_wait=lease_seconds))
        state.config = info.config

    # -- claiming ------------------------------------------------------------------------
    async def claim(
        self, subscription: str, *, max_messages: int = 10, lease_seconds: float = 30.0
    ) -> list[Delivery]:
        """Pull up to `max_messages` ready messages without waiting for more. The lease is
        the consumer's ack_wait; a different `lease_seconds` updates the consumer first."""
        nc, _ = await self._ready()
        state = await self._subscription(subscription)
        if state.config.ack_wait != lease_seconds:
            await self._set_lease(state, lease_seconds)
        async with state.lock:
            if state.sub is None:
                state.inbox = nc.new_inbox()
                state.sub = await nc.subscribe(state.inbox, cb=state.on_message)
            msgs = await self._pull(nc, state, max_messages)
        out: list[Delivery] = []
        for sent_at, msg in msgs:
            delivered = msg.metadata.num_delivered
            if delivered > self.max_deliveries:
                await self._dead_letter(
                    state,
                    msg.reply,
                    msg.data,
                    error=f"lease ran out on the last of {self.max_deliveries} deliveries",
                    attempts=self.max_deliveries,
                )
                continue
            try:
                event = self._event(msg.data)
            except (ValueError, EventError) as exc:
                await self._dead_letter(
                    state,
                    msg.reply,
                    msg.data,
                    error=f"not a valid event: {exc}",
                    attempts=delivered,
                )
                continue
            if state.client_filter and state.types is not None and event.type not in state.types:
                await nc.publish(msg.reply, b"+ACK")
                continue
            out.append(
                Delivery(
                    event=event,
                    subscription=subscription,
                    token=_token(msg.reply, _fence(sent_at, lease_seconds)),
                    attempt=delivered,
                )
            )
        return out

    async def _pull(
        self, nc: NatsClient, state: _Subscription, batch: int
    ) -> list[tuple[float, Msg]]:
        """Leftovers first, then one `no_wait` pull request: the server sends what is ready
        (up to the rest of `batch`) and ends the request with a status (404 none, 408 fewer
        than asked). Each message comes with the time its request was sent."""
        msgs = state.leftover[:batch]
        del state.leftover[:batch]
        if len(msgs) == batch:
            return msgs
        pull = _Pull(want=batch - len(msgs), sent_at=time.time())
        state.pull, state.last_sent_at = pull, pull.sent_at
        try:
            await nc.publish(
                f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{self.stream}.{state.consumer}",
                json.dumps({"batch": pull.want, "no_wait": True}).encode(),
                reply=state.inbox,
            )
            await asyncio.wait_for(asyncio.shield(pull.done), timeout=self.request_timeout)
        except TimeoutError:
            pass  # what arrives later is a leftover for the next claim
        finally:
            state.pull = None
        return msgs + pull.msgs

    # -- settling ------------------------------------------------------------------------
    def _check_lease(self, delivery: Delivery, action: str) -> str:
        reply, fence = _parse_token(delivery)
        if time.time() >= fence:
            raise LeaseLostError(
                f"cannot {action} event {delivery.event.id!r} for {delivery.subscription!r} "
                f"(delivery {delivery.attempt}): its lease ran out, so NATS redelivers it to "
                "another claimant; drop this delivery"
            )
        return reply

    async def ack(self, delivery: Delivery) -> None:
        """Mark handled; call only after the handler's work is durably recorded."""
        nc, _ = await self._ready()
        reply = self._check_lease(delivery, "ack")
        await nc.publish(reply, b"+ACK")
        if self.confirm_acks:
            await self._confirm(nc, f"the ack of event {delivery.event.id!r}")

    async def ack_many(self, deliveries: Sequence[Delivery]) -> list[LeaseLostError]:
        """Ack a batch with one confirmation for all of it. Deliveries whose lease ran out
        are not acked; their errors are returned (one per such delivery), the rest acked."""
        nc, _ = await self._ready()
        lost: list[LeaseLostError] = []
        for delivery in deliveries:
            try:
                reply = self._check_lease(delivery, "ack")
            except LeaseLostError as exc:
                lost.append(exc)
                continue
            await nc.publish(reply, b"+ACK")
        if self.confirm_acks and len(lost) < len(deliveries):
            await self._confirm(nc, f"the acks of {len(deliveries) - len(lost)} events")
        return lost

    async def nack(
        self, delivery: Delivery, *, delay: float = 0.0, error: str | None = None
    ) -> None:
        """Redeliver after `delay`, or dead-letter on the last allowed delivery."""
        nc, _ = await self._ready()
        reply = self._check_lease(delivery, "nack")
        if delivery.attempt >= self.max_deliveries:
            state = await self._subscription(delivery.subscription)
            body = self._body(delivery.event)
            await self._dead_letter(
                state, reply, body, error=error or "handler failed", attempts=delivery.attempt
            )
            return
        payload = b"-NAK"
        if delay > 0:
            payload += b" " + json.dumps({"delay": int(delay * 1e9)}).encode()
        await nc.publish(reply, payload)
        if self.confirm_acks:
            await self._confirm(nc, f"the nack of event {delivery.event.id!r}")

    async def _confirm(self, nc: NatsClient, what: str) -> None:
        """Wait until the server has read everything written so far. Acks written in the
        same loop iteration join one flush: it sends its PING when it first runs, after
        them, so the PONG proves each of them arrived."""
        if self._flush is None:
            self._flush = asyncio.ensure_future(self._flush_once(nc))
        try:
            await asyncio.shield(self._flush)
        except (TimeoutError, nats.errors.Error) as exc:
            raise NatsTransportError(
                f"{what} was not confirmed by NATS at {', '.join(self.servers)}: {exc}; "
                "the message will be delivered again after its lease"
            ) from exc

    async def _flush_once(self, nc: NatsClient) -> None:
        self._flush = None
        await nc.flush(timeout=self.request_timeout)

    async def _dead_letter(
        self, state: _Subscription, reply: str, body: bytes, *, error: str, attempts: int
    ) -> None:
        """Store the message in the dead-letter stream, then terminate it. The dead letter's
        Nats-Msg-Id is (consumer, stream sequence), so doing this twice stores it once."""
        nc, js = await self._ready()
        sequence = Msg(_client=nc, reply=reply).metadata.sequence.stream
        headers = {
            "Nats-Msg-Id": f"{state.consumer}.{sequence}",
            "Bridge-Subscription": state.name,
            "Bridge-Error": " ".join(error.split())[:_ERROR_HEADER_LIMIT],
            "Bridge-Attempts": str(attempts),
            "Bridge-Stream-Sequence": str(sequence),
        }
        await js.publish(
            f"{self.prefix}_dlq.{state.consumer}",
            body,
            headers=headers,
            stream=self.dead_letter_stream,
        )
        await nc.publish(reply, b"+TERM")
        await self._confirm(nc, f"terminating dead letter {sequence}")

    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        """The dead letters (of one subscription, or all), oldest first."""
        _, js = await self._ready()
        consumer = ">" if subscription is None else _consumer_name(subscription)
        subject = f"{self.prefix}_dlq.{consumer}"
        out: list[DeadLetter] = []
        sequence = 0
        while True:
            try:
                raw = await js.get_msg(
                    self.dead_letter_stream, seq=sequence + 1, subject=subject, next=True
                )
            except NotFoundError:
                return out
            sequence = raw.seq or sequence + 1
            headers: dict[str, Any] = raw.headers or {}
            data = raw.data or b""
            try:
                event: Event | None = self._event(data)
            except (ValueError, EventError):
                event = None
            out.append(
                DeadLetter(
                    subscription=headers.get("Bridge-Subscription", subscription or ""),
                    event=event,
                    attempts=int(headers.get("Bridge-Attempts", "0")),
                    error=headers.get("Bridge-Error") or None,
                    dead_at=raw.time.timestamp() if raw.time else 0.0,
                    raw=data,
                    stream_sequence=int(headers.get("Bridge-Stream-Sequence", "0")),
                    dead_letter_sequence=sequence,
                )
            )

    async def replay_dead_letters(
        self, subscription: str, event_ids: Sequence[str] | None = None
    ) -> int:
        """Deliver dead letters of `subscription` again (those of `event_ids`, or all); how
        many. Each event is published again to its subject, then its letter is deleted.

        JetStream cannot address one consumer, so every subscription of the event's type
        receives it again: the consumer's inbox drops it where it was handled already. The
        republished message gets a Nats-Msg-Id of its own (the original's would fall in the
        duplicate window), the same for the same letter, so a replay repeated after a crash
        between the publish and the delete stores it once. A letter that is not a valid
        envelope cannot be replayed: drop it."""
        _, js = await self._ready()
        replayed = 0
        for letter in await self._chosen_letters(subscription, event_ids):
            if letter.event is None:
                raise NatsTransportError(
                    f"dead letter {letter.dead_letter_sequence} of subscription "
                    f"{subscription!r} is not a valid event envelope and cannot be "
                    f"replayed; drop it (bridge bus dead-letters drop)"
                )
            subject, body, headers = self._message(letter.event)
            headers["Nats-Msg-Id"] = (
                f"{headers['Nats-Msg-Id']}.replay.{letter.dead_letter_sequence}"
            )
            try:
                await js.publish(subject, body, headers=headers)
                await js.delete_msg(self.dead_letter_stream, letter.dead_letter_sequence)
            except (APIError, nats.errors.Error) as exc:
                raise NatsTransportError(
                    f"replaying dead letter {letter.dead_letter_sequence} of "
                    f"{subscription!r} on NATS stream {self.stream!r} failed: {exc}"
                ) from exc
            replayed += 1
        return replayed

    async def drop_dead_letters(
        self, subscription: str, event_ids: Sequence[str] | None = None
    ) -> int:
        """Delete dead letters of `subscription` (those of `event_ids`, or all) for good;
        how many. The events stay in the event stream for other subscriptions."""
        _, js = await self._ready()
        dropped = 0
        for letter in await self._chosen_letters(subscription, event_ids):
            try:
                await js.delete_msg(self.dead_letter_stream, letter.dead_letter_sequence)
            except NotFoundError:
                continue  # dropped meanwhile
            dropped += 1
        return dropped

    async def _chosen_letters(
        self, subscription: str, event_ids: Sequence[str] | None
    ) -> list[DeadLetter]:
        wanted = None if event_ids is None else set(event_ids)
        return [
            d
            for d in await self.dead_letters(subscription)
            if wanted is None or (d.event is not None and d.event.id in wanted)
        ]

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        subs, self._subs = list(self._subs.values()), {}
        if nc is None or nc.is_closed:
            return
        for state in subs:
            if state.sub is not None:
                await state.sub.unsubscribe()
        await nc.close()
