"""SQLAlchemy engines for the journal and bus databases: SQLite file or PostgreSQL.

One place for the choices every SQL-backed part of durable-bridge shares (the journals of
the sql and langgraph backends, the bus's outbox and inbox): on SQLite, WAL, the durability
PRAGMA and IMMEDIATE write transactions; on PostgreSQL, psycopg with READ COMMITTED, which
the row-locking claim statements are written for.

`open_dialect(url, ...)` gives the journal store a dialect object: the engine plus what
differs between the two databases (the INSERT construct with ON CONFLICT, the schema lock,
the bare-DBAPI transaction of the hot path, the wording of locked/corrupt errors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from bridge.errors import EngineNotInstalledError, StorageError

__all__ = [
    "Dialect",
    "PostgresDialect",
    "SqliteDialect",
    "explain_sqlite_error",
    "open_dialect",
    "postgres_engine",
    "postgres_url",
    "sqlite_engine",
    "sqlite_read_only",
    "sqlite_read_only_uri",
]


def sqlite_engine(
    url: str | URL,
    *,
    durability: Literal["FULL", "NORMAL"],
    busy_timeout_ms: int,
    setting: str,
    read_only: bool = False,
) -> tuple[Engine, Path]:
    """An engine on the SQLite file of `url`, and that file's path; `setting` names where
    the url came from, for the error an in-memory database gets. `read_only` opens the
    file with SQLite's `mode=ro` (see `sqlite_read_only`): nothing can be written."""
    parsed = make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        raise StorageError(
            f"{setting}: an in-memory SQLite database is not durable and cannot be shared "
            "between processes; use sqlite:///PATH"
        )
    path = Path(database)
    if read_only:
        parsed = parsed.set(database=sqlite_read_only_uri(path), query={"uri": "true"})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself: pysqlite's implicit BEGIN is
        # DEFERRED, which can deadlock two writers upgrading their locks.
        dbapi_conn.isolation_level = None
        if read_only:
            return  # the PRAGMAs below are about writing
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


def _writable(path: Path) -> bool:
    """Whether `path` may be written: by this user's permissions and, because root may
    write anything, by its mode too (an operator who takes every write bit off a journal
    means it to be read only, e.g. an archive or a copy under inspection)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return True  # not there yet: it will be created
    return os.access(path, os.W_OK) and bool(mode & 0o222)


def sqlite_read_only(path: Path) -> bool:
    """True for an existing SQLite file that may not be written, or whose directory may
    not be (WAL needs its -wal and -shm files there)."""
    return path.exists() and not (_writable(path) and _writable(path.parent))


def sqlite_read_only_uri(path: Path) -> str:
    """The URI that opens `path` for reading only (`mode=ro`).

    Under WAL a reader needs the -shm file; where none exists and none can be created
    beside the file, `immutable` reads the file as it is, which is exact: with no -shm there
    is no live writer and no unmerged -wal.
    """
    shm = path.with_name(path.name + "-shm")
    immutable = "&immutable=1" if not shm.exists() and not _writable(path.parent) else ""
    return f"file:{path}?mode=ro{immutable}"


def explain_sqlite_error(
    text: str, what: str, action: str, *, setting: str, waited: str
) -> str | None:
    """The message for SQLite's locked and corrupt errors, or None for other errors.

    `what` names the file ("the journal database /x.db"), `waited` how long the busy
    timeout waited ("waited 50 ms while " or ""), `setting` the url's setting name.
    """
    if "locked" in text or "busy" in text:
        return (
            f"{what} is locked by another process ({waited}{action}); nothing was "
            f"changed. Retry, or stop the process holding it"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            f"{what} is corrupt or not a SQLite database ({text}); nothing was written. "
            f"Restore it from a backup or point {setting} at another file"
        )
    if "readonly" in text or "read-only" in text:
        return (
            f"{what} is read-only (while {action}); nothing was changed. Give this process "
            f"write access to the file and its directory, or only inspect it"
        )
    return None


class Dialect:
    """What the journal store needs to know about its database beyond SQLAlchemy Core."""

    label = "sql"
    engine: Engine
    #: True when the database was opened without write access (SQLite only).
    read_only = False

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT construct (it has on_conflict_do_update/nothing)."""
        raise NotImplementedError

    def lock_schema(self, conn: Connection) -> None:
        """Serialize schema creation between processes."""

    def explain(self, exc: DBAPIError, action: str) -> str | None:
        """A message of this database's own for `exc`, or None for the generic one."""
        return None

    # The hot path's transaction on the bare DBAPI connection.
    def raw_begin(self, dbapi: Any) -> None:
        """Start a transaction (psycopg opens one by itself)."""

    def raw_commit(self, dbapi: Any) -> None:
        dbapi.commit()

    def raw_rollback(self, dbapi: Any) -> None:
        dbapi.rollback()


class SqliteDialect(Dialect):
    label = "SQLite"

    def __init__(
        self,
        url: str,
        *,
        durability: Literal["FULL", "NORMAL"],
        busy_timeout_ms: int,
        setting: str,
        noun: str,
    ) -> None:
        self.path = Path(make_url(url).database or "")
        self.read_only = sqlite_read_only(self.path)
        self.engine, self.path = sqlite_engine(
            url,
            durability=durability,
            busy_timeout_ms=busy_timeout_ms,
            setting=setting,
            read_only=self.read_only,
        )
        self._busy_timeout_ms = busy_timeout_ms
        self._setting = setting
        self._noun = noun

    def insert(self, table: Any) -> Any:
        # Imported here, per dialect: a SQLite process never loads SQLAlchemy's PostgreSQL
        # dialect (19 modules that every later full garbage collection would walk).
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)

    def explain(self, exc: DBAPIError, action: str) -> str | None:
        return explain_sqlite_error(
            str(exc.orig),
            f"the {self._noun} {self.path}",
            action,
            setting=self._setting,
            waited=f"waited {self._busy_timeout_ms} ms while ",
        )

    # The connection runs with isolation_level=None (see sqlite_engine), so the hot path
    # brackets its transaction itself, IMMEDIATE for the same reason as there.
    def raw_begin(self, dbapi: Any) -> None:
        dbapi.execute("BEGIN IMMEDIATE")

    def raw_commit(self, dbapi: Any) -> None:
        dbapi.execute("COMMIT")

    def raw_rollback(self, dbapi: Any) -> None:
        dbapi.execute("ROLLBACK")


class PostgresDialect(Dialect):
    label = "PostgreSQL"

    def __init__(self, url: str, *, schema_lock_key: int) -> None:
        self.engine = postgres_engine(url)
        self._lock_key = schema_lock_key

    def insert(self, table: Any) -> Any:
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)

    def lock_schema(self, conn: Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog;
        # a transaction-scoped advisory lock makes one process create and the rest wait.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})


def open_dialect(
    url: str,
    *,
    durability: Literal["FULL", "NORMAL"],
    busy_timeout_ms: int,
    setting: str,
    noun: str,
    schema_lock_key: int,
    hint: str,
) -> Dialect:
    """The dialect for `url`; `setting` and `hint` word the error for another scheme."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return SqliteDialect(
            url, durability=durability, busy_timeout_ms=busy_timeout_ms, setting=setting, noun=noun
        )
    if scheme in ("postgresql", "postgres"):
        return PostgresDialect(url, schema_lock_key=schema_lock_key)
    raise StorageError(f"{setting} {url!r}: unsupported database; use {hint}")
