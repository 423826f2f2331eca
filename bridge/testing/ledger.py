"""A crash-proof side-effect ledger: activities append one row per real side effect.

The ledger is a SQLite file outside every engine's storage, written with its own short
transaction per row, so a row survives a SIGKILL of the process that wrote it the moment the
insert returns. Counting rows per idempotency key is how the harness proves a side effect
ran exactly once across a crash and a resume; counting per activity shows which step ran.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Entry",
    "Ledger",
    "counts",
    "counts_by_activity",
    "duplicates",
    "entries",
    "record",
    "record_once",
]


@dataclass(frozen=True)
class Entry:
    """One recorded side effect: its idempotency key, the activity that did it, and when."""

    key: str
    activity: str
    at: float


def _connect(path: str | Path) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): every INSERT is its own transaction, durable when it
    # returns. WAL lets the parent read counts while a worker subprocess is still writing, and
    # the long busy timeout serialises concurrent writers instead of failing them.
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    # Switching to WAL can fail at once with "database is locked" while another process
    # writes (SQLite does not wait in its busy handler for it); the mode is kept in the file,
    # so only the connection that finds it not yet WAL asks for it.
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ledger"
        " (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, activity TEXT NOT NULL DEFAULT '',"
        " at REAL NOT NULL)"
    )
    return conn


def record(path: str | Path, key: str, activity: str = "") -> None:
    """Append one side effect under `key` (an idempotency key), done by `activity`."""
    conn = _connect(path)
    try:
        conn.execute(
            "INSERT INTO ledger (key, activity, at) VALUES (?, ?, ?)", (key, activity, time.time())
        )
    finally:
        conn.close()


def record_once(path: str | Path, key: str, activity: str = "") -> bool:
    """Append a side effect under `key` unless one is already there; True if appended.

    What an idempotent activity does with its idempotency key: the check and the insert
    are one statement, so two attempts racing with the same key commit one row.
    """
    conn = _connect(path)
    try:
        cur = conn.execute(
            "INSERT INTO ledger (key, activity, at) SELECT ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE key = ?)",
            (key, activity, time.time(), key),
        )
        return cur.rowcount == 1
    finally:
        conn.close()


def entries(path: str | Path) -> list[Entry]:
    """Every recorded side effect, in the order it was committed."""
    if not Path(path).exists():
        return []
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT key, activity, at FROM ledger ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [Entry(key=k, activity=a, at=t) for k, a, t in rows]


def counts(path: str | Path) -> Counter[str]:
    """How many times each idempotency key was committed."""
    return Counter(e.key for e in entries(path))


def counts_by_activity(path: str | Path) -> Counter[str]:
    """How many side effects each activity committed."""
    return Counter(e.activity for e in entries(path))


def duplicates(path: str | Path) -> dict[str, int]:
    """The keys committed more than once (an exactly-once violation), with their counts."""
    return {k: n for k, n in counts(path).items() if n > 1}


@dataclass(frozen=True)
class Ledger:
    """A ledger file as an object, for fixtures and reports that pass it around."""

    path: Path

    def record(self, key: str, activity: str = "") -> None:
        record(self.path, key, activity)

    def record_once(self, key: str, activity: str = "") -> bool:
        return record_once(self.path, key, activity)

    def entries(self) -> list[Entry]:
        return entries(self.path)

    def counts(self) -> Counter[str]:
        return counts(self.path)

    def counts_by_activity(self) -> Counter[str]:
        return counts_by_activity(self.path)

    def duplicates(self) -> dict[str, int]:
        return duplicates(self.path)
