"""The on-disk shape of both journals, pinned: databases written by earlier releases exist.

`schema_snapshot.json` was taken from the code of commit 3cdb218 (tables, columns, types,
nullability, keys and indexes of the sql journal, `bridge_*`, and of the LangGraph backend's
tables, `bridge_lg_*`, on SQLite and on PostgreSQL). A change that alters them must come
with a migration (`MIGRATIONS`) and a new snapshot, never by accident.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from bridge.config import LangGraphSettings, SqlSettings

SNAPSHOT = Path(__file__).with_name("schema_snapshot.json")
_OTHERS = (
    "bridge_lg_",
    "bridge_bus_",
    "bridge_agent_",
    "bridge_routes",
    "bridge_shadow_",
    "bridge_webhook_",
)


def _open(backend: str, url: str) -> Any:
    if backend == "sql":
        from backends.sql import open_store

        return open_store(SqlSettings(url=url))
    pytest.importorskip("langgraph")
    from backends.langgraph import open_store as open_lg

    return open_lg(LangGraphSettings(url=url))


#: Feature tables (`JournalSchema.features`) are created when absent, outside the versioned
#: journal; an old journal gains them when it opens, so they are not part of its shape.
_FEATURES = ("schedules", "attributes", "permits", "rate_buckets")


def _ours(name: str, backend: str) -> bool:
    if name.removeprefix("bridge_lg_").removeprefix("bridge_") in _FEATURES:
        return False
    # The sql prefix `bridge_` also matches LangGraph's, the bus's and the adapters' tables.
    if backend == "sql":
        return name.startswith("bridge_") and not name.startswith(_OTHERS)
    return name.startswith("bridge_lg_")


def sqlite_snapshot(path: Path, backend: str) -> dict[str, Any]:
    """{table: {columns: [name, type, notnull, default, pk position], indexes: {...}}}."""
    # immutable: reading must leave no -wal/-shm beside a checked-in file.
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        tables = [
            t
            for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if _ours(t, backend)
        ]
        out: dict[str, Any] = {}
        for t in sorted(tables):
            columns = [list(r[1:6]) for r in db.execute(f"PRAGMA table_info({t})")]
            indexes = {
                r[1]: [r[2], r[3], [c[2] for c in db.execute(f'PRAGMA index_info("{r[1]}")')]]
                for r in db.execute(f"PRAGMA index_list({t})")
            }
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0]
            # Constraint names live only in the DDL text on SQLite.
            named = sorted(w for w in sql.replace("(", " ").split() if w.startswith("pk_"))
            out[t] = {"columns": columns, "indexes": dict(sorted(indexes.items())), "pk": named}
        return out
    finally:
        db.close()


def postgres_snapshot(url: str, backend: str) -> dict[str, Any]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = [
                t
                for (t,) in conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
                )
                if _ours(t, backend)
            ]
            out: dict[str, Any] = {}
            for t in sorted(tables):
                columns = [
                    list(r)
                    for r in conn.exec_driver_sql(
                        "SELECT column_name, data_type, character_maximum_length, is_nullable "
                        "FROM information_schema.columns WHERE table_name = %(t)s "
                        "ORDER BY ordinal_position",
                        {"t": t},
                    )
                ]
                indexes = {
                    name: definition
                    for name, definition in conn.exec_driver_sql(
                        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s",
                        {"t": t},
                    )
                }
                out[t] = {"columns": columns, "indexes": dict(sorted(indexes.items()))}
            return out
    finally:
        engine.dispose()


def _expected(db: str, backend: str) -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text())[db][backend]


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
def test_sqlite_journal_tables_are_as_on_disk(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _open(backend, f"sqlite:///{path}").close()
    assert sqlite_snapshot(path, backend) == _expected("sqlite", backend)


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
def test_checked_in_old_journals_have_the_snapshot_shape(backend: str) -> None:
    # The snapshot and the old journals (test_old_journals.py) describe the same release.
    old = Path(__file__).with_name(f"old_{backend}.db")
    assert sqlite_snapshot(old, backend) == _expected("sqlite", backend)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["sql", "langgraph"])
def test_postgres_journal_tables_are_as_on_disk(backend: str, pg_url: str) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as conn:  # a clean slate for the LangGraph tables too
        for table in [*_expected("postgres", backend)]:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    _open(backend, pg_url).close()
    assert postgres_snapshot(pg_url, backend) == _expected("postgres", backend)
