"""The journal's schema version: set on a fresh database, migrated forward on an older one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection

import bridge
from backends.sql import _schema
from backends.sql._store import Store, open_store
from bridge.config import SqlSettings

TABLES = {"bridge_meta", "bridge_workflows", "bridge_steps", "bridge_timers", "bridge_signals"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def open_db(db_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens Stores on `db_path`; every one still open is closed at teardown."""
    opened: list[Store] = []

    def opener() -> Store:
        store = open_store(SqlSettings(url=f"sqlite:///{db_path}"))
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


def _raw_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (value,) = db.execute(
            "SELECT value FROM bridge_meta WHERE key = 'schema_version'"
        ).fetchone()
    finally:
        db.close()
    return int(value)


def _columns(path: Path, table: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


def _tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def _version_1_db(monkeypatch: pytest.MonkeyPatch, open_db: Callable[[], Store]) -> None:
    """A journal written by a durable-bridge whose schema was version 1, with two runs."""
    monkeypatch.setattr(_schema.SCHEMA, "version", 1)
    monkeypatch.setattr(_schema.SCHEMA, "migrations", {})
    store = open_db()
    assert store.create_run("run-1", "wf_one", {"x": 1})
    assert store.create_run("run-2", "wf_two", {"y": [1, 2]})
    assert store.schema_version() == 1
    store.close()


# -- a fresh database -----------------------------------------------------------------------
def test_fresh_database_gets_the_current_version(
    db_path: Path, open_db: Callable[[], Store]
) -> None:
    store = open_db()
    assert store.schema_version() == _schema.SCHEMA.version
    assert _raw_version(db_path) == _schema.SCHEMA.version
    assert _tables(db_path) >= TABLES


def test_reopening_keeps_the_version_and_the_rows(
    db_path: Path, open_db: Callable[[], Store]
) -> None:
    store = open_db()
    store.create_run("kept", "wf", {"a": 1})
    store.close()
    again = open_db()
    assert again.schema_version() == _schema.SCHEMA.version
    row = again.get_run("kept")
    assert row.name == "wf" and row.input == '{"a":1}'


def test_current_schema_needs_no_migration() -> None:
    # Every version below the current one has a migration to the next.
    assert all(v in _schema.SCHEMA.migrations for v in range(1, _schema.SCHEMA.version))


# -- migrating an older database ------------------------------------------------------------
def test_older_database_is_migrated(
    db_path: Path, open_db: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _version_1_db(monkeypatch, open_db)
    calls: list[int] = []

    def add_priority(conn: Connection) -> None:
        calls.append(1)
        conn.exec_driver_sql(
            "ALTER TABLE bridge_workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"
        )
        conn.exec_driver_sql("CREATE TABLE bridge_labels (workflow_id TEXT, label TEXT)")

    monkeypatch.setattr(_schema.SCHEMA, "version", 2)
    monkeypatch.setattr(_schema.SCHEMA, "migrations", {1: add_priority})
    store = open_db()
    assert calls == [1]
    assert store.schema_version() == 2
    assert _raw_version(db_path) == 2
    assert "priority" in _columns(db_path, "bridge_workflows")
    assert "bridge_labels" in _tables(db_path)
    # Existing rows are intact and still usable.
    one, two = store.get_run("run-1"), store.get_run("run-2")
    assert (one.name, one.input, one.status) == ("wf_one", '{"x":1}', "PENDING")
    assert (two.name, two.input) == ("wf_two", '{"y":[1,2]}')
    assert store.create_run("run-3", "wf_one", {})
    store.close()

    # Opening again runs nothing: the database is at the current version.
    again = open_db()
    assert calls == [1]
    assert again.schema_version() == 2
    assert {r.id for r in again.list_runs(None, 10)} == {"run-1", "run-2", "run-3"}


def test_migrations_run_in_order(
    db_path: Path, open_db: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _version_1_db(monkeypatch, open_db)
    calls: list[int] = []

    def step(n: int) -> Callable[[Connection], None]:
        def migrate(conn: Connection) -> None:
            calls.append(n)
            conn.exec_driver_sql(f"ALTER TABLE bridge_workflows ADD COLUMN extra{n} TEXT")

        return migrate

    monkeypatch.setattr(_schema.SCHEMA, "version", 4)
    monkeypatch.setattr(_schema.SCHEMA, "migrations", {3: step(3), 1: step(1), 2: step(2)})
    store = open_db()
    assert calls == [1, 2, 3]
    assert store.schema_version() == 4
    assert {"extra1", "extra2", "extra3"} <= set(_columns(db_path, "bridge_workflows"))


def test_failed_migration_changes_nothing(
    db_path: Path, open_db: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _version_1_db(monkeypatch, open_db)
    before = _columns(db_path, "bridge_workflows")

    def half_done(conn: Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE bridge_workflows ADD COLUMN half TEXT")
        raise RuntimeError("migration 1 -> 2 broke")

    monkeypatch.setattr(_schema.SCHEMA, "version", 2)
    monkeypatch.setattr(_schema.SCHEMA, "migrations", {1: half_done})
    with pytest.raises((RuntimeError, bridge.StorageError), match="broke"):
        open_db()
    # One transaction: the half-applied migration was rolled back.
    assert _raw_version(db_path) == 1
    assert _columns(db_path, "bridge_workflows") == before

    calls: list[int] = []
    monkeypatch.setattr(_schema.SCHEMA, "migrations", {1: lambda conn: calls.append(1)})
    store = open_db()
    assert calls == [1]
    assert store.schema_version() == 2
    assert store.get_run("run-1").name == "wf_one"


def test_newer_database_is_refused_and_left_alone(
    db_path: Path, open_db: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _version_1_db(monkeypatch, open_db)
    calls: list[int] = []
    monkeypatch.setattr(_schema.SCHEMA, "version", 0)
    monkeypatch.setattr(_schema.SCHEMA, "migrations", {0: lambda conn: calls.append(0)})
    with pytest.raises(bridge.StorageError, match="upgrade durable-bridge"):
        open_db()
    assert calls == []
    assert _raw_version(db_path) == 1
