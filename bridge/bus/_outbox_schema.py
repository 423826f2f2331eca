"""Tables of the SQL outbox and of the SQL inbox, on their own MetaData.

They can live in the journal's database (so an event commits with the journal change that
produced it) or in a database of their own. Times are epoch seconds (floats) so SQLite and
PostgreSQL store them alike; event bodies are CloudEvents structured-mode JSON text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# BigInteger for PostgreSQL's BIGSERIAL; SQLite needs plain INTEGER for its rowid alias.
_Seq = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "bridge_bus_events",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("source", String(255), nullable=False),
    Column("id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("published_at", Float, nullable=False),
    # The duplicate key: publishing (source, id) twice stores and delivers it once.
    UniqueConstraint("source", "id", name="uq_bridge_bus_events_key"),
)

# One row per (subscription, type it wants); type "*" means every type.
subscription_types = Table(
    "bridge_bus_subscription_types",
    metadata,
    Column("subscription", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    PrimaryKeyConstraint("subscription", "type", name="pk_bridge_bus_subscription_types"),
    Index("ix_bridge_bus_subscription_types_type", "type"),
)

# One row per event not yet acknowledged by a subscription. `visible_at` is when it may be
# claimed: now for a fresh event, the lease's end while claimed, now + delay after a nack
# (one column, as SQS's visibility timeout, so a single index serves the claim).
deliveries = Table(
    "bridge_bus_deliveries",
    metadata,
    Column("subscription", String(255), nullable=False),
    Column("event_seq", _Seq, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("visible_at", Float, nullable=False),
    Column("lease_token", String(64)),
    Column("last_error", Text),
    PrimaryKeyConstraint("subscription", "event_seq", name="pk_bridge_bus_deliveries"),
    Index("ix_bridge_bus_deliveries_ready", "subscription", "visible_at"),
)

dead_letters = Table(
    "bridge_bus_dead_letters",
    metadata,
    Column("subscription", String(255), nullable=False),
    Column("event_seq", _Seq, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text),
    Column("dead_at", Float, nullable=False),
    PrimaryKeyConstraint("subscription", "event_seq", name="pk_bridge_bus_dead_letters"),
)

inbox = Table(
    "bridge_bus_inbox",
    metadata,
    Column("consumer", String(255), nullable=False),
    Column("source", String(255), nullable=False),
    Column("id", String(255), nullable=False),
    Column("handled_at", Float, nullable=False),
    PrimaryKeyConstraint("consumer", "source", "id", name="pk_bridge_bus_inbox"),
)

# Any constant works; it only has to be the same in every durable-bridge process.
_PG_SCHEMA_LOCK_KEY = 0x62627573


def ensure_schema(conn: Connection) -> None:
    """Create the bus tables if missing, inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK_KEY})
    metadata.create_all(conn, checkfirst=True)
