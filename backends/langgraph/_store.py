"""Storage for the LangGraph backend: LangGraph's checkpointer plus the bridge's tables.

`open_store(settings)` dispatches on `langgraph.url` to a dialect subclass
(`_store_sqlite.py`, `_store_postgres.py`) that builds two things on the same database: the
SQLAlchemy engine for the bridge's tables (`_schema.py`) and LangGraph's own checkpointer
(SqliteSaver or PostgresSaver, made durable in `_saver.py`). The bridge's statements are
SQLAlchemy Core and shared; none of them is on a step's hot path, which is LangGraph's task
write alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
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

from backends.langgraph import _schema as s
from backends.langgraph._saver import DurableSaverMixin
from bridge import codec
from bridge._replay import COMPLETED, FINAL_STEP_STATUSES, SIGNAL, SLEEP, TIMED_OUT, StepRecord
from bridge.backend import Status
from bridge.config import LangGraphSettings
from bridge.errors import (
    StorageError,
    WorkflowClosedError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
)

#: The final status of a wait answered with a cancellation (the bridge's own status; the
#: sql journal has no such row because it delivers a cancel at the next operation instead).
CANCELLED = "cancelled"
#: Statuses a wait row never leaves once written.
SETTLED = FINAL_STEP_STATUSES | {CANCELLED}

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
    """The bridge's tables and LangGraph's saver on one database."""

    dialect_label = "sql"
    saver: DurableSaverMixin

    def __init__(self, settings: LangGraphSettings) -> None:
        self.settings = settings
        self.url = settings.url
        self.engine: Engine = self._create_engine()
        self._upsert_stmt: Any = None
        try:
            with self._translate("opening"):
                self._writer: Connection = self.engine.connect()
                self._ensure_schema()
            self.saver = self._create_saver()
        except BaseException:
            self.close()  # a refused database leaves no connection behind
            raise

    # -- dialect hooks ------------------------------------------------------------------
    def _create_engine(self) -> Engine:
        raise NotImplementedError

    def _create_saver(self) -> DurableSaverMixin:
        """LangGraph's saver on the same database, with its tables set up."""
        raise NotImplementedError

    def _close_saver(self) -> None:
        """Close the saver's own connection."""

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT construct (it has on_conflict_do_update/nothing)."""
        raise NotImplementedError

    def _lock_schema(self, conn: Connection) -> None:
        """Serialize schema creation between processes."""

    def _describe_error(self, exc: DBAPIError, action: str) -> str:
        return f"{self.dialect_label} database at {self.url}: {action} failed: {exc.orig}"

    # -- helpers ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise StorageError(self._describe_error(exc, action)) from None
        except SQLAlchemyError as exc:
            raise StorageError(f"database at {self.url}: {action} failed: {exc}") from None

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
            self._close_saver()
        with contextlib.suppress(Exception):
            self._writer.close()
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        with self._write("creating the bridge's tables") as conn:
            self._lock_schema(conn)
            s.metadata.create_all(conn, checkfirst=True)
            row = conn.execute(
                select(s.meta.c.value).where(s.meta.c.key == "schema_version")
            ).first()
            if row is None:
                conn.execute(
                    s.meta.insert().values(key="schema_version", value=str(s.SCHEMA_VERSION))
                )
            elif int(row[0]) > s.SCHEMA_VERSION:
                raise StorageError(
                    f"database at {self.url} has bridge schema version {row[0]}, newer than "
                    f"this durable-bridge understands ({s.SCHEMA_VERSION}); upgrade "
                    f"durable-bridge"
                )

    # -- runs ---------------------------------------------------------------------------
    def create_run(self, id: str, name: str, input: dict[str, Any]) -> bool:
        """Insert a PENDING run unless `id` exists; True when inserted."""
        now = time.time()
        stmt = (
            self._insert(s.runs)
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
            .returning(s.runs.c.id)
        )
        with self._write("starting a workflow") as conn:
            created = conn.execute(stmt).first() is not None
            if not created:
                existing = conn.execute(select(s.runs.c.name).where(s.runs.c.id == id)).scalar_one()
                if existing != name:
                    raise WorkflowIdConflictError(
                        f"workflow id {id!r} is already used by a run of {existing!r}, "
                        f"not {name!r}; choose another id"
                    )
        return created

    def get_run(self, id: str) -> Row[Any]:
        with self._read("reading a workflow") as conn:
            row = conn.execute(select(s.runs).where(s.runs.c.id == id)).first()
        if row is None:
            raise WorkflowNotFoundError(id, self.url)
        return row

    def list_runs(self, status: Status | None, limit: int) -> list[Row[Any]]:
        stmt = select(s.runs).order_by(s.runs.c.created_at.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(s.runs.c.status == status.value)
        with self._read("listing workflows") as conn:
            return list(conn.execute(stmt))

    def load_steps(self, id: str) -> list[StepRecord]:
        """The bridge's own journal rows of run `id` (waits, patches, retrying steps)."""
        with self._read("loading a journal") as conn:
            rows = conn.execute(
                select(s.steps).where(s.steps.c.workflow_id == id).order_by(s.steps.c.idx)
            ).all()
        return [_record(r) for r in rows]

    # -- worker side --------------------------------------------------------------------
    def claim(self, owner: str, names: Sequence[str], limit: int) -> list[Row[Any]]:
        """Lease up to `limit` runnable runs: pending, due, or with an expired lease."""
        now = time.time()
        r = s.runs
        due = select(s.timers.c.workflow_id).where(s.timers.c.fire_at <= now)
        runnable = or_(
            r.c.status == Status.PENDING.value,
            and_(r.c.status == Status.RUNNING.value, r.c.lease_expires_at < now),
            and_(r.c.status == Status.WAITING.value, r.c.blocked.is_(False), r.c.id.in_(due)),
        )
        # SKIP LOCKED lets several PostgreSQL workers claim disjoint rows without waiting;
        # SQLite ignores it and serializes writers with BEGIN IMMEDIATE instead.
        chosen = (
            select(r.c.id)
            .where(r.c.name.in_(list(names)), runnable)
            .order_by(r.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # Two statements: PostgreSQL may re-run a LIMIT subquery inside `UPDATE ... WHERE
        # id IN (...)` once per row and lease more runs than `limit` (the bus outbox's test
        # caught that pattern there). The rows stay locked in between (FOR UPDATE on
        # PostgreSQL, the IMMEDIATE transaction on SQLite), so they are still runnable.
        lease = (
            update(r)
            .where(r.c.id.in_(bindparam("ids", expanding=True)))
            .values(
                status=Status.RUNNING.value,
                lease_owner=owner,
                lease_expires_at=now + self.settings.lease_seconds,
                executions=r.c.executions + 1,
                updated_at=now,
            )
            .returning(*r.c)
        )
        with self._write("claiming workflows") as conn:
            ids = list(conn.execute(chosen).scalars())
            return list(conn.execute(lease, {"ids": ids})) if ids else []

    def heartbeat(self, owner: str, ids: Sequence[str]) -> dict[str, bool]:
        """Extend `owner`'s leases of runs `ids` (the ones it is executing; a run it gave
        up on but could not release must expire); {id: cancel_requested} of those held."""
        if not ids:
            return {}
        r = s.runs
        stmt = (
            update(r)
            .where(
                r.c.lease_owner == owner,
                r.c.status == Status.RUNNING.value,
                r.c.id.in_(list(ids)),
            )
            .values(lease_expires_at=time.time() + self.settings.lease_seconds)
            .returning(r.c.id, r.c.cancel_requested)
        )
        with self._write("renewing leases") as conn:
            return {row.id: bool(row.cancel_requested) for row in conn.execute(stmt)}

    def expire_dead_owners(self) -> int:
        """Expire leases of owners on this host whose process is gone, so a restarted worker
        recovers a killed one's runs at once instead of after the lease runs out."""
        r = s.runs
        with self._read("finding dead workers") as conn:
            owners = (
                conn.execute(
                    select(r.c.lease_owner).where(r.c.status == Status.RUNNING.value).distinct()
                )
                .scalars()
                .all()
            )
        dead = [o for o in owners if o and _owner_dead(o)]
        if not dead:
            return 0
        with self._write("expiring dead workers' leases") as conn:
            return conn.execute(
                update(r)
                .where(r.c.lease_owner.in_(dead), r.c.status == Status.RUNNING.value)
                .values(lease_expires_at=0.0)
            ).rowcount

    def release(self, owner: str, ids: Sequence[str] | None = None) -> None:
        """Hand runs back (graceful stop or an infrastructure error) for any worker."""
        r = s.runs
        cond = [r.c.lease_owner == owner, r.c.status == Status.RUNNING.value]
        if ids is not None:
            cond.append(r.c.id.in_(list(ids)))
        with self._write("releasing leases") as conn:
            conn.execute(
                update(r)
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
        r = s.runs
        with self._write("retrying blocked runs") as conn:
            conn.execute(
                update(r)
                .where(r.c.blocked.is_(True), r.c.name.in_(list(names)))
                .values(status=Status.PENDING.value, blocked=False, updated_at=time.time())
            )

    def next_timer(self) -> float | None:
        with self._read("reading timers") as conn:
            return conn.execute(select(func.min(s.timers.c.fire_at))).scalar()

    def finish(
        self,
        id: str,
        owner: str,
        *,
        status: Status,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Record a run's end, fenced by the lease owner; False when the lease was lost."""
        r = s.runs
        with self._write("finishing a workflow") as conn:
            done = (
                conn.execute(
                    update(r)
                    .where(r.c.id == id, r.c.lease_owner == owner)
                    .values(
                        status=status.value,
                        result=None if result is None else codec.dumps(result),
                        error=None if error is None else codec.dumps(error),
                        lease_owner=None,
                        lease_expires_at=None,
                        waiting_for=None,
                        blocked=False,
                        updated_at=time.time(),
                    )
                ).rowcount
                == 1
            )
            if done:
                conn.execute(delete(s.timers).where(s.timers.c.workflow_id == id))
        return done

    def park(
        self,
        id: str,
        owner: str,
        *,
        waiting_for: str | None,
        error: dict[str, Any] | None = None,
        blocked: bool = False,
    ) -> bool:
        """Park a run. A cancel, or a signal named `waiting_for`, that arrived while it ran
        makes it PENDING again at once, so a wake-up is never lost between the check and
        the park. (Other signals wait: waking for them would replay the run for nothing.)"""
        r = s.runs
        with self._write("suspending a workflow") as conn:
            row = conn.execute(
                select(r.c.lease_owner, r.c.cancel_requested).where(r.c.id == id).with_for_update()
            ).first()
            if row is None or row.lease_owner != owner:
                return False
            woken = not blocked and (
                row.cancel_requested
                or conn.execute(
                    select(s.signals.c.seq)
                    .where(
                        s.signals.c.workflow_id == id,
                        s.signals.c.name == waiting_for,
                        s.signals.c.consumed_step.is_(None),
                    )
                    .limit(1)
                ).first()
                is not None
            )
            conn.execute(
                update(r)
                .where(r.c.id == id)
                .values(
                    status=(Status.PENDING if woken else Status.WAITING).value,
                    lease_owner=None,
                    lease_expires_at=None,
                    waiting_for=waiting_for,
                    blocked=blocked,
                    error=None if error is None else codec.dumps(error),
                    updated_at=time.time(),
                )
            )
        return True

    # -- journal rows -------------------------------------------------------------------
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
                # A settled row is never overwritten: the journal is append-only once decided.
                where=text(
                    "bridge_lg_steps.status NOT IN ("
                    + ", ".join(f"'{x}'" for x in sorted(SETTLED))
                    + ")"
                ),
            )
        return self._upsert_stmt

    def _upsert_steps(self, conn: Connection, records: Sequence[StepRecord]) -> None:
        conn.execute(self._step_upsert(), [_row(r) for r in records])
        arming = [r for r in records if r.status not in SETTLED and r.fire_at is not None]
        waits = [r for r in arming if r.kind in (SLEEP, SIGNAL)]
        if waits:
            conn.execute(
                self._insert(s.timers).on_conflict_do_nothing(
                    index_elements=["workflow_id", "idx"]
                ),
                [{"workflow_id": r.workflow_id, "idx": r.idx, "fire_at": r.fire_at} for r in waits],
            )
        for r in records:
            if r.status in SETTLED and r.kind in (SLEEP, SIGNAL):
                conn.execute(
                    delete(s.timers).where(
                        s.timers.c.workflow_id == r.workflow_id, s.timers.c.idx == r.idx
                    )
                )

    def write_steps(self, records: Sequence[StepRecord]) -> None:
        """Upsert journal rows (and arm or settle their timers) in one transaction."""
        with self._write("writing the journal") as conn:
            self._upsert_steps(conn, records)

    def settle_wait(self, rec: StepRecord) -> StepRecord | None:
        """Decide the outcome of the wait `rec`, durably, before the thread is resumed.

        A signal wait takes the oldest pending signal of its name; a due timer fires (a
        sleep completes, a signal wait times out); a requested cancel answers any wait.
        The settled row is written in the same transaction as the signal it consumed, so a
        crash between this and the resume re-delivers the same answer. None: nothing yet.
        """
        now = time.time()
        sg = s.signals
        with self._write("answering a wait") as conn:
            current = conn.execute(
                select(s.steps).where(
                    s.steps.c.workflow_id == rec.workflow_id, s.steps.c.idx == rec.idx
                )
            ).first()
            if current is not None and current.status in SETTLED:
                return _record(current)
            settled: StepRecord | None = None
            if rec.kind == SIGNAL:
                row = conn.execute(
                    select(sg.c.seq, sg.c.payload)
                    .where(
                        sg.c.workflow_id == rec.workflow_id,
                        sg.c.name == rec.name,
                        sg.c.consumed_step.is_(None),
                    )
                    .order_by(sg.c.seq)
                    .limit(1)
                    .with_for_update()
                ).first()
                if row is not None:
                    conn.execute(
                        update(sg).where(sg.c.seq == row.seq).values(consumed_step=rec.idx)
                    )
                    settled = replace(
                        rec, status=COMPLETED, output=codec.loads(row.payload), finished_at=now
                    )
            due = rec.fire_at is not None and rec.fire_at <= now
            if settled is None and due:
                settled = replace(
                    rec, status=COMPLETED if rec.kind == SLEEP else TIMED_OUT, finished_at=now
                )
            if (
                settled is None
                and conn.execute(
                    select(s.runs.c.cancel_requested).where(s.runs.c.id == rec.workflow_id)
                ).scalar()
            ):
                settled = replace(rec, status=CANCELLED, finished_at=now)
            if settled is not None:
                self._upsert_steps(conn, [settled])
            return settled

    # -- client side --------------------------------------------------------------------
    def _lock_open_run(self, conn: Connection, id: str, action: str) -> str:
        """Lock run `id`'s row and return its status; refuse unknown or finished runs.

        `park` takes the same row lock, so a signal and a park never miss each other.
        """
        r = s.runs
        status = conn.execute(select(r.c.status).where(r.c.id == id).with_for_update()).scalar()
        if status is None:
            raise WorkflowNotFoundError(id, self.url)
        if Status(status).is_terminal:
            raise WorkflowClosedError(id, status, action)
        return str(status)

    def add_signal(self, id: str, name: str, payload: Any) -> None:
        r = s.runs
        with self._write("sending a signal") as conn:
            self._lock_open_run(conn, id, "signal")
            conn.execute(
                s.signals.insert().values(
                    workflow_id=id, name=name, payload=codec.dumps(payload), created_at=time.time()
                )
            )
            conn.execute(
                update(r)
                .where(r.c.id == id, r.c.status == Status.WAITING.value, r.c.blocked.is_(False))
                .values(status=Status.PENDING.value, updated_at=time.time())
            )

    def request_cancel(self, id: str) -> None:
        r = s.runs
        with self._write("cancelling a workflow") as conn:
            status = self._lock_open_run(conn, id, "cancel")
            values: dict[str, Any] = {"cancel_requested": True, "updated_at": time.time()}
            if status == Status.WAITING.value:
                values["status"] = Status.PENDING.value  # wake it to answer its wait
            conn.execute(update(r).where(r.c.id == id).values(**values))


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


def _record(r: Row[Any]) -> StepRecord:
    return StepRecord(
        workflow_id=r.workflow_id,
        idx=r.idx,
        kind=r.kind,
        name=r.name,
        status=r.status,
        digest=r.digest,
        args=codec.loads(r.args),
        output=codec.loads(r.output),
        error=codec.loads(r.error),
        attempt=r.attempt,
        attempts=codec.loads(r.attempts) or [],
        started_at=r.started_at,
        finished_at=r.finished_at,
        fire_at=r.fire_at,
    )


def open_store(settings: LangGraphSettings) -> Store:
    """The Store for `settings.url`, importing only the dialect module it needs."""
    scheme = settings.url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        from backends.langgraph._store_sqlite import SqliteStore

        return SqliteStore(settings)
    if scheme in ("postgresql", "postgres"):
        from backends.langgraph._store_postgres import PostgresStore

        return PostgresStore(settings)
    raise StorageError(
        f"langgraph.url {settings.url!r}: unsupported database; use sqlite:///PATH "
        f"(SqliteSaver) or postgresql://USER@HOST/DB (PostgresSaver)"
    )
