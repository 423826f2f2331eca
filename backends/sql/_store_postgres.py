"""PostgreSQL specifics: psycopg 3, and an advisory lock around schema creation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from backends.sql._store import Store
from bridge._sqlengine import postgres_engine

# Any constant works; it only has to be the same in every durable-bridge process.
_SCHEMA_LOCK_KEY = 0x62726467


class PostgresStore(Store):
    dialect_label = "PostgreSQL"

    def _create_engine(self) -> Engine:
        return postgres_engine(self.url)

    def _insert(self, table: Any) -> Any:
        return pg_insert(table)

    def _lock_schema(self, conn: Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog;
        # a transaction-scoped advisory lock makes one process create and the rest wait.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
