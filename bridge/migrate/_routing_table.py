"""The routing table: which engine owns each workflow id, and whether that run is still open.

A route is written *before* the run is started on its engine, with insert-or-ignore, so two
routers racing to start one id agree on its engine (the first row wins), and a crash between
the two writes leaves a route whose retried start goes to the same engine. A route is never
moved: that is what lets in-flight runs drain where they started.

A route whose start failed routes nothing, and counted as an open run it would keep its
engine "Draining" forever: the router removes it when its engine does not have the run
(`forget`), at once after a failed start and in `refresh()` for routes left by a crash.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    case,
    delete,
    func,
    select,
    text,
    update,
)

from bridge.bus._sql import create_bus_engine, insert_for, translate
from bridge.config import RouterSettings

__all__ = ["OPEN", "Route", "RoutingTable"]

#: The status of a route whose run has not been seen finished yet.
OPEN = "OPEN"

metadata = MetaData()

routes = Table(
    "bridge_routes",
    metadata,
    Column("workflow_id", String(255), primary_key=True),
    Column("workflow", String(255), nullable=False),
    Column("engine", String(255), nullable=False),
    # OPEN, or the run's final status (COMPLETED, FAILED, CANCELLED) once seen.
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("closed_at", Float),
    # `migrate status` counts open runs per (workflow, engine).
    Index("ix_bridge_routes_open", "workflow", "engine", "status"),
)

# Any constant works; it only has to be the same in every durable-bridge process.
_PG_SCHEMA_LOCK_KEY = 0x62727465


@dataclass(frozen=True)
class Route:
    workflow_id: str
    workflow: str
    engine: str
    status: str
    created_at: float = 0.0
    #: True when this claim wrote the route (the first start of the id), False when it existed.
    claimed_now: bool = False

    @property
    def is_open(self) -> bool:
        return self.status == OPEN


class RoutingTable:
    """The routes on SQLite (one host) or PostgreSQL (many hosts), via SQLAlchemy Core."""

    def __init__(self, settings: RouterSettings) -> None:
        self.url = settings.url
        self._where = f"routing table {settings.url}"
        self._engine: Engine = create_bus_engine(
            settings.url, busy_timeout_ms=settings.busy_timeout_ms
        )
        with translate(self._where, "creating its table"), self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK_KEY})
            metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        self._engine.dispose()

    def claim(self, workflow_id: str, workflow: str, engine: str) -> Route:
        """Record `engine` as the owner of `workflow_id` unless a route exists; the route
        that holds afterwards (an existing one wins, so a run never changes engine)."""
        with translate(self._where, f"routing {workflow_id!r}"), self._engine.begin() as conn:
            stmt = insert_for(conn, routes).values(
                workflow_id=workflow_id,
                workflow=workflow,
                engine=engine,
                status=OPEN,
                created_at=time.time(),
            )
            inserted = conn.execute(stmt.on_conflict_do_nothing(index_elements=["workflow_id"]))
            route = self._get(conn, workflow_id)
            assert route is not None  # inserted now or before, in this transaction's view
            return dataclasses.replace(route, claimed_now=inserted.rowcount == 1)

    def get(self, workflow_id: str) -> Route | None:
        with translate(self._where, f"looking up {workflow_id!r}"), self._engine.begin() as conn:
            return self._get(conn, workflow_id)

    def close_route(self, workflow_id: str, status: str) -> None:
        """Mark the run finished with `status` (idempotent; a closed route stays closed)."""
        with translate(self._where, f"closing {workflow_id!r}"), self._engine.begin() as conn:
            conn.execute(
                update(routes)
                .where(routes.c.workflow_id == workflow_id, routes.c.status == OPEN)
                .values(status=status, closed_at=time.time())
            )

    def forget(self, workflow_id: str) -> bool:
        """Delete the open route of `workflow_id`, whose engine does not have the run (its
        start failed, or a router died before starting it); True if one was deleted. A
        closed route is a fact about a finished run and is kept."""
        with translate(self._where, f"forgetting {workflow_id!r}"), self._engine.begin() as conn:
            deleted = conn.execute(
                delete(routes).where(routes.c.workflow_id == workflow_id, routes.c.status == OPEN)
            )
            return deleted.rowcount == 1

    def list_routes(self, *, only_open: bool = False, limit: int = 100) -> list[Route]:
        """Routes, newest first (`migrate routes`)."""
        query = select(routes).order_by(routes.c.created_at.desc()).limit(limit)
        if only_open:
            query = query.where(routes.c.status == OPEN)
        with translate(self._where, "listing routes"), self._engine.begin() as conn:
            return [_route(row) for row in conn.execute(query)]

    def open_routes(self, *, workflows: Iterable[str] | None = None) -> list[Route]:
        """Every route whose run has not been seen finished, oldest first."""
        query = select(routes).where(routes.c.status == OPEN).order_by(routes.c.created_at)
        if workflows is not None:
            query = query.where(routes.c.workflow.in_(list(workflows)))
        with translate(self._where, "listing open routes"), self._engine.begin() as conn:
            return [_route(row) for row in conn.execute(query)]

    def counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(workflow, engine) -> (open runs, all runs) for every pair with a route."""
        is_open = func.sum(case((routes.c.status == OPEN, 1), else_=0))
        query = select(routes.c.workflow, routes.c.engine, is_open, func.count()).group_by(
            routes.c.workflow, routes.c.engine
        )
        with translate(self._where, "counting routes"), self._engine.begin() as conn:
            return {
                (workflow, engine): (int(n_open or 0), int(n_all))
                for workflow, engine, n_open, n_all in conn.execute(query)
            }

    @staticmethod
    def _get(conn: Connection, workflow_id: str) -> Route | None:
        row = conn.execute(select(routes).where(routes.c.workflow_id == workflow_id)).first()
        return None if row is None else _route(row)


def _route(row: object) -> Route:
    mapping = row._mapping  # type: ignore[attr-defined]
    return Route(
        workflow_id=mapping["workflow_id"],
        workflow=mapping["workflow"],
        engine=mapping["engine"],
        status=mapping["status"],
        created_at=mapping["created_at"],
    )
