"""PostgreSQL specifics: psycopg 3, and an advisory lock around schema creation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from backends.sql._store import Store
from bridge.errors import EngineNotInstalledError

# Any constant works; it only has to be the same in every durable-bridge process.
_SCHEMA_LOCK_KEY = 0x62726467


class PostgresStore(Store):
    dialect_label = "PostgreSQL"

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise EngineNotInstalledError("PostgreSQL", "postgres") from None
        # READ COMMITTED plus row locks (FOR UPDATE / SKIP LOCKED) is what the claim and
        # signal statements are written for.
        return create_engine(
            url,
            isolation_level="READ COMMITTED",
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5},
        )

    def _insert(self, table: Any) -> Any:
        return pg_insert(table)

    def _lock_schema(self, conn: Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog;
        # a transaction-scoped advisory lock makes one process create and the rest wait.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
