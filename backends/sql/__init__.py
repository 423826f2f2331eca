"""The embedded durable executor: a journal on SQLAlchemy (SQLite by default, PostgreSQL).

Built on the shared journal core (`bridge.journal`). Imports `bridge` and SQLAlchemy only;
never another backend.
"""

from backends.sql._backend import SqlBackend
from backends.sql._store import Store, open_store
from backends.sql._worker import SqlWorker

__all__ = ["SqlBackend", "SqlWorker", "Store", "open_store"]
