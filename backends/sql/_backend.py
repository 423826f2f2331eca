"""The embedded SQL executor as a `bridge.Backend` (the shared `JournalBackend`)."""

from __future__ import annotations

from collections.abc import Sequence

from backends.sql._store import Store, open_store
from backends.sql._worker import SqlWorker
from bridge.interceptors import Interceptor
from bridge.journal.backend import JournalBackend


class SqlBackend(JournalBackend):
    name = "sql"
    section = "sql"
    worker_class = SqlWorker
    store: Store

    def open_store(self, chain: Sequence[Interceptor]) -> Store:
        return open_store(self.settings.sql, interceptors=chain)
