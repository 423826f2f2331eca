"""SQLAlchemy engines for the journal and bus databases: SQLite file or PostgreSQL.

One place for the choices every SQL-backed part of durable-bridge shares (the sql executor's
journal, the LangGraph backend's run tables, the bus's outbox and inbox): on SQLite, WAL,
the durability PRAGMA and IMMEDIATE write transactions; on PostgreSQL, psycopg with READ
COMMITTED, which the row-locking claim statements are written for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from bridge.errors import EngineNotInstalledError, StorageError

__all__ = ["postgres_engine", "postgres_url", "sqlite_engine"]


def sqlite_engine(
    url: str | URL,
    *,
    durability: Literal["FULL", "NORMAL"],
    busy_timeout_ms: int,
    setting: str,
) -> tuple[Engine, Path]:
    """An engine on the SQLite file of `url`, and that file's path; `setting` names where
    the url came from, for the error an in-memory database gets."""
    parsed = make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        raise StorageError(
            f"{setting}: an in-memory SQLite database is not durable and cannot be shared "
            "between processes; use sqlite:///PATH"
        )
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself: pysqlite's implicit BEGIN is
        # DEFERRED, which can deadlock two writers upgrading their locks.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL: readers never block the writer, and a commit is one sequential append.
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL fsyncs the WAL on every commit (survives power loss); NORMAL only at
        # checkpoints (survives a killed process, may lose the last commits on power loss).
        cur.execute(f"PRAGMA synchronous={durability}")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so concurrent writers (and claimers)
        # queue on the busy timeout instead of failing mid-transaction; reads stay DEFERRED
        # (under WAL they never wait for a writer).
        if conn.get_execution_options().get("bridge_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine, path


def postgres_url(url: str | URL) -> URL:
    """`url` with the psycopg (3) driver when it names none."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def postgres_engine(url: str | URL) -> Engine:
    """An engine on PostgreSQL at `url`, or the install hint when psycopg is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise EngineNotInstalledError("PostgreSQL", "postgres") from None
    # READ COMMITTED plus row locks (FOR UPDATE / SKIP LOCKED) is what the claim and signal
    # statements are written for.
    return create_engine(
        postgres_url(url),
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )
