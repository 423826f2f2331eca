"""The routing table: which engine owns each workflow id, and whether that run is still open.

A route is written *before* the run is started on its engine, with insert-or-ignore, so two
routers racing to start one id agree on its engine (the first row wins), and a crash between
the two writes leaves a route whose retried start goes to the same engine. A route is never
moved: that is what lets in-flight runs drain where they started.

A route whose start failed routes nothing, and counted as an open run it would keep its
engine "Draining" forever: the router removes it when its engine does not have the run
(`forget`), at once after a failed start and in `refresh()` for routes left by a crash. The
removal is counted per (workflow, engine) in `bridge_failed_starts`, so `bridge migrate
status` still shows that starts failed after their routes are gone.

`checked_at` records when `refresh()` last asked the engine about an open route, so a
bounded refresh (`bridge migrate status --refresh`) asks about the routes checked longest
ago first and a series of refreshes covers every open route instead of the oldest ones again.
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
    Integer,
    MetaData,
    String,
    Table,
    case,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError, ProgrammingError

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
    # When refresh() last asked the owning engine about this open route (None: never).
    Column("checked_at", Float),
    # `migrate status` counts open runs per (workflow, engine).
    Index("ix_bridge_routes_open", "workflow", "engine", "status"),
)

start_failures = Table(
    "bridge_failed_starts",
    metadata,
    Column("workflow", String(255), primary_key=True),
    Column("engine", String(255), primary_key=True),
    Column("count", Integer, nullable=False),
    # The last removed route: what an operator looks up first.
    Column("last_workflow_id", String(255), nullable=False),
    Column("last_at", Float, nullable=False),
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
    #: When the run was seen finished (None while open): `bridge ui` charts runs over time.
    closed_at: float | None = None
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
            _add_checked_at(conn)

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
            route = self._get(conn, workflow_id)
            deleted = conn.execute(
                delete(routes).where(routes.c.workflow_id == workflow_id, routes.c.status == OPEN)
            )
            if deleted.rowcount != 1 or route is None:
                return False
            # Counted in the deleting transaction: a removal is never lost nor counted twice.
            now = time.time()
            key = {"workflow": route.workflow, "engine": route.engine}
            first = insert_for(conn, start_failures).values(
                **key, count=0, last_workflow_id=workflow_id, last_at=now
            )
            conn.execute(first.on_conflict_do_nothing(index_elements=["workflow", "engine"]))
            conn.execute(
                update(start_failures)
                .where(
                    start_failures.c.workflow == route.workflow,
                    start_failures.c.engine == route.engine,
                )
                .values(count=start_failures.c.count + 1, last_workflow_id=workflow_id, last_at=now)
            )
            return True

    def failed_starts(self) -> dict[tuple[str, str], int]:
        """(workflow, engine) -> routes removed because their run was never started."""
        query = select(start_failures.c.workflow, start_failures.c.engine, start_failures.c.count)
        with translate(self._where, "counting failed starts"), self._engine.begin() as conn:
            return {(w, e): int(n) for w, e, n in conn.execute(query)}

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

    def routes_to_check(self, limit: int | None = None) -> list[Route]:
        """Open routes, never checked first, then those checked longest ago (oldest created
        first among equals): what a bounded `refresh()` asks the engines about."""
        never = case((routes.c.checked_at.is_(None), 0), else_=1)
        query = (
            select(routes)
            .where(routes.c.status == OPEN)
            .order_by(never, routes.c.checked_at, routes.c.created_at)
        )
        if limit is not None:
            query = query.limit(limit)
        with translate(self._where, "listing routes to check"), self._engine.begin() as conn:
            return [_route(row) for row in conn.execute(query)]

    def mark_checked(self, workflow_ids: Iterable[str], *, at: float | None = None) -> None:
        """Record that the engines were asked about these open routes (one statement per
        500 ids: SQLite's bound-parameter limit, and one transaction for all)."""
        ids = list(workflow_ids)
        when = time.time() if at is None else at
        with translate(self._where, "marking routes checked"), self._engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    update(routes)
                    .where(routes.c.workflow_id.in_(ids[start : start + 500]))
                    .values(checked_at=when)
                )

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


def _add_checked_at(conn: Connection) -> None:
    """Add `checked_at` to a `bridge_routes` table created by release 0.2 or older
    (create_all does not alter an existing table)."""
    if "checked_at" in {c["name"] for c in inspect(conn).get_columns("bridge_routes")}:
        return
    try:
        # A savepoint: on PostgreSQL a failed statement would abort the whole transaction.
        with conn.begin_nested():
            conn.execute(text("ALTER TABLE bridge_routes ADD COLUMN checked_at FLOAT"))
    except (OperationalError, ProgrammingError) as exc:
        # Another process added it between our look and our ALTER (SQLite: no advisory
        # lock); anything else is a real error.
        if "checked_at" not in str(exc):
            raise


def _route(row: object) -> Route:
    mapping = row._mapping  # type: ignore[attr-defined]
    return Route(
        workflow_id=mapping["workflow_id"],
        workflow=mapping["workflow"],
        engine=mapping["engine"],
        status=mapping["status"],
        created_at=mapping["created_at"],
        closed_at=mapping["closed_at"],
    )
