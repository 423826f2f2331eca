"""The journal's tables, made once for every journal-keeping backend under its own names.

One row per run, one row per durable operation (the journal, keyed by run and index, as in
DBOS), one row per pending timer and one per delivered signal, plus a meta table holding the
schema version. Times are epoch seconds (floats) so SQLite and PostgreSQL store them alike;
JSON is stored as text; payload columns are `SealedText` (TEXT on disk), which encrypts
them when `[encryption]` is configured (`bridge.encryption`).

Features added after the first release (schedules, search attributes) keep their rows in
*feature tables*: new tables only, never a change to the journal's own, created when absent
each time a journal opens for writing (`JournalSchema.features`). An older journal gains
them without a version step, and a database an older durable-bridge wrote stays readable by
it. A change to a feature table after it shipped needs a migration like any other.

Each backend calls `journal_schema` with its own names (the sql backend `bridge_` and
`workflows`, the langgraph backend `bridge_lg_` and `runs`), so both journals can share one
PostgreSQL database. The names on disk must never change: databases written by earlier
releases exist (tests/journal/test_schema_snapshot.py pins them). A change to a table is a
new version with a migration in the backend's `MIGRATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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

from bridge.encryption import SealedText

#: One schema step, run inside the transaction that opens an older database.
Migration = Callable[[Connection], None]


@dataclass
class JournalSchema:
    """A backend's journal tables, its schema version and the migrations up to it.

    `migrations[n]` takes a database from version n to n+1; they run in order, in one
    transaction, when a database with an older version is opened.
    """

    metadata: MetaData
    meta: Table
    runs: Table
    steps: Table
    timers: Table
    signals: Table
    #: Feature tables (schedules, search attributes), created when absent; see the module
    #: docstring.
    features: MetaData = field(default_factory=MetaData)
    version: int = 1
    migrations: dict[int, Migration] = field(default_factory=dict)

    @property
    def schedules(self) -> Table:
        return self.features.tables[f"{self.prefix}schedules"]

    @property
    def attributes(self) -> Table:
        return self.features.tables[f"{self.prefix}attributes"]

    @property
    def permits(self) -> Table:
        return self.features.tables[f"{self.prefix}permits"]

    @property
    def rate_buckets(self) -> Table:
        return self.features.tables[f"{self.prefix}rate_buckets"]

    @property
    def prefix(self) -> str:
        return self.meta.name.removesuffix("meta")


def journal_schema(
    prefix: str, runs: str, *, version: int, migrations: dict[int, Migration]
) -> JournalSchema:
    """The tables `{prefix}meta`, `{prefix}{runs}`, `{prefix}steps`, `{prefix}timers` and
    `{prefix}signals`, with their keys and indexes named after them."""
    metadata = MetaData()
    runs_name = f"{prefix}{runs}"
    return JournalSchema(
        metadata=metadata,
        features=_feature_tables(prefix),
        meta=Table(
            f"{prefix}meta",
            metadata,
            Column("key", String(64), primary_key=True),
            Column("value", Text, nullable=False),
        ),
        runs=Table(
            runs_name,
            metadata,
            Column("id", String(255), primary_key=True),
            Column("name", String(255), nullable=False),
            Column("status", String(16), nullable=False),
            Column("input", SealedText, nullable=False),
            Column("result", SealedText),
            Column("error", SealedText),
            Column("created_at", Float, nullable=False),
            Column("updated_at", Float, nullable=False),
            Column("lease_owner", String(255)),
            Column("lease_expires_at", Float),
            Column("executions", Integer, nullable=False, default=0),
            Column("cancel_requested", Boolean, nullable=False, default=False),
            Column("waiting_for", String(255)),
            Column("blocked", Boolean, nullable=False, default=False),
            Index(f"ix_{runs_name}_status_name", "status", "name"),
        ),
        steps=Table(
            f"{prefix}steps",
            metadata,
            Column("workflow_id", String(255), nullable=False),
            Column("idx", Integer, nullable=False),
            Column("kind", String(16), nullable=False),
            Column("name", String(255), nullable=False),
            Column("status", String(16), nullable=False),
            Column("digest", String(32), nullable=False),
            Column("args", SealedText),
            Column("output", SealedText),
            Column("error", SealedText),
            Column("attempt", Integer, nullable=False),
            Column("attempts", SealedText),
            Column("started_at", Float, nullable=False),
            Column("finished_at", Float),
            Column("fire_at", Float),
            PrimaryKeyConstraint("workflow_id", "idx", name=f"pk_{prefix}steps"),
        ),
        timers=Table(
            f"{prefix}timers",
            metadata,
            Column("workflow_id", String(255), nullable=False),
            Column("idx", Integer, nullable=False),
            Column("fire_at", Float, nullable=False),
            PrimaryKeyConstraint("workflow_id", "idx", name=f"pk_{prefix}timers"),
            Index(f"ix_{prefix}timers_fire_at", "fire_at"),
        ),
        signals=Table(
            f"{prefix}signals",
            metadata,
            Column("seq", Integer, primary_key=True, autoincrement=True),
            Column("workflow_id", String(255), nullable=False),
            Column("name", String(255), nullable=False),
            Column("payload", SealedText),
            Column("created_at", Float, nullable=False),
            Column("consumed_step", Integer),
            Index(f"ix_{prefix}signals_pending", "workflow_id", "name", "consumed_step"),
        ),
        version=version,
        migrations=migrations,
    )


def _feature_tables(prefix: str) -> MetaData:
    """`{prefix}schedules` and `{prefix}attributes`, in a MetaData of their own."""
    features = MetaData()
    schedules = f"{prefix}schedules"
    Table(
        schedules,
        features,
        Column("id", String(255), primary_key=True),
        Column("workflow", String(255), nullable=False),
        # What the schedule starts and when (JSON): cron, arguments, overlap policy...
        Column("spec", SealedText, nullable=False),
        # What the scheduler keeps between firings (JSON): last firing, buffered, runs.
        Column("state", SealedText),
        Column("paused", Boolean, nullable=False, default=False),
        Column("next_fire_at", Float),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Index(f"ix_{schedules}_next_fire_at", "next_fire_at"),
    )
    attributes = f"{prefix}attributes"
    Table(
        attributes,
        features,
        Column("workflow_id", String(255), nullable=False),
        Column("key", String(255), nullable=False),
        # 0 for a value; a keyword list has one row per item (0, 1, ...), so `tags = 'a'`
        # finds a list holding 'a' through the index (bridge/journal/_attributes.py).
        Column("position", Integer, nullable=False),
        Column("kind", String(16), nullable=False),
        # The typed value as JSON (the whole list on row 0), plus the column a query
        # compares: `text` for keywords, text and list items, `number` for ints, floats,
        # bools and datetimes (epoch seconds).
        Column("value", Text, nullable=False),
        Column("text", String(255)),
        Column("number", Float),
        PrimaryKeyConstraint("workflow_id", "key", "position", name=f"pk_{attributes}"),
        Index(f"ix_{attributes}_key_text", "key", "text"),
        Index(f"ix_{attributes}_key_number", "key", "number"),
    )
    permits = f"{prefix}permits"
    Table(
        permits,
        features,
        # `<pool>:<key value>` (bridge.concurrency) and the step holding or queued for it.
        Column("key", String(255), nullable=False),
        Column("holder", String(255), nullable=False),
        Column("workflow_id", String(255), nullable=False),
        Column("max_held", Integer, nullable=False),
        Column("granted", Boolean, nullable=False, default=False),
        Column("queued_at", Float, nullable=False),
        PrimaryKeyConstraint("key", "holder", name=f"pk_{permits}"),
        Index(f"ix_{permits}_queue", "key", "granted", "queued_at"),
        Index(f"ix_{permits}_workflow_id", "workflow_id"),
    )
    Table(
        f"{prefix}rate_buckets",
        features,
        # A token bucket of `bridge.RateLimit` (bridge.concurrency.reserve).
        Column("key", String(255), primary_key=True),
        Column("tokens", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    return features
