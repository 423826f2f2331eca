"""SQLAlchemy engines for the bus's SQL tables (outbox and inbox), SQLite or PostgreSQL.

The same choices as the SQL executor's store (`backends/sql/_store_*.py`), which `bridge/`
may not import: WAL and IMMEDIATE write transactions on SQLite, READ COMMITTED plus row
locks on PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bridge.errors import EngineNotInstalledError, StorageError


def create_bus_engine(
    url: str, *, durability: Literal["FULL", "NORMAL"] = "FULL", busy_timeout_ms: int = 5000
) -> Engine:
    """An engine for `url` (sqlite:///PATH or postgresql[+psycopg]://...)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise StorageError(
                f"bus url {url!r}: an in-memory SQLite database is not durable and cannot be "
                "shared between a publisher and a consumer; use sqlite:///PATH"
            )
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # SQLAlchemy's "begin" event issues BEGIN itself: pysqlite's implicit BEGIN is
            # DEFERRED, and two deferred writers upgrading their locks can deadlock.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; a commit is one sequential append.
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL fsyncs every commit (survives power loss); NORMAL only at checkpoints
            # (survives a killed process, may lose the last commits on power loss).
            cur.execute(f"PRAGMA synchronous={durability}")
            cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front, so concurrent claimers queue on the
            # busy timeout instead of failing mid-transaction: this is the claim's lock.
            # Reads stay DEFERRED (under WAL they never wait for a writer).
            if conn.get_execution_options().get("bridge_readonly"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise EngineNotInstalledError("PostgreSQL", "postgres") from None
        # READ COMMITTED plus FOR UPDATE SKIP LOCKED is what the claim is written for.
        return create_engine(
            parsed,
            isolation_level="READ COMMITTED",
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5},
        )
    raise StorageError(
        f"bus url {url!r}: unsupported database; use sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST/DB"
    )


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT construct (it has on_conflict_do_nothing)."""
    return dialect_insert(conn.dialect.name, table)


def dialect_insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise StorageError(f"the bus tables need SQLite or PostgreSQL, not {dialect!r}")
    return insert(table)


@contextlib.contextmanager
def translate(where: str, action: str) -> Iterator[None]:
    """Database errors as StorageError naming the database and the action."""
    try:
        yield
    except DBAPIError as exc:
        raise StorageError(f"{where}: {action} failed: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise StorageError(f"{where}: {action} failed: {exc}") from None
