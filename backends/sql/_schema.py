"""The journal's tables and their schema version.

One row per workflow run, one row per durable operation (the journal, keyed by run and
index, as in DBOS), one row per pending timer and one per delivered signal. Times are epoch
seconds (floats) so SQLite and PostgreSQL store them the same way. JSON is stored as text.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
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
)

SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table(
    "bridge_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

workflows = Table(
    "bridge_workflows",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", Text, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lease_owner", String(255)),
    Column("lease_expires_at", Float),
    Column("executions", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("waiting_for", String(255)),
    Column("blocked", Boolean, nullable=False, default=False),
    Index("ix_bridge_workflows_status_name", "status", "name"),
)

steps = Table(
    "bridge_steps",
    metadata,
    Column("workflow_id", String(255), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("args", Text),
    Column("output", Text),
    Column("error", Text),
    Column("attempt", Integer, nullable=False),
    Column("attempts", Text),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("fire_at", Float),
    PrimaryKeyConstraint("workflow_id", "idx", name="pk_bridge_steps"),
)

timers = Table(
    "bridge_timers",
    metadata,
    Column("workflow_id", String(255), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("fire_at", Float, nullable=False),
    PrimaryKeyConstraint("workflow_id", "idx", name="pk_bridge_timers"),
    Index("ix_bridge_timers_fire_at", "fire_at"),
)

signals = Table(
    "bridge_signals",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("payload", Text),
    Column("created_at", Float, nullable=False),
    Column("consumed_step", Integer),
    Index("ix_bridge_signals_pending", "workflow_id", "name", "consumed_step"),
)

# Migrations from version N to N+1, run in order inside one transaction when a database
# with an older schema is opened. Version 1 is the first schema, so there are none yet;
# tests register a fake one to prove the path works.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}
