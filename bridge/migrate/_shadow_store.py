"""The shadow store: a shadow run's recorded answers and, once compared, its outcome.

One row per shadow run. The answers (the primary's steps) are written before the candidate
run starts and never change, so a worker in any process reads them once; the outcome is
written when the comparison is done. It lives in the router's database by default
(`[router] url`), which every process taking part in a migration already shares.

With payload encryption (`bridge.encryption`) the answers and the diff (both hold the
primary's arguments and results) are `SealedText`, sealed with the keyring given to the
store or, by default, the one this process's settings configure (`process_codec`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)

from bridge import codec
from bridge.bus._sql import create_bus_engine, insert_for, translate
from bridge.encryption import Keyring, SealedText, attach, process_codec
from bridge.migrate.compare import Step

__all__ = ["RUNNING", "Plan", "ShadowRecord", "ShadowStore"]

#: The status of a shadow run that has not been compared yet.
RUNNING = "running"

metadata = MetaData()

shadow_runs = Table(
    "bridge_shadow_runs",
    metadata,
    Column("shadow_id", String(255), primary_key=True),
    Column("workflow_id", String(255), nullable=False),
    Column("workflow", String(255), nullable=False),
    Column("primary_engine", String(255), nullable=False),
    Column("candidate_engine", String(255), nullable=False),
    # JSON: the `ignore` paths (the answering worker needs them to match arguments).
    Column("ignore_paths", Text, nullable=False),
    # JSON: the primary's settled steps (`Step.to_dict()`), the answers.
    Column("steps", SealedText, nullable=False),
    # running, matched, mismatched or error.
    Column("status", String(16), nullable=False),
    Column("first_step", Integer),
    Column("diff", SealedText, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("ix_bridge_shadow_runs_workflow", "workflow", "created_at"),
)

# Any constant works; it only has to be the same in every durable-bridge process.
_PG_SCHEMA_LOCK_KEY = 0x62727368


@dataclass(frozen=True)
class Plan:
    """What answers a shadow run: the primary's settled steps by index and the ignore paths."""

    shadow_id: str
    workflow_id: str
    workflow: str
    ignore: tuple[str, ...]
    steps: dict[int, Step]


@dataclass(frozen=True)
class ShadowRecord:
    """A shadow run as stored: its plan's identity and (once compared) its outcome."""

    shadow_id: str
    workflow_id: str
    workflow: str
    primary_engine: str
    candidate_engine: str
    status: str
    first_step: int | None
    diff: str
    created_at: float
    finished_at: float | None


