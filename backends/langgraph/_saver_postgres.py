"""PostgreSQL: LangGraph's PostgresSaver in the journal's own database.

PostgresSaver wants a psycopg connection in autocommit mode (each write is committed when
the call returns, which is what makes the saver durable); the bridge's tables go through
SQLAlchemy on psycopg 3 like the sql backend's.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from backends.langgraph._saver import DurableSaverMixin
from bridge._sqlengine import postgres_url
from bridge.encryption import Keyring
from bridge.errors import EngineNotInstalledError, StorageError

try:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - depends on the installed extras
    raise EngineNotInstalledError("LangGraph PostgreSQL", "langgraph,postgres") from None

# Any constant works; it only has to be the same in every durable-bridge process.
_SAVER_LOCK_KEY = 0x62726C67


class DurablePostgresSaver(DurableSaverMixin, PostgresSaver):
    """PostgresSaver committing each write before LangGraph continues (see `_saver.py`)."""

    def _is_driver_error(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.Error)


def open_saver(url: str, *, codec: Keyring | None) -> DurablePostgresSaver:
    """The saver on the database at `url`, its tables set up, sealing checkpoints with
    `codec`, the journal store's keyring (`bridge.encryption`)."""
    location = make_url(url).render_as_string()
    libpq = postgres_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(
            libpq, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=5
        )
    except psycopg.Error as exc:
        raise StorageError(
            f"the LangGraph checkpoint database {location} cannot be reached: {exc}"
        ) from None
    saver = DurablePostgresSaver(conn, location=location, codec=codec)
    # Concurrent first-time setups race on LangGraph's migrations table; the advisory lock
    # makes one process migrate and the others wait.
    conn.execute("SELECT pg_advisory_lock(%s)", (_SAVER_LOCK_KEY,))
    try:
        with saver.translating("creating LangGraph's tables"):
            saver.setup()
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_SAVER_LOCK_KEY,))
    return saver
