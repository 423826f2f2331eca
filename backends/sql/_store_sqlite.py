"""SQLite specifics: WAL, the durability PRAGMA, and IMMEDIATE write transactions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from backends.sql._store import Store
from bridge._sqlengine import sqlite_engine


class SqliteStore(Store):
    dialect_label = "SQLite"

    def _create_engine(self) -> Engine:
        engine, self.path = sqlite_engine(
            self.url,
            durability=self.settings.durability,
            busy_timeout_ms=self.settings.busy_timeout_ms,
            setting="sql.url",
        )
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
