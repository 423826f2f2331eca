"""The journal database under a store: its dialect, transactions and schema.

`JournalDatabase` opens the backend's database through a dialect object
(`bridge._sqlengine`), translates driver errors into `StorageError`s that name the database
and what to do, and creates or migrates the backend's tables (`bridge.journal.schema`) when
it opens: on a database it may not write (SQLite only), it opens for inspection and refuses
every write with a clear error. The statements live in `_leases.py`, `_steps.py` and
`store.py`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bridge._sqlengine import Dialect, open_dialect
from bridge.errors import StorageError
from bridge.interceptors import Interceptor
from bridge.journal.context import FINAL_STEP_STATUSES

if TYPE_CHECKING:
    from bridge.config import JournalSettings
    from bridge.journal.schema import JournalSchema

log = logging.getLogger("bridge.journal")


class JournalDatabase:
    """The database of one backend's journal; see the module docstring."""

    #: The backend's tables, schema version and migrations (`bridge.journal.schema`).
    schema: ClassVar[JournalSchema]
    #: The engine name events and descriptions carry ("sql", "langgraph").
    engine_name: ClassVar[str]
    #: Where the url comes from, for errors ("sql.url").
    setting: ClassVar[str]
    #: What the database is called in errors ("journal database").
    noun: ClassVar[str]
    #: The urls this backend accepts, for the error an unsupported one gets.
    url_hint: ClassVar[str]
    #: PostgreSQL advisory lock key serializing this backend's schema creation.
    schema_lock_key: ClassVar[int]
    #: Step statuses a row never leaves once written.
    settled: ClassVar[frozenset[str]] = FINAL_STEP_STATUSES
    #: Whether a requested cancel wakes a run as it parks (the backend answers waits with it).
    park_wakes_on_cancel: ClassVar[bool] = False
    #: Whether a pending update request wakes a run as it parks (the backend's context
    #: delivers updates at its waits; see `JournaledContext.deliver_updates`).
    park_wakes_on_update: ClassVar[bool] = True

    def __init__(
        self, settings: JournalSettings, *, interceptors: Sequence[Interceptor] = ()
    ) -> None:
        self.settings = settings
        self.url = settings.url
        self.interceptors = tuple(interceptors)
        # What the write transaction under way calls once it has committed (`_after_commit`).
        self._committed: list[Callable[[], None]] = []
        self.dialect: Dialect = open_dialect(
            settings.url,
            durability=settings.durability,
            busy_timeout_ms=settings.busy_timeout_ms,
            setting=self.setting,
            noun=self.noun,
            schema_lock_key=self.schema_lock_key,
            hint=self.url_hint,
        )
        self.engine = self.dialect.engine
        self._upsert_stmt: Any = None
        try:
            with self._translate("opening"):
                self._writer: Connection = self.engine.connect()
                self._ensure_schema()
        except BaseException:
            self.engine.dispose()  # a refused database leaves no connection behind
            raise

    @property
    def read_only(self) -> bool:
        """True when the database was opened for inspection only (no write access)."""
        return self.dialect.read_only

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            message = self.dialect.explain(exc, action) or (
                f"{self.dialect.label} {self.noun} at {self.url}: {action} failed: {exc.orig}"
            )
            raise StorageError(message) from None
        except SQLAlchemyError as exc:
            raise StorageError(f"{self.noun} at {self.url}: {action} failed: {exc}") from None

    def _refuse_if_read_only(self, action: str) -> None:
        if self.read_only:
            raise StorageError(
                f"the {self.noun} {self.url} is read-only for this process (while {action}); "
                f"nothing was changed. Listing and inspecting runs work; to run workers or "
                f"change runs, give this process write access to the file and its directory"
            )

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        self._refuse_if_read_only(action)
        self._committed = []
        try:
            with self._translate(action):
                conn = self._writer
                if conn.invalidated or conn.closed:
                    self._writer = conn = self.engine.connect()
                with conn.begin():
                    yield conn
        except BaseException:
            self._committed = []  # rolled back: what it announced did not happen
            raise
        committed, self._committed = self._committed, []
        for call in committed:
            try:
                call()
            except Exception:
                # The transaction is committed; a failing observer must not undo that.
                log.exception("an interceptor failed after %s in %s", action, self.url)

    def _after_commit(self, call: Callable[[], None]) -> None:
        """Call `call` once the write transaction under way has committed (never if it
        rolls back): for effects that must follow a durable change exactly once."""
        self._committed.append(call)

    @contextlib.contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        with self._translate(action), self.engine.connect() as conn:
            conn = conn.execution_options(bridge_readonly=True)
            with conn.begin():
                yield conn

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------
    def _stored_version(self) -> int | None:
        meta = self.schema.meta
        with self._read("reading the schema version") as conn:
            if not self.engine.dialect.has_table(conn, meta.name):
                return None
            value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))
            found = value.scalar()
        return None if found is None else int(found)

    def _ensure_schema(self) -> None:
        # The common case, an up-to-date journal, costs one read; creating or migrating
        # takes the write lock (and on PostgreSQL an advisory lock) to run once.
        version = self._stored_version()
        if version == self.schema.version:
            if (self.interceptors or self._features_missing()) and not self.read_only:
                with self._write("preparing the journal") as conn:
                    self._create_features(conn)
                    self._opened(conn)
            return
        if self.read_only:
            state = "has no journal tables" if version is None else f"is at version {version}"
            raise StorageError(
                f"the {self.noun} {self.url} is read-only for this process and {state}; this "
                f"durable-bridge reads version {self.schema.version}. Open it once with write "
                f"access to create or migrate its tables; nothing was changed"
            )
        with self._write("creating the schema") as conn:
            self._migrate(conn)
            self._create_features(conn)
            self._opened(conn)

    def _features_missing(self) -> bool:
        with self._read("checking the feature tables") as conn:
            return not all(
                self.engine.dialect.has_table(conn, name) for name in self.schema.features.tables
            )

    def _create_features(self, conn: Connection) -> None:
        """The feature tables (`JournalSchema.features`) where they are absent."""
        self.dialect.lock_schema(conn)
        self.schema.features.create_all(conn, checkfirst=True)

    def _migrate(self, conn: Connection) -> None:
        sch, meta = self.schema, self.schema.meta
        self.dialect.lock_schema(conn)
        sch.metadata.create_all(conn, checkfirst=True)
        row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
        if row is None:
            conn.execute(meta.insert().values(key="schema_version", value=str(sch.version)))
            return
        version = int(row[0])
        if version > sch.version:
            raise StorageError(
                f"{self.noun} at {self.url} has schema version {version}, newer than this "
                f"durable-bridge understands ({sch.version}); upgrade durable-bridge"
            )
        while version < sch.version:
            step = sch.migrations.get(version)
            if step is None:
                raise StorageError(
                    f"{self.noun} at {self.url} has schema version {version} and this "
                    f"durable-bridge has no migration from it; nothing was changed"
                )
            step(conn)
            version += 1
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(version)))

    def _opened(self, conn: Connection) -> None:
        for interceptor in self.interceptors:
            interceptor.storage_opened(conn)

    def schema_version(self) -> int:
        version = self._stored_version()
        assert version is not None  # the store created it when it opened
        return version
