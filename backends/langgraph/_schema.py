"""The bridge's own tables, kept in the same database as LangGraph's checkpoints.

LangGraph stores what it knows (the thread's checkpoints, each finished step as a task
write, interrupts and their answers). These tables hold what LangGraph has no place for:

- `bridge_lg_runs`: one row per run, so a run that crashed before LangGraph saved its first
  checkpoint is still known (langchain-ai/langgraph#8764), plus the status, lease and result
  that `describe`, `wait` and `list` read without loading a checkpoint.
- `bridge_lg_steps`: journal rows LangGraph has no task for: waits (timers and signals), patch
  markers, and the attempt history of a step that is still retrying. A finished step's row
  is not here: it is the step task's own write in LangGraph's `writes` table.
- `bridge_lg_timers`: durable timers (LangGraph has none); the worker resumes a thread when
  one is due.
- `bridge_lg_signals`: signals delivered by `client.signal`, kept until the waiting thread
  is resumed with them.

The names carry `lg_` so the sql backend's tables can live in the same PostgreSQL database.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
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
    "bridge_lg_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "bridge_lg_runs",
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
    Index("ix_bridge_lg_runs_status_name", "status", "name"),
)

steps = Table(
    "bridge_lg_steps",
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
    PrimaryKeyConstraint("workflow_id", "idx", name="pk_bridge_lg_steps"),
)

timers = Table(
    "bridge_lg_timers",
    metadata,
    Column("workflow_id", String(255), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("fire_at", Float, nullable=False),
    PrimaryKeyConstraint("workflow_id", "idx", name="pk_bridge_lg_timers"),
    Index("ix_bridge_lg_timers_fire_at", "fire_at"),
)

signals = Table(
    "bridge_lg_signals",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("payload", Text),
    Column("created_at", Float, nullable=False),
    Column("consumed_step", Integer),
    Index("ix_bridge_lg_signals_pending", "workflow_id", "name", "consumed_step"),
)
