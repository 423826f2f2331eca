"""SQLite: LangGraph's SqliteSaver on the journal's own file.

Two connections share the file: SQLAlchemy's for the bridge's tables and the sqlite3
connection SqliteSaver wants. WAL lets LangGraph read while the bridge writes; both wait
on the same busy timeout when they write at once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from backends.langgraph._saver import DurableSaverMixin
from bridge._sqlengine import explain_sqlite_error, sqlite_read_only_uri
from bridge.config import LangGraphSettings
from bridge.encryption import Keyring


class DurableSqliteSaver(DurableSaverMixin, SqliteSaver):
    """SqliteSaver committing each write before LangGraph continues (see `_saver.py`)."""

    def _is_driver_error(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.Error)

    def describe_error(self, exc: Exception, action: str) -> str:
        return explain_sqlite_error(
            str(exc),
            f"the LangGraph checkpoint database {self.location}",
            action,
            setting="langgraph.url",
            waited="while ",
        ) or super().describe_error(exc, action)


def open_saver(
    settings: LangGraphSettings, path: Path, *, read_only: bool, codec: Keyring | None
) -> DurableSqliteSaver:
    """The saver on `path`, its tables set up (unless the file is only to be read), sealing
    checkpoints with `codec`, the journal store's keyring (`bridge.encryption`)."""
    # check_same_thread=False: SqliteSaver serializes its cursor with a lock. The timeout
    # is the busy timeout: a write waits that long for another writer.
    timeout = settings.busy_timeout_ms / 1000
    if read_only:
        # The journal store chose read-only access (bridge._sqlengine.sqlite_read_only).
        uri = sqlite_read_only_uri(path)
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=timeout)
        return DurableSqliteSaver(conn, location=str(path), codec=codec)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=timeout)
    # FULL (SqliteSaver's default) fsyncs the WAL on every commit, so a step survives a
    # power cut; NORMAL only at checkpoints: it survives a killed process, which is what
    # the step-durability guarantee is about, but may lose the last commits when the
    # machine loses power.
    conn.execute(f"PRAGMA synchronous={settings.durability}")
    saver = DurableSqliteSaver(conn, location=str(path), codec=codec)
    with saver.translating("creating LangGraph's tables"):
        saver.setup()
    return saver
