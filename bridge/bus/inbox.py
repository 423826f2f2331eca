"""Idempotent consumers: an inbox keyed (consumer, source, id), written in the handler's
transaction.

Delivery is at-least-once, so a consumer sees some events twice. The inbox row commits in
the same transaction as the handler's own writes: either both are there (a redelivery finds
the row and is acked and dropped) or neither is (the redelivery does the work). Handlers
receive the transaction's handle (`InboxTransaction.connection`): a SQLAlchemy
`Connection` for `SqlInbox`, the `MemoryTransaction` itself for `MemoryInbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import Connection, bindparam, select

from bridge.bus import _outbox_schema as s
from bridge.bus._sql import create_bus_engine, dialect_insert, translate
from bridge.bus.envelope import Event
from bridge.bus.transport import Delivery
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.bus.outbox import SqlOutbox

__all__ = ["Inbox", "InboxTransaction", "MemoryInbox", "MemoryTransaction", "SqlInbox"]


class InboxTransaction(Protocol):
    """One transaction of an inbox, spanning a batch of deliveries."""

    @property
    def connection(self) -> Any:
        """What the handler gets to write with, in this transaction."""

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """A nested scope: an exception inside undoes only that scope's writes."""

    def record(self, consumer: str, event: Event) -> bool:
        """Record `event` as handled by `consumer`; False if it already was."""

    def ack_in(self, delivery: Delivery) -> bool:
        """Ack inside this transaction when the inbox shares the transport's database
        (raises LeaseLostError if the lease is lost); False when the ack must follow the
        commit instead."""


class Inbox(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[InboxTransaction]:
        """A transaction that commits when the block ends and rolls back if it raises."""

    async def seen(self, consumer: str, event: Event) -> bool:
        """Whether `consumer` has handled `event` (committed)."""


# -- in memory ----------------------------------------------------------------------------


class MemoryTransaction:
    """Staged inbox rows and effects, applied together on commit. Handlers stage their
    effects with `on_commit(fn)`, so a crash mid-handler leaves nothing behind."""

    def __init__(self, inbox: MemoryInbox) -> None:
        self._inbox = inbox
        self._keys: list[tuple[str, str, str]] = []
        self._effects: list[Callable[[], None]] = []

    @property
    def connection(self) -> MemoryTransaction:
        return self

    def on_commit(self, effect: Callable[[], None]) -> None:
        self._effects.append(effect)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        keys, effects = len(self._keys), len(self._effects)
        try:
            yield
        except BaseException:
            del self._keys[keys:], self._effects[effects:]
            raise

    def record(self, consumer: str, event: Event) -> bool:
        key = (consumer, *event.key)
        if key in self._inbox.keys or key in self._keys:
            return False
        self._keys.append(key)
        return True

    def ack_in(self, delivery: Delivery) -> bool:
        return False

    def _commit(self) -> None:
        self._inbox.keys.update(self._keys)
        for effect in self._effects:
            effect()


class MemoryInbox:
    """An inbox in memory, for tests with `MemoryTransport`."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, str, str]] = set()
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        async with self._lock:
            tx = MemoryTransaction(self)
            yield tx
            tx._commit()

    async def seen(self, consumer: str, event: Event) -> bool:
        return (consumer, *event.key) in self.keys


# -- SQL ------------------------------------------------------------------------------------


@functools.cache
def _record(dialect: str) -> Any:
    """Built once per dialect (building a Core statement costs more than running it)."""
    i = s.inbox
    return (
        dialect_insert(dialect, i)
        .values(
            consumer=bindparam("consumer"),
            source=bindparam("source"),
            id=bindparam("id"),
            handled_at=bindparam("handled_at"),
        )
        .on_conflict_do_nothing(index_elements=["consumer", "source", "id"])
        # RETURNING, not rowcount: psycopg reports no rowcount for this INSERT.
        .returning(i.c.handled_at)
    )


class _SqlTransaction:
    def __init__(self, conn: Connection, outbox: SqlOutbox | None) -> None:
        self._conn = conn
        self._outbox = outbox

    @property
    def connection(self) -> Connection:
        return self._conn

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        # Plain SQL rather than begin_nested(): a third of the per-event cost otherwise.
        conn = self._conn
        conn.exec_driver_sql("SAVEPOINT bridge_bus_event")
        try:
            yield
        except BaseException:
            if not conn.invalidated:
                conn.exec_driver_sql("ROLLBACK TO SAVEPOINT bridge_bus_event")
                conn.exec_driver_sql("RELEASE SAVEPOINT bridge_bus_event")
            raise
        conn.exec_driver_sql("RELEASE SAVEPOINT bridge_bus_event")

    def record(self, consumer: str, event: Event) -> bool:
        params = {
            "consumer": consumer,
            "source": event.source,
            "id": event.id,
            "handled_at": time.time(),
        }
        return self._conn.execute(_record(self._conn.dialect.name), params).first() is not None

    def ack_in(self, delivery: Delivery) -> bool:
        if self._outbox is None:
            return False
        self._outbox.ack_in(self._conn, delivery)
        return True


class SqlInbox:
    """The inbox table `bridge_bus_inbox` in a SQL database.

    `SqlInbox(outbox=o)` (or `o.inbox()`) uses the outbox's own database, so the inbox row,
    the handler's writes and the ack commit in one transaction. `SqlInbox(url=...)` is an
    inbox of its own, for other transports (the ack then follows the commit).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        outbox: SqlOutbox | None = None,
        durability: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        if (url is None) == (outbox is None):
            raise BridgeError("SqlInbox: pass exactly one of url= or outbox=")
        self.outbox = outbox
        if outbox is not None:
            self.engine = outbox.engine
            self._where = outbox._where
        else:
            assert url is not None
            self._where = f"bus inbox at {url}"
            self.engine = create_bus_engine(url, durability=durability)
            with translate(self._where, "creating the tables"), self.engine.begin() as conn:
                s.ensure_schema(conn)
            self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqlTransaction]:
        if self.outbox is not None:
            async with self.outbox.transaction() as conn:
                yield _SqlTransaction(conn, self.outbox)
            return
        from bridge.bus.outbox import write_lock  # shared with outboxes on the same file

        async with write_lock(self.engine) or self._lock:
            with (
                translate(self._where, "a transaction"),
                self.engine.connect() as conn,
                conn.begin(),
            ):
                yield _SqlTransaction(conn, None)

    async def seen(self, consumer: str, event: Event) -> bool:
        i = s.inbox
        with translate(self._where, "reading the inbox"), self.engine.connect() as conn:
            conn = conn.execution_options(bridge_readonly=True)
            with conn.begin():
                row = conn.execute(
                    select(i.c.handled_at).where(
                        i.c.consumer == consumer, i.c.source == event.source, i.c.id == event.id
                    )
                ).first()
        return row is not None

    async def close(self) -> None:
        if self.outbox is None:
            self.engine.dispose()
