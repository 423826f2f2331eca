"""SQLite specifics: one file holds LangGraph's SqliteSaver tables and the bridge's tables.

Two connections share the file: SQLAlchemy's for the bridge's tables and the sqlite3
connection SqliteSaver wants. WAL lets LangGraph read while the bridge writes; both wait
on the same busy timeout when they write at once.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy import Engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from backends.langgraph._saver import DurableSaverMixin
from backends.langgraph._store import Store
from bridge._sqlengine import sqlite_engine


class DurableSqliteSaver(DurableSaverMixin, SqliteSaver):
    """SqliteSaver committing each write before LangGraph continues (see `_saver.py`)."""

    def _is_driver_error(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.Error)

    def describe_error(self, exc: Exception, action: str) -> str:
        return _explain(str(exc), f"the LangGraph checkpoint database {self.location}", action) or (
            super().describe_error(exc, action)
        )


def _explain(text: str, what: str, action: str) -> str | None:
    """The locked / corrupt messages both connections give, or None for other errors."""
    if "locked" in text or "busy" in text:
        return (
            f"{what} is locked by another process (while {action}); nothing was changed. "
            f"Retry, or stop the process holding it"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            f"{what} is corrupt or not a SQLite database ({text}); nothing was written. "
            f"Restore it from a backup or point langgraph.url at another file"
        )
    return None


class SqliteStore(Store):
    dialect_label = "SQLite"

    def _create_engine(self) -> Engine:
        # SqliteSaver sets WAL on its own connection too.
        engine, self.path = sqlite_engine(
            self.url,
            durability=self.settings.durability,
            busy_timeout_ms=self.settings.busy_timeout_ms,
            setting="langgraph.url",
        )
        return engine

    def _create_saver(self) -> DurableSaverMixin:
        # check_same_thread=False: SqliteSaver serializes its cursor with a lock. The
        # timeout is the busy timeout: a write waits that long for another writer.
        conn = sqlite3.connect(
            str(self.path), check_same_thread=False, timeout=self.settings.busy_timeout_ms / 1000
        )
        self._saver_conn = conn
        # FULL (SqliteSaver's default) fsyncs the WAL on every commit, so a step survives a
        # power cut; NORMAL only at checkpoints: it survives a killed process, which is
        # what the step-durability guarantee is about, but may lose the last commits when
        # the machine loses power.
        conn.execute(f"PRAGMA synchronous={self.settings.durability}")
        saver = DurableSqliteSaver(conn, location=str(self.path))
        with saver.translating("creating LangGraph's tables"):
            saver.setup()
        return saver

    def _close_saver(self) -> None:
        self._saver_conn.close()

    def _insert(self, table: Any) -> Any:
        return sqlite_insert(table)

    def _describe_error(self, exc: DBAPIError, action: str) -> str:
        return _explain(str(exc.orig), f"the LangGraph database {self.path}", action) or (
            super()._describe_error(exc, action)
        )
