"""PostgreSQL specifics: PostgresSaver and the bridge's tables in one database.

PostgresSaver wants a psycopg connection in autocommit mode (each write is committed when
the call returns, which is what makes the saver durable); the bridge's tables go through
SQLAlchemy on psycopg 3 like the sql backend's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from backends.langgraph._saver import DurableSaverMixin
from backends.langgraph._store import Store
from bridge._sqlengine import postgres_engine, postgres_url
from bridge.errors import EngineNotInstalledError, StorageError

try:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - depends on the installed extras
    raise EngineNotInstalledError("LangGraph PostgreSQL", "langgraph,postgres") from None

# Any constant works; it only has to be the same in every durable-bridge process.
_SCHEMA_LOCK_KEY = 0x62726C67


class DurablePostgresSaver(DurableSaverMixin, PostgresSaver):
    """PostgresSaver committing each write before LangGraph continues (see `_saver.py`)."""

    def _is_driver_error(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.Error)


class PostgresStore(Store):
    dialect_label = "PostgreSQL"

    def _create_engine(self) -> Engine:
        url = postgres_url(self.url)
        self._libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return postgres_engine(url)

    def _create_saver(self) -> DurableSaverMixin:
        location = make_url(self.url).render_as_string()
        try:
            conn = psycopg.connect(
                self._libpq_url,
                autocommit=True,
                prepare_threshold=0,
                row_factory=dict_row,
                connect_timeout=5,
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"the LangGraph checkpoint database {location} cannot be reached: {exc}"
            ) from None
        self._saver_conn = conn
        saver = DurablePostgresSaver(conn, location=location)
        # Concurrent first-time setups race on LangGraph's migrations table; the advisory
        # lock makes one process migrate and the others wait.
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
        try:
            with saver.translating("creating LangGraph's tables"):
                saver.setup()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))
        return saver

    def _close_saver(self) -> None:
        self._saver_conn.close()

    def _insert(self, table: Any) -> Any:
        return pg_insert(table)

    def _lock_schema(self, conn: Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
