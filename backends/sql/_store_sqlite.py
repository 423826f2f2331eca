"""SQLite specifics: WAL, the durability PRAGMA, and IMMEDIATE write transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from backends.sql._store import Store
from bridge.errors import StorageError


class SqliteStore(Store):
    dialect_label = "SQLite"

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        database = url.database or ""
        if database in ("", ":memory:"):
            raise StorageError(
                "sql.url: an in-memory SQLite database is not durable and cannot be shared "
                "between a client and a worker; use sqlite:///PATH"
            )
        self.path = Path(database)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        engine = create_engine(
            url,
            connect_args={"timeout": settings.busy_timeout_ms / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself: pysqlite's implicit BEGIN
            # is DEFERRED, which can deadlock two writers upgrading their locks.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer, and a commit is one sequential append.
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL fsyncs the WAL on every commit (survives power loss); NORMAL only at
            # checkpoints (survives a killed process, may lose the last commits on power loss).
            cur.execute(f"PRAGMA synchronous={settings.durability}")
            cur.execute(f"PRAGMA busy_timeout={settings.busy_timeout_ms}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front, so concurrent writers queue on the
            # busy timeout instead of failing mid-transaction; reads stay DEFERRED.
            if conn.get_execution_options().get("bridge_readonly"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    # The connection runs with isolation_level=None (see _on_connect), so the hot path
    # brackets its transaction itself, IMMEDIATE for the same reason as above.
    def _raw_begin(self, dbapi: Any) -> None:
        dbapi.execute("BEGIN IMMEDIATE")

    def _raw_commit(self, dbapi: Any) -> None:
        dbapi.execute("COMMIT")

    def _raw_rollback(self, dbapi: Any) -> None:
        dbapi.execute("ROLLBACK")

    def _insert(self, table: Any) -> Any:
        return sqlite_insert(table)

    def _describe_error(self, exc: DBAPIError, action: str) -> str:
        text = str(exc.orig)
        if "locked" in text or "busy" in text:
            return (
                f"the journal database {self.path} is locked by another process "
                f"(waited {self.settings.busy_timeout_ms} ms while {action}); nothing was "
                f"changed. Retry, or stop the process holding it"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return (
                f"the journal database {self.path} is corrupt or not a durable-bridge "
                f"database ({text}); nothing was written. Restore it from a backup or point "
                f"sql.url at another file"
            )
        return super()._describe_error(exc, action)
