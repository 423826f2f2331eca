"""The SQL outbox: the bus's embedded transport, on SQLAlchemy (SQLite file or PostgreSQL).

An event is one row in `bridge_bus_events` (unique on source + id, so publishing twice
stores it once) plus one delivery row per subscription whose types it matches, written in
the same transaction. `publish_in(conn, event)` does that inside a caller's transaction, so
a state change and the event announcing it commit together or not at all.

Consumers claim delivery rows with a lease token (SQLite: the IMMEDIATE transaction is the
lock; PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint rows).
Every later write for a claim (ack, nack, and `ack_in` inside a handler's transaction)
names the token and raises `LeaseLostError` when another claimant has it since. A delivery
that fails `max_deliveries` times, or whose lease runs out that often (a consumer that
crashes on it), moves to `bridge_bus_dead_letters`. A holder that handled the event
after all (it stalled past its last lease, then committed) and acks it late takes its
dead letter back out: the event was handled, and a dead letter would send an operator to
replay work that is done; so does the inbox row of the subscription's own consumer
(named after it) when the event's last lease runs out after its work committed.

Statements run synchronously on the event-loop thread, as the SQL executor's store does:
a local commit costs less than a thread hop. That thread must never wait for SQLite's write
lock while this process holds it: a consumer's inbox transaction stays open across its
handler's awaits, and a writer blocked in SQLite's busy handler stops the very loop that
handler needs to finish, so it waits out the busy timeout and fails with "database is
locked". Hence one `asyncio.Lock` per SQLite file and event loop (`write_lock`), shared by
every outbox and inbox of the process on that file, not one per object: a publisher and a
consumer are usually two objects. Writers in the same process queue on it, yielding the
loop; only other processes' writers are waited for in the busy handler, and they do not
need this loop. On PostgreSQL each outbox keeps a lock of its own (row locks, no file lock).

With payload encryption (`bridge.encryption`), an event's body (its data: a run's result or
error) is sealed with the keyring attached to the engine it is written on: the journal's
own engine for completion events, the `codec` given to `SqlOutbox` otherwise. Type, source
and id stay plaintext: subscriptions match on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Engine, bindparam, delete, func, literal, or_, select, update

from bridge.bus import _outbox_schema as s
from bridge.bus._sql import create_bus_engine, dialect_insert, insert_for, translate
from bridge.bus.envelope import Event, traced
from bridge.bus.transport import Delivery, LeaseLostError
from bridge.encryption import Keyring, attach, codec_for_url, engine_codec, open_text
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.bus.inbox import SqlInbox

__all__ = ["DeadLetter", "SqlOutbox", "create_tables", "publish_in", "write_lock"]

_ALL_TYPES = "*"

#: event loop -> SQLite file -> the lock its writers in this process queue on.
_sqlite_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def write_lock(engine: Engine) -> asyncio.Lock | None:
    """The lock this process's write transactions on `engine`'s SQLite file take first (see
    the module docstring), for the running loop; None on another database."""
    if engine.dialect.name != "sqlite":
        return None
    key = str(Path(engine.url.database or "").resolve())
    per_file = _sqlite_locks.setdefault(asyncio.get_running_loop(), {})
    return per_file.setdefault(key, asyncio.Lock())


@dataclass(frozen=True)
class DeadLetter:
    """An event a subscription gave up on after `attempts` deliveries."""

    subscription: str
    event: Event
    attempts: int
    error: str | None
    dead_at: float


def _body(event: Event, codec: Keyring | None = None) -> str:
    text = json.dumps(event.to_dict(), separators=(",", ":"))
    return text if codec is None else codec.seal(text)


def _event(engine: Engine, body: str) -> Event:
    """A stored body back as an event, opened with the engine's keyring when sealed."""
    return Event.from_dict(json.loads(open_text(engine_codec(engine), body, where="a bus event")))


