"""The bus's SQL tables (outbox and inbox) on SQLite or PostgreSQL: engines (the same as the
journals', `bridge/_sqlengine.py`), dialect INSERTs and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bridge._sqlengine import postgres_engine, sqlite_engine
from bridge.errors import StorageError


def create_bus_engine(
    url: str, *, durability: Literal["FULL", "NORMAL"] = "FULL", busy_timeout_ms: int = 5000
) -> Engine:
    """An engine for `url` (sqlite:///PATH or postgresql[+psycopg]://...)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine, _path = sqlite_engine(
            url, durability=durability, busy_timeout_ms=busy_timeout_ms, setting=f"bus url {url!r}"
        )
        return engine
    if backend == "postgresql":
        return postgres_engine(url)
    raise StorageError(
        f"bus url {url!r}: unsupported database; use sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST/DB"
    )


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT construct (it has on_conflict_do_nothing)."""
    return dialect_insert(conn.dialect.name, table)


def dialect_insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise StorageError(f"the bus tables need SQLite or PostgreSQL, not {dialect!r}")
    return insert(table)


@contextlib.contextmanager
def translate(where: str, action: str) -> Iterator[None]:
    """Database errors as StorageError naming the database and the action."""
    try:
        yield
    except DBAPIError as exc:
        raise StorageError(f"{where}: {action} failed: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise StorageError(f"{where}: {action} failed: {exc}") from None
