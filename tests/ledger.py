"""A crash-proof side-effect ledger: activities append a row per call to a SQLite file.

Counting rows per key is how the tests prove a side effect ran exactly once, across a
SIGKILL of the process that ran it.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path


def _connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY, key TEXT, at REAL)")
    return conn


def record(path: str | Path, key: str) -> None:
    conn = _connect(path)
    try:
        conn.execute("INSERT INTO ledger (key, at) VALUES (?, ?)", (key, time.time()))
    finally:
        conn.close()


def entries(path: str | Path) -> list[tuple[str, float]]:
    conn = _connect(path)
    try:
        return [(k, t) for k, t in conn.execute("SELECT key, at FROM ledger ORDER BY seq")]
    finally:
        conn.close()


def counts(path: str | Path) -> Counter[str]:
    return Counter(k for k, _ in entries(path))