class ShadowStore:
    """Shadow runs on SQLite (one host) or PostgreSQL (many hosts), via SQLAlchemy Core."""

    def __init__(
        self, url: str, *, busy_timeout_ms: int = 5000, codec: Keyring | None = None
    ) -> None:
        self.url = url
        self._where = f"shadow store {url}"
        self._engine: Engine = create_bus_engine(url, busy_timeout_ms=busy_timeout_ms)
        attach(self._engine, codec if codec is not None else process_codec())
        with translate(self._where, "creating its table"), self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK_KEY})
            metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        self._engine.dispose()

    def begin(self, plan: Plan, *, primary_engine: str, candidate_engine: str) -> ShadowRecord:
        """Record `plan` unless the shadow run exists; the record that holds afterwards (an
        existing one wins, so a repeated call never changes the answers of a started run)."""
        values = {
            "shadow_id": plan.shadow_id,
            "workflow_id": plan.workflow_id,
            "workflow": plan.workflow,
            "primary_engine": primary_engine,
            "candidate_engine": candidate_engine,
            "ignore_paths": codec.dumps(list(plan.ignore)),
            "steps": codec.dumps([s.to_dict() for s in plan.steps.values()]),
            "status": RUNNING,
            "diff": "",
            "created_at": time.time(),
        }
        with translate(self._where, f"recording {plan.shadow_id!r}"), self._engine.begin() as c:
            stmt = insert_for(c, shadow_runs).values(**values)
            c.execute(stmt.on_conflict_do_nothing(index_elements=["shadow_id"]))
            row = c.execute(
                select(shadow_runs).where(shadow_runs.c.shadow_id == plan.shadow_id)
            ).first()
        return _record(row)

    def plan(self, shadow_id: str) -> Plan | None:
        """The answers of shadow run `shadow_id`, or None if this store has none."""
        query = select(
            shadow_runs.c.workflow_id,
            shadow_runs.c.workflow,
            shadow_runs.c.ignore_paths,
            shadow_runs.c.steps,
        ).where(shadow_runs.c.shadow_id == shadow_id)
        with translate(self._where, f"reading {shadow_id!r}"), self._engine.begin() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        # Rows of release 0.1 also list steps still open; a shadow run has no answer there.
        steps = [Step.from_dict(d) for d in codec.loads(row.steps) if d.get("status") != "open"]
        return Plan(
            shadow_id=shadow_id,
            workflow_id=row.workflow_id,
            workflow=row.workflow,
            ignore=tuple(codec.loads(row.ignore_paths)),
            steps={s.index: s for s in steps if s.index is not None},
        )

    def finish(self, shadow_id: str, *, status: str, first_step: int | None, diff: str) -> None:
        """Record the comparison's outcome (the first one recorded stays)."""
        with translate(self._where, f"finishing {shadow_id!r}"), self._engine.begin() as conn:
            conn.execute(
                update(shadow_runs)
                .where(shadow_runs.c.shadow_id == shadow_id, shadow_runs.c.status == RUNNING)
                .values(status=status, first_step=first_step, diff=diff, finished_at=time.time())
            )

    def get(self, shadow_id: str) -> ShadowRecord | None:
        query = select(shadow_runs).where(shadow_runs.c.shadow_id == shadow_id)
        with translate(self._where, f"reading {shadow_id!r}"), self._engine.begin() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row)

    def records(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ShadowRecord]:
        """Shadow runs, newest first."""
        query = select(shadow_runs).order_by(shadow_runs.c.created_at.desc()).limit(limit)
        if workflow is not None:
            query = query.where(shadow_runs.c.workflow == workflow)
        if status is not None:
            query = query.where(shadow_runs.c.status == status)
        with translate(self._where, "listing shadow runs"), self._engine.begin() as conn:
            return [_record(row) for row in conn.execute(query)]

    def counts(
        self, *, workflow: str | None = None, status: str | None = None
    ) -> dict[tuple[str, str], dict[str, int]]:
        """(workflow, candidate engine) -> outcome -> number of shadow runs, over the whole
        store (one GROUP BY: `bridge migrate status` and the report's headline must count
        every run, not the page of records shown)."""
        query = select(
            shadow_runs.c.workflow,
            shadow_runs.c.candidate_engine,
            shadow_runs.c.status,
            func.count(),
        ).group_by(shadow_runs.c.workflow, shadow_runs.c.candidate_engine, shadow_runs.c.status)
        if workflow is not None:
            query = query.where(shadow_runs.c.workflow == workflow)
        if status is not None:
            query = query.where(shadow_runs.c.status == status)
        found: dict[tuple[str, str], dict[str, int]] = {}
        with translate(self._where, "counting shadow runs"), self._engine.begin() as conn:
            for name, engine, outcome, n in conn.execute(query):
                found.setdefault((name, engine), {})[outcome] = int(n)
        return found


def _record(row: Any) -> ShadowRecord:
    m = row._mapping
    return ShadowRecord(
        shadow_id=m["shadow_id"],
        workflow_id=m["workflow_id"],
        workflow=m["workflow"],
        primary_engine=m["primary_engine"],
        candidate_engine=m["candidate_engine"],
        status=m["status"],
        first_step=m["first_step"],
        diff=m["diff"] or "",
        created_at=m["created_at"],
        finished_at=m["finished_at"],
    )
