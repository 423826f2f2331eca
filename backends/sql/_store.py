"""Storage for the SQL executor: every statement it runs, behind one class.

`open_store(settings)` dispatches on the database URL to a dialect subclass
(`_store_sqlite.py`, `_store_postgres.py`) that supplies the engine, its connection set-up and
the upsert construct; the statements themselves are SQLAlchemy Core and shared.

All calls are synchronous and made from the worker's event-loop thread: one INSERT+COMMIT
costs ~0.2 ms on SQLite, less than a thread hop would add (see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from backends.sql import _schema as s
from bridge import codec
from bridge._replay import FINAL_STEP_STATUSES, WAITING, StepRecord
from bridge.backend import Status
from bridge.bus import completion_event
from bridge.bus.outbox import create_tables as create_outbox_tables
from bridge.bus.outbox import publish_in
from bridge.config import SqlSettings
from bridge.errors import (
    StorageError,
    WorkflowClosedError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
)

_HOST = socket.gethostname()


def owner_id() -> str:
    """`host:pid:nonce`: lets a worker on the same host see that an owner process died."""
    return f"{_HOST}:{os.getpid()}:{os.urandom(4).hex()}"


def _owner_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False  # another machine: only lease expiry can tell
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie (killed, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


class Store:
    """The journal database. Subclasses set up the engine and dialect-specific SQL."""

    dialect_label = "sql"

    def __init__(self, settings: SqlSettings) -> None:
        self.settings = settings
        self.url = settings.url
        self.engine: Engine = self._create_engine()
        self._upsert_stmt: Any = None
        self._fast_sql: tuple[str, tuple[str, ...] | None] | None = None
        try:
            with self._translate("opening"):
                self._writer: Connection = self.engine.connect()
                self._ensure_schema()
                if settings.outbox:
                    with self._write("creating the bus outbox tables") as conn:
                        create_outbox_tables(conn)
        except BaseException:
            self.engine.dispose()  # a refused database leaves no connection behind
            raise

    # -- dialect hooks ----------------------------------------------------------------
    def _create_engine(self) -> Engine:
        raise NotImplementedError

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT construct (it has on_conflict_do_update/nothing)."""
        raise NotImplementedError

    def _lock_schema(self, conn: Connection) -> None:
        """Serialize schema creation between processes."""

    def _describe_error(self, exc: DBAPIError, action: str) -> str:
        return f"{self.dialect_label} journal at {self.url}: {action} failed: {exc.orig}"

    # -- helpers ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise StorageError(self._describe_error(exc, action)) from None
        except SQLAlchemyError as exc:
            raise StorageError(f"journal at {self.url}: {action} failed: {exc}") from None

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        with self._translate(action):
            conn = self._writer
            if conn.invalidated or conn.closed:
                self._writer = conn = self.engine.connect()
            with conn.begin():
                yield conn

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

    # -- schema -----------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        # The common case, an up-to-date journal, costs one read; creating or migrating
        # takes the write lock (and on PostgreSQL an advisory lock) to run once.
        with self._translate("reading the schema version"), self.engine.connect() as conn:
            conn = conn.execution_options(bridge_readonly=True)
            with conn.begin():
                exists = self.engine.dialect.has_table(conn, s.meta.name)
                version = (
                    conn.execute(
                        select(s.meta.c.value).where(s.meta.c.key == "schema_version")
                    ).scalar()
                    if exists
                    else None
                )
        if version is not None and int(version) == s.SCHEMA_VERSION:
            return
        with self._write("creating the schema") as conn:
            self._lock_schema(conn)
            s.metadata.create_all(conn, checkfirst=True)
            row = conn.execute(
                select(s.meta.c.value).where(s.meta.c.key == "schema_version")
            ).first()
            if row is None:
                conn.execute(
                    s.meta.insert().values(key="schema_version", value=str(s.SCHEMA_VERSION))
                )
                return
            version = int(row[0])
            if version > s.SCHEMA_VERSION:
                raise StorageError(
                    f"journal at {self.url} has schema version {version}, newer than this "
                    f"durable-bridge understands ({s.SCHEMA_VERSION}); upgrade durable-bridge"
                )
            while version < s.SCHEMA_VERSION:
                step = s.MIGRATIONS.get(version)
                if step is None:
                    raise StorageError(
                        f"journal at {self.url} has schema version {version} and this "
                        f"durable-bridge has no migration from it; nothing was changed"
                    )
                step(conn)
                version += 1
            conn.execute(
                update(s.meta).where(s.meta.c.key == "schema_version").values(value=str(version))
            )

    def schema_version(self) -> int:
        with self._read("reading the schema version") as conn:
            return int(
                conn.execute(
                    select(s.meta.c.value).where(s.meta.c.key == "schema_version")
                ).scalar_one()
            )

    # -- runs -------------------------------------------------------------------------
    def create_workflow(self, id: str, name: str, input: dict[str, Any]) -> bool:
        """Insert a PENDING run unless `id` exists; True when inserted."""
        now = time.time()
        stmt = (
            self._insert(s.workflows)
            .values(
                id=id,
                name=name,
                status=Status.PENDING.value,
                input=codec.dumps(input),
                created_at=now,
                updated_at=now,
                executions=0,
                cancel_requested=False,
                blocked=False,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            # RETURNING, not rowcount: psycopg reports no rowcount for this INSERT, so on
            # PostgreSQL every start read as "already there".
            .returning(s.workflows.c.id)
        )
        with self._write("starting a workflow") as conn:
            created = conn.execute(stmt).first() is not None
            if not created:
                existing = conn.execute(
                    select(s.workflows.c.name).where(s.workflows.c.id == id)
                ).scalar_one()
                if existing != name:
                    raise WorkflowIdConflictError(
                        f"workflow id {id!r} is already used by a run of {existing!r}, "
                        f"not {name!r}; choose another id"
                    )
        return created

    def get_workflow(self, id: str) -> Row[Any]:
        with self._read("reading a workflow") as conn:
            row = conn.execute(select(s.workflows).where(s.workflows.c.id == id)).first()
        if row is None:
            raise WorkflowNotFoundError(id, self.url)
        return row

    def list_workflows(self, status: Status | None, limit: int) -> list[Row[Any]]:
        stmt = select(s.workflows).order_by(s.workflows.c.created_at.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(s.workflows.c.status == status.value)
        with self._read("listing workflows") as conn:
            return list(conn.execute(stmt))

    def load_steps(self, id: str) -> list[StepRecord]:
        with self._read("loading a journal") as conn:
            rows = conn.execute(
                select(s.steps).where(s.steps.c.workflow_id == id).order_by(s.steps.c.idx)
            ).all()
        return [_record(r) for r in rows]

    def signals_of(self, id: str) -> list[Row[Any]]:
        with self._read("reading signals") as conn:
            return list(
                conn.execute(
                    select(s.signals).where(s.signals.c.workflow_id == id).order_by(s.signals.c.seq)
                )
            )

    # -- worker side --------------------------------------------------------------------
    def claim(self, owner: str, names: Sequence[str], limit: int) -> list[Row[Any]]:
        """Lease up to `limit` runnable runs: pending, due, or with an expired lease."""
        now = time.time()
        w = s.workflows
        due = select(s.timers.c.workflow_id).where(s.timers.c.fire_at <= now)
        runnable = or_(
            w.c.status == Status.PENDING.value,
            and_(w.c.status == Status.RUNNING.value, w.c.lease_expires_at < now),
            and_(w.c.status == Status.WAITING.value, w.c.blocked.is_(False), w.c.id.in_(due)),
        )
        # SKIP LOCKED lets several PostgreSQL workers claim disjoint rows without waiting;
        # SQLite ignores it and serializes writers with BEGIN IMMEDIATE instead.
        chosen = (
            select(w.c.id)
            .where(w.c.name.in_(list(names)), runnable)
            .order_by(w.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # Two statements: PostgreSQL may re-run a LIMIT subquery inside `UPDATE ... WHERE
        # id IN (...)` once per row and lease more runs than `limit` (the bus outbox's test
        # caught that pattern there). The rows stay locked in between (FOR UPDATE on
        # PostgreSQL, the IMMEDIATE transaction on SQLite), so they are still runnable.
        lease = (
            update(w)
            .where(w.c.id.in_(bindparam("ids", expanding=True)))
            .values(
                status=Status.RUNNING.value,
                lease_owner=owner,
                lease_expires_at=now + self.settings.lease_seconds,
                executions=w.c.executions + 1,
                updated_at=now,
            )
            .returning(*w.c)
        )
        with self._write("claiming workflows") as conn:
            ids = list(conn.execute(chosen).scalars())
            return list(conn.execute(lease, {"ids": ids})) if ids else []

    def heartbeat(self, owner: str, ids: Sequence[str]) -> dict[str, bool]:
        """Extend the leases of runs `ids` that `owner` still holds (only runs it is
        executing: a lease renewed for a run nobody executes would strand it);
        {id: cancel_requested} of those still held."""
        if not ids:
            return {}
        now = time.time()
        w = s.workflows
        stmt = (
            update(w)
            .where(
                w.c.lease_owner == owner,
                w.c.status == Status.RUNNING.value,
                w.c.id.in_(list(ids)),
            )
            .values(lease_expires_at=now + self.settings.lease_seconds)
            .returning(w.c.id, w.c.cancel_requested)
        )
        with self._write("renewing leases") as conn:
            return {r.id: bool(r.cancel_requested) for r in conn.execute(stmt)}

    def expire_dead_owners(self) -> int:
        """Expire leases of owners on this host whose process is gone, so a restarted worker
        recovers a killed one's runs at once instead of after the lease runs out."""
        w = s.workflows
        with self._read("finding dead workers") as conn:
            owners = (
                conn.execute(
                    select(w.c.lease_owner).where(w.c.status == Status.RUNNING.value).distinct()
                )
                .scalars()
                .all()
            )
        dead = [o for o in owners if o and _owner_dead(o)]
        if not dead:
            return 0
        with self._write("expiring dead workers' leases") as conn:
            return conn.execute(
                update(w)
                .where(w.c.lease_owner.in_(dead), w.c.status == Status.RUNNING.value)
                .values(lease_expires_at=0.0)
            ).rowcount

    def release(self, owner: str, ids: Sequence[str] | None = None) -> None:
        """Hand runs back (graceful stop or an infrastructure error) for any worker."""
        w = s.workflows
        cond = [w.c.lease_owner == owner, w.c.status == Status.RUNNING.value]
        if ids is not None:
            cond.append(w.c.id.in_(list(ids)))
        with self._write("releasing leases") as conn:
            conn.execute(
                update(w)
                .where(*cond)
                .values(
                    status=Status.PENDING.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=time.time(),
                )
            )

    def unblock(self, names: Sequence[str]) -> None:
        """Give runs stopped by a NonDeterminismError one more try with this worker's code."""
        w = s.workflows
        with self._write("retrying blocked runs") as conn:
            conn.execute(
                update(w)
                .where(w.c.blocked.is_(True), w.c.name.in_(list(names)))
                .values(status=Status.PENDING.value, blocked=False, updated_at=time.time())
            )

    def next_timer(self) -> float | None:
        with self._read("reading timers") as conn:
            return conn.execute(select(func.min(s.timers.c.fire_at))).scalar()

    # -- journal writes -----------------------------------------------------------------
    def _step_upsert(self) -> Any:
        """Built once: constructing an ON CONFLICT statement costs more than running it."""
        if self._upsert_stmt is None:
            st = s.steps
            ins = self._insert(st)
            self._upsert_stmt = ins.on_conflict_do_update(
                index_elements=["workflow_id", "idx"],
                set_={
                    c: ins.excluded[c]
                    for c in (
                        "status",
                        "output",
                        "error",
                        "attempt",
                        "attempts",
                        "finished_at",
                        "fire_at",
                    )
                },
                # A final row is never overwritten: the journal is append-only once decided.
                # Spelled as literal SQL: a bound IN list cannot be used with executemany.
                where=text(
                    "bridge_steps.status NOT IN ("
                    + ", ".join(f"'{x}'" for x in sorted(FINAL_STEP_STATUSES))
                    + ")"
                ),
            )
        return self._upsert_stmt

    def _upsert_steps(self, conn: Connection, records: Sequence[StepRecord]) -> None:
        stmt = self._step_upsert()
        conn.execute(stmt, [_row(r) for r in records])
        arming = [r for r in records if r.status == WAITING and r.fire_at is not None]
        if arming:
            conn.execute(
                self._insert(s.timers).on_conflict_do_nothing(
                    index_elements=["workflow_id", "idx"]
                ),
                [
                    {"workflow_id": r.workflow_id, "idx": r.idx, "fire_at": r.fire_at}
                    for r in arming
                ],
            )
        settled = [r for r in records if r.status != WAITING and r.kind in ("sleep", "signal")]
        for r in settled:
            conn.execute(
                delete(s.timers).where(
                    s.timers.c.workflow_id == r.workflow_id, s.timers.c.idx == r.idx
                )
            )

    def write_batch(
        self, records: Sequence[StepRecord], finishes: Sequence[dict[str, Any]]
    ) -> tuple[list[bool], set[str]]:
        """Journal rows and run endings of many runs in one transaction (group commit).

        Each finish is fenced by the lease owner; the returned flags say which still held
        it, and the set names runs whose step was already decided differently (see
        `_clashes`).
        """
        if not finishes and all(_plain(r) for r in records):
            return [], self._write_steps_fast(records)
        held: list[bool] = []
        with self._write("writing the journal") as conn:
            if records:
                self._upsert_steps(conn, records)
            for f in finishes:
                held.append(self._finish(conn, **f))
        return held, set()

    def _write_steps_fast(self, records: Sequence[StepRecord]) -> set[str]:
        """The hot path: finished steps only, on the DBAPI cursor.

        The statement is the same Core upsert, compiled once; executing it below
        SQLAlchemy's Connection saves ~0.2 ms of dispatch per commit, which is most of this
        executor's cost over a bare INSERT+COMMIT (docs/architecture.md).
        """
        sql, order = self._fast_upsert()
        rows = [_row(r) for r in records]
        params = [tuple(row[k] for k in order) for row in rows] if order else rows
        with self._translate("writing the journal"):
            conn = self._writer
            if conn.invalidated or conn.closed:
                self._writer = conn = self.engine.connect()
            dbapi = conn.connection.dbapi_connection
            self._raw_begin(dbapi)
            try:
                cur = dbapi.cursor()
                cur.executemany(sql, params)
                written = cur.rowcount
                cur.close()
            except BaseException:
                self._raw_rollback(dbapi)
                raise
            self._raw_commit(dbapi)
        if written != len(rows):
            return self._clashes(rows)
        return set()

    def _clashes(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Runs whose row was already final with another outcome: another worker took the
        run over and decided that step first, so this worker's view of the run is stale."""
        st = s.steps
        clashed: set[str] = set()
        with self._read("checking journal rows") as conn:
            for row in rows:
                stored = conn.execute(
                    select(st.c.output, st.c.error).where(
                        st.c.workflow_id == row["workflow_id"], st.c.idx == row["idx"]
                    )
                ).first()
                if stored is not None and (stored.output, stored.error) != (
                    row["output"],
                    row["error"],
                ):
                    clashed.add(row["workflow_id"])
        return clashed

    def _fast_upsert(self) -> tuple[str, tuple[str, ...] | None]:
        if self._fast_sql is None:
            compiled = self._step_upsert().compile(dialect=self.engine.dialect)
            order = tuple(compiled.positiontup) if compiled.positional else None
            self._fast_sql = (str(compiled), order)
        return self._fast_sql

    def _raw_begin(self, dbapi: Any) -> None:
        """Start a transaction on the bare DBAPI connection (dialects differ)."""

    def _raw_commit(self, dbapi: Any) -> None:
        dbapi.commit()

    def _raw_rollback(self, dbapi: Any) -> None:
        dbapi.rollback()

    def _finish(
        self,
        conn: Connection,
        *,
        id: str,
        owner: str,
        status: Status,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        w = s.workflows
        name = conn.execute(
            update(w)
            .where(w.c.id == id, w.c.lease_owner == owner)
            .values(
                status=status.value,
                result=None if result is None else codec.dumps(result),
                error=None if error is None else codec.dumps(error),
                lease_owner=None,
                lease_expires_at=None,
                waiting_for=None,
                updated_at=time.time(),
            )
            .returning(w.c.name)
        ).scalar()
        if name is None:
            return False
        conn.execute(delete(s.timers).where(s.timers.c.workflow_id == id))
        if self.settings.outbox:
            # Same transaction as the run's ending: the event exists iff the run ended.
            publish_in(
                conn,
                completion_event(
                    workflow_id=id,
                    workflow=name,
                    engine="sql",
                    status=status,
                    result=result,
                    error=error,
                ),
            )
        return True

    def suspend(
        self,
        id: str,
        owner: str,
        *,
        waiting_for: str | None,
        error: dict[str, Any] | None,
        blocked: bool,
    ) -> bool:
        """Park a run. A signal that arrived while it was running makes it PENDING again
        at once, so a wake-up is never lost between the check and the park."""
        w = s.workflows
        with self._write("suspending a workflow") as conn:
            parked = (
                conn.execute(
                    update(w)
                    .where(w.c.id == id, w.c.lease_owner == owner)
                    .values(
                        status=Status.WAITING.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        waiting_for=waiting_for,
                        blocked=blocked,
                        error=None if error is None else codec.dumps(error),
                        updated_at=time.time(),
                    )
                ).rowcount
                == 1
            )
            if parked and not blocked:
                pending = conn.execute(
                    select(s.signals.c.seq)
                    .where(s.signals.c.workflow_id == id, s.signals.c.consumed_step.is_(None))
                    .limit(1)
                ).first()
                if pending is not None:
                    conn.execute(update(w).where(w.c.id == id).values(status=Status.PENDING.value))
        return parked

    def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        sg = s.signals
        with self._write("taking a signal") as conn:
            row = conn.execute(
                select(sg.c.seq, sg.c.payload)
                .where(
                    sg.c.workflow_id == record.workflow_id,
                    sg.c.name == record.name,
                    sg.c.consumed_step.is_(None),
                )
                .order_by(sg.c.seq)
                .limit(1)
                .with_for_update()
            ).first()
            if row is None:
                self._upsert_steps(conn, [record])
                return False, None
            conn.execute(update(sg).where(sg.c.seq == row.seq).values(consumed_step=record.idx))
            payload = codec.loads(row.payload)
            done = StepRecord(
                **{
                    **record.__dict__,
                    "status": "completed",
                    "output": payload,
                    "finished_at": time.time(),
                }
            )
            self._upsert_steps(conn, [done])
            return True, payload

    # -- client side --------------------------------------------------------------------
    def _lock_open_run(self, conn: Connection, id: str, action: str) -> str:
        """Lock run `id`'s row and return its status; refuse unknown or finished runs.

        `suspend` takes the same row lock, so a signal and a park never miss each other.
        """
        w = s.workflows
        status = conn.execute(select(w.c.status).where(w.c.id == id).with_for_update()).scalar()
        if status is None:
            raise WorkflowNotFoundError(id, self.url)
        if Status(status).is_terminal:
            raise WorkflowClosedError(id, status, action)
        return status

    def add_signal(self, id: str, name: str, payload: Any) -> None:
        w = s.workflows
        with self._write("sending a signal") as conn:
            self._lock_open_run(conn, id, "signal")
            conn.execute(
                s.signals.insert().values(
                    workflow_id=id, name=name, payload=codec.dumps(payload), created_at=time.time()
                )
            )
            conn.execute(
                update(w)
                .where(w.c.id == id, w.c.status == Status.WAITING.value, w.c.blocked.is_(False))
                .values(status=Status.PENDING.value, updated_at=time.time())
            )

    def request_cancel(self, id: str) -> None:
        w = s.workflows
        with self._write("cancelling a workflow") as conn:
            status = self._lock_open_run(conn, id, "cancel")
            values: dict[str, Any] = {"cancel_requested": True, "updated_at": time.time()}
            if status == Status.WAITING.value:
                values["status"] = Status.PENDING.value  # wake it so the workflow sees the cancel
            conn.execute(update(w).where(w.c.id == id).values(**values))


def _plain(r: StepRecord) -> bool:
    """A step row that arms or settles no timer (most of them)."""
    return r.status != WAITING and r.kind not in ("sleep", "signal")


def _row(r: StepRecord) -> dict[str, Any]:
    return {
        "workflow_id": r.workflow_id,
        "idx": r.idx,
        "kind": r.kind,
        "name": r.name,
        "status": r.status,
        "digest": r.digest,
        "args": None if r.args is None else codec.dumps(r.args),
        "output": None if r.output is None else codec.dumps(r.output),
        "error": None if r.error is None else codec.dumps(r.error),
        "attempt": r.attempt,
        "attempts": codec.dumps(r.attempts) if r.attempts else None,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "fire_at": r.fire_at,
    }


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _record(r: Row[Any]) -> StepRecord:
    # Called once per journal row on every resume: plain json.loads, nothing more.
    return StepRecord(
        workflow_id=r.workflow_id,
        idx=r.idx,
        kind=r.kind,
        name=r.name,
        status=r.status,
        digest=r.digest,
        args=_json(r.args),
        output=_json(r.output),
        error=_json(r.error),
        attempt=r.attempt,
        attempts=_json(r.attempts) or [],
        started_at=r.started_at,
        finished_at=r.finished_at,
        fire_at=r.fire_at,
    )


def open_store(settings: SqlSettings) -> Store:
    """The Store for `settings.url`, importing only the dialect module it needs."""
    scheme = settings.url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        from backends.sql._store_sqlite import SqliteStore

        return SqliteStore(settings)
    if scheme in ("postgresql", "postgres"):
        from backends.sql._store_postgres import PostgresStore

        return PostgresStore(settings)
    raise StorageError(
        f"sql.url {settings.url!r}: unsupported database; use sqlite:///PATH or "
        f"postgresql+psycopg://USER@HOST/DB"
    )