@dataclass(frozen=True)
class _Statements:
    """The hot statements, built once per dialect: building and cache-keying a Core
    statement costs more than running it on SQLite."""

    insert_event: Any
    fan_out: Any
    ack: Any
    ready: Any
    lease: Any
    bodies: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    e, d, st = s.events, s.deliveries, s.subscription_types
    insert_event = (
        dialect_insert(dialect, e)
        .values(
            source=bindparam("source"),
            id=bindparam("id"),
            type=bindparam("type"),
            body=bindparam("body"),
            published_at=bindparam("published_at"),
        )
        .on_conflict_do_nothing(index_elements=["source", "id"])
        .returning(e.c.seq)
    )
    wanting = (
        select(
            st.c.subscription,
            bindparam("seq", type_=d.c.event_seq.type),
            literal(0),
            # Ready at once, whatever clock the consumers use: a fresh delivery's
            # visibility never depends on when or where it was published.
            literal(0.0),
        )
        .where(or_(st.c.type == bindparam("type"), st.c.type == _ALL_TYPES))
        .distinct()
    )
    fan_out = d.insert().from_select(
        ["subscription", "event_seq", "attempts", "visible_at"], wanting
    )
    ack = delete(d).where(
        d.c.subscription == bindparam("subscription"),
        d.c.event_seq == bindparam("seq"),
        d.c.lease_token == bindparam("token"),
    )
    # SKIP LOCKED lets PostgreSQL claimers take disjoint rows without waiting; SQLite
    # ignores it: its IMMEDIATE transaction already serializes claimers.
    ready = (
        select(d.c.event_seq, d.c.attempts, d.c.lease_token)
        .where(d.c.subscription == bindparam("subscription"), d.c.visible_at <= bindparam("now"))
        .order_by(d.c.event_seq)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    lease = (
        update(d)
        .where(
            d.c.subscription == bindparam("b_subscription"),
            d.c.event_seq.in_(bindparam("seqs", expanding=True)),
        )
        .values(
            lease_token=bindparam("b_token"),
            visible_at=bindparam("until"),
            attempts=d.c.attempts + 1,
        )
        .returning(d.c.event_seq, d.c.attempts)
    )
    bodies = select(e.c.seq, e.c.body).where(e.c.seq.in_(bindparam("seqs", expanding=True)))
    return _Statements(
        insert_event=insert_event,
        fan_out=fan_out,
        ack=ack,
        ready=ready,
        lease=lease,
        bodies=bodies,
    )


def publish_in(conn: Connection, event: Event, *, now: float | None = None) -> bool:
    """Write `event` to the outbox inside the caller's open transaction on `conn`.

    The event commits (and is delivered) only if the caller's transaction commits. Returns
    False when an event with the same (source, id) is already stored: it is not delivered
    again. The outbox tables must exist (`SqlOutbox(url=...)` creates them). The event
    carries the caller's trace context (`bridge.bus.envelope.traced`).
    """
    return _insert(conn, traced(event), now=now)


def _insert(conn: Connection, event: Event, *, now: float | None) -> bool:
    """`publish_in` without taking the current trace context: the group commit writes
    events of several publishers, each traced in its own context already."""
    stmts = _statements(conn.dialect.name)
    seq = conn.execute(
        stmts.insert_event,
        {
            "source": event.source,
            "id": event.id,
            "type": event.type,
            "body": _body(event, engine_codec(conn.engine)),
            "published_at": time.time() if now is None else now,
        },
    ).scalar()
    if seq is None:
        return False
    conn.execute(stmts.fan_out, {"seq": seq, "type": event.type})
    return True


def create_tables(conn: Connection) -> None:
    """Create the outbox and inbox tables (if missing) inside the caller's transaction, e.g.
    in a journal database whose writes publish with `publish_in`."""
    s.ensure_schema(conn)


def _token(claim: str, seq: int) -> str:
    # One lease token per claim is stored on its rows; the delivery's token also names its
    # row, so an ack needs no lookup. Opaque to callers.
    return f"{claim}.{seq}"


def _parse_token(delivery: Delivery) -> tuple[str, int]:
    claim, _, seq = delivery.token.rpartition(".")
    if not claim or not seq.isdigit():
        raise BridgeError(
            f"delivery of event {delivery.event.id!r} has lease token {delivery.token!r}, "
            "which the SQL outbox did not issue; ack or nack it on the transport it came from"
        )
    return claim, int(seq)


class SqlOutbox:
    """The SQL outbox transport (see the module docstring).

    `clock` (epoch seconds) decides lease expiry and retry delays; tests inject one to
    expire leases without sleeping.
    """

    def __init__(
        self,
        *,
        url: str,
        max_deliveries: int = 5,
        durability: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_ms: int = 5000,
        clock: Callable[[], float] = time.time,
        codec: Keyring | None = None,
    ) -> None:
        """`codec`: the payload keyring (`bridge.encryption`) event bodies are sealed and
        opened with; by default the one of a journal opened on `url` in this process."""
        if max_deliveries < 1:
            raise BridgeError(f"SqlOutbox: max_deliveries must be at least 1, got {max_deliveries}")
        self.url = url
        self.max_deliveries = max_deliveries
        self.clock = clock
        self._where = f"bus outbox at {url}"
        self.engine = create_bus_engine(url, durability=durability, busy_timeout_ms=busy_timeout_ms)
        attach(self.engine, codec or codec_for_url(url))
        try:
            with translate(self._where, "creating the tables"), self.engine.begin() as conn:
                s.ensure_schema(conn)
        except BaseException:
            self.engine.dispose()
            raise
        self._own_lock = asyncio.Lock()  # for PostgreSQL
        self._pending: list[tuple[Event, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- transactions -------------------------------------------------------------------
    def _lock(self) -> asyncio.Lock:
        return write_lock(self.engine) or self._own_lock

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A write transaction on the outbox's database, serialized with this process's
        other writes to it (see the module docstring). Commits when the block ends, rolls
        back if it raises."""
        async with self._lock():
            with (
                translate(self._where, "a transaction"),
                self.engine.connect() as conn,
                conn.begin(),
            ):
                yield conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite a deferred one, which never waits on a writer
        under WAL)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(bridge_readonly=True)
            with conn.begin():
                yield conn

    def inbox(self) -> SqlInbox:
        """An inbox in the outbox's own database: a consumer's inbox row, its handler's
        writes and the ack then commit in one transaction."""
        from bridge.bus.inbox import SqlInbox

        return SqlInbox(outbox=self)

    # -- Transport ------------------------------------------------------------------------
    async def subscribe(self, subscription: str, types: Sequence[str] | None = None) -> None:
        """Create the subscription, or replace its types; it receives events published
        from now on."""
        if not subscription:
            raise BridgeError("SqlOutbox.subscribe: the subscription name must not be empty")
        wanted = sorted(set(types)) if types is not None else [_ALL_TYPES]
        if not wanted:
            raise BridgeError(
                f"subscription {subscription!r}: an empty list of types would receive "
                "nothing; pass None for every type"
            )
        st = s.subscription_types
        async with self.transaction() as conn:
            current = set(
                conn.execute(select(st.c.type).where(st.c.subscription == subscription)).scalars()
            )
            if current == set(wanted):
                return
            conn.execute(delete(st).where(st.c.subscription == subscription))
            conn.execute(st.insert(), [{"subscription": subscription, "type": t} for t in wanted])

    async def publish(self, event: Event) -> None:
        """Publish durably (returns once committed). Publishes that arrive together share
        one commit (group commit)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((traced(event), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await fut

    async def publish_many(self, events: Sequence[Event]) -> int:
        """Publish several events in one transaction; returns how many were new."""
        async with self.transaction() as conn:
            now = self.clock()
            return sum(publish_in(conn, e, now=now) for e in events)

    async def _flush(self) -> None:
        while self._pending:
            async with self._lock():
                batch, self._pending = self._pending, []
                try:
                    with (
                        translate(self._where, "publishing"),
                        self.engine.connect() as conn,
                        conn.begin(),
                    ):
                        now = self.clock()
                        for event, _ in batch:
                            _insert(conn, event, now=now)
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                except BaseException:
                    for _, fut in batch:
                        fut.cancel()
                    raise
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def claim(
        self, subscription: str, *, max_messages: int = 10, lease_seconds: float = 30.0
    ) -> list[Delivery]:
        token = uuid.uuid4().hex
        async with self.transaction() as conn:
            stmts = _statements(conn.dialect.name)
            now = self.clock()
            # Two statements on purpose: PostgreSQL may re-run a LIMIT subquery inside
            # `UPDATE ... WHERE x IN (...)` once per row and claim more than asked.
            ready = conn.execute(
                stmts.ready, {"subscription": subscription, "now": now, "limit": max_messages}
            ).all()
            chosen = []
            for seq, attempts, held_by in ready:
                if held_by is not None and attempts >= self.max_deliveries:
                    # Its lease ran out on every delivery: a consumer that dies on a
                    # message must not be handed it forever.
                    self._bury(
                        conn,
                        subscription,
                        seq,
                        attempts,
                        "the lease expired on every delivery",
                        now,
                    )
                else:
                    chosen.append(seq)
            if not chosen:
                return []
            claimed = conn.execute(
                stmts.lease,
                {
                    "b_subscription": subscription,
                    "seqs": chosen,
                    "b_token": token,
                    "until": now + lease_seconds,
                },
            ).all()
            attempts_of = dict(claimed)
            bodies = conn.execute(stmts.bodies, {"seqs": list(attempts_of)}).all()
        return [
            Delivery(
                event=_event(self.engine, body),
                subscription=subscription,
                token=_token(token, seq),
                attempt=attempts_of[seq],
            )
            for seq, body in sorted(bodies)
        ]

    def _bury(
        self,
        conn: Connection,
        subscription: str,
        seq: int,
        attempts: int,
        error: str | None,
        now: float,
    ) -> None:
        d = s.deliveries
        if self._handled_by_subscriber(conn, subscription, seq):
            # The subscription's consumer (named after it, as `Consumer` is by default)
            # committed the work and then lost its ack: done, not dead.
            conn.execute(delete(d).where(d.c.subscription == subscription, d.c.event_seq == seq))
            return
        conn.execute(
            insert_for(conn, s.dead_letters)
            .values(
                subscription=subscription,
                event_seq=seq,
                attempts=attempts,
                error=error,
                dead_at=now,
            )
            .on_conflict_do_nothing(index_elements=["subscription", "event_seq"])
        )
        conn.execute(delete(d).where(d.c.subscription == subscription, d.c.event_seq == seq))

    def _handled_by_subscriber(self, conn: Connection, subscription: str, seq: int) -> bool:
        e, ib = s.events, s.inbox
        found = conn.execute(
            select(literal(1))
            .select_from(e.join(ib, (ib.c.source == e.c.source) & (ib.c.id == e.c.id)))
            .where(e.c.seq == seq, ib.c.consumer == subscription)
        ).first()
        return found is not None

    def _lost(self, delivery: Delivery) -> LeaseLostError:
        e = delivery.event
        return LeaseLostError(
            f"subscription {delivery.subscription!r}: the lease on event {e.source}/{e.id} "
            f"(delivery {delivery.attempt}) no longer holds: it expired and the event was "
            "claimed again (or was already acked). Drop this delivery; its new holder "
            "handles it"
        )

    def ack_in(self, conn: Connection, delivery: Delivery) -> None:
        """Ack inside the caller's transaction on this outbox's database, so the ack
        commits with the handler's writes; raises LeaseLostError (roll back) if the
        lease was lost."""
        claim, seq = _parse_token(delivery)
        gone = conn.execute(
            _statements(conn.dialect.name).ack,
            {"subscription": delivery.subscription, "seq": seq, "token": claim},
        ).rowcount
        if gone != 1:
            raise self._lost(delivery)

    async def ack(self, delivery: Delivery) -> None:
        """Ack after the handler committed; raises LeaseLostError if the lease was lost,
        unless the event had since been dead-lettered, whose letter this ack withdraws."""
        async with self.transaction() as conn:
            try:
                self.ack_in(conn, delivery)
            except LeaseLostError:
                if not self._withdraw_dead_letter(conn, delivery):
                    raise

    def _withdraw_dead_letter(self, conn: Connection, delivery: Delivery) -> bool:
        _claim, seq = _parse_token(delivery)
        dl = s.dead_letters
        withdrawn = conn.execute(
            delete(dl).where(dl.c.subscription == delivery.subscription, dl.c.event_seq == seq)
        ).rowcount
        return withdrawn == 1

    async def nack(
        self, delivery: Delivery, *, delay: float = 0.0, error: str | None = None
    ) -> None:
        d = s.deliveries
        claim, seq = _parse_token(delivery)
        async with self.transaction() as conn:
            now = self.clock()
            row = conn.execute(
                select(d.c.event_seq, d.c.attempts)
                .where(
                    d.c.subscription == delivery.subscription,
                    d.c.event_seq == seq,
                    d.c.lease_token == claim,
                )
                .with_for_update()
            ).first()
            if row is None:
                raise self._lost(delivery)
            seq, attempts = row
            if attempts >= self.max_deliveries:
                self._bury(conn, delivery.subscription, seq, attempts, error, now)
                return
            conn.execute(
                update(d)
                .where(d.c.subscription == delivery.subscription, d.c.event_seq == seq)
                .values(lease_token=None, visible_at=now + max(0.0, delay), last_error=error)
            )

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        self.engine.dispose()

    # -- inspection -------------------------------------------------------------------------
    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        """The dead letters (of one subscription, or all), oldest first."""
        dl, e = s.dead_letters, s.events
        stmt = (
            select(dl.c.subscription, e.c.body, dl.c.attempts, dl.c.error, dl.c.dead_at)
            .join(e, e.c.seq == dl.c.event_seq)
            .order_by(dl.c.dead_at, dl.c.event_seq)
        )
        if subscription is not None:
            stmt = stmt.where(dl.c.subscription == subscription)
        with translate(self._where, "reading dead letters"), self._reader() as conn:
            rows = conn.execute(stmt).all()
        return [
            DeadLetter(
                subscription=sub,
                event=_event(self.engine, body),
                attempts=attempts,
                error=error,
                dead_at=dead_at,
            )
            for sub, body, attempts, error, dead_at in rows
        ]

    async def replay_dead_letters(
        self, subscription: str, event_ids: Sequence[str] | None = None
    ) -> int:
        """Deliver dead letters of `subscription` again (those of `event_ids`, or all), as
        fresh deliveries with a new count of attempts; how many. A letter moves back in the
        transaction that deletes it, so it is never both dead and pending, nor lost."""
        return await self._take_dead_letters(subscription, event_ids, replay=True)

    async def drop_dead_letters(
        self, subscription: str, event_ids: Sequence[str] | None = None
    ) -> int:
        """Delete dead letters of `subscription` (those of `event_ids`, or all) for good; how
        many. The events stay in the outbox for other subscriptions."""
        return await self._take_dead_letters(subscription, event_ids, replay=False)

    async def _take_dead_letters(
        self, subscription: str, event_ids: Sequence[str] | None, *, replay: bool
    ) -> int:
        dl, e = s.dead_letters, s.events
        chosen = select(dl.c.event_seq).where(dl.c.subscription == subscription)
        if event_ids is not None:
            chosen = chosen.join(e, e.c.seq == dl.c.event_seq).where(e.c.id.in_(list(event_ids)))
        async with self.transaction() as conn:
            seqs = [row[0] for row in conn.execute(chosen)]
            if not seqs:
                return 0
            if replay:
                now = self.clock()
                conn.execute(
                    insert_for(conn, s.deliveries),
                    [
                        {
                            "subscription": subscription,
                            "event_seq": seq,
                            "attempts": 0,
                            "visible_at": now,
                            "lease_token": None,
                            "last_error": None,
                        }
                        for seq in seqs
                    ],
                )
            conn.execute(
                delete(dl).where(dl.c.subscription == subscription, dl.c.event_seq.in_(seqs))
            )
        return len(seqs)

    async def backlog(self, subscription: str) -> int:
        """Deliveries of `subscription` not yet acked or dead (ready, leased or delayed)."""
        d = s.deliveries
        with translate(self._where, "counting deliveries"), self._reader() as conn:
            n = conn.execute(
                select(func.count()).where(d.c.subscription == subscription)
            ).scalar_one()
        return int(n)
