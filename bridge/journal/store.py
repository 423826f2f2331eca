"""The journal store every journal-keeping backend shares: runs, leases, steps, waits.

`JournalStore` holds every statement about runs (create, read, list, end, park), signals and
cancellation; it inherits the leases (claim, heartbeat, expire dead owners, release, unblock:
`_leases.py`), the journal rows (the step upsert, timers armed and settled with their rows,
taking a signal: `_steps.py`) and the database itself (dialect, transactions, schema:
`_database.py`). A backend subclasses it with class-level knobs (its schema and table names,
its settings section, the wording of its errors) and adds only its own statements: the sql
backend its group-commit hot path, the langgraph backend its saver and the settling of an
interrupted wait.

The dialect (SQLite or PostgreSQL) is an object from `bridge._sqlengine`. Every call is
synchronous, on the worker's event-loop thread: one INSERT+COMMIT costs ~0.2 ms on SQLite,
less than a thread hop would add (docs/architecture.md).

Interceptors (`bridge.interceptors`) see two moments inside the store's own transactions:
`storage_opened(conn)` when the store opens (so a feature can create tables beside the
journal) and `run_ended(conn, RunEnded)` in the transaction that writes a run's final
status (what it writes commits if and only if the run ended); and one after it,
`run_ended_committed(RunEnded)` once that transaction committed (tracing's run span).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, not_, select, update

from bridge import codec
from bridge.backend import Status
from bridge.errors import (
    ChildWorkflowError,
    WorkflowClosedError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
)
from bridge.interceptors import RunEnded
from bridge.journal._attributes import read_attributes, search_condition, write_attributes
from bridge.journal._leases import LeaseStatements
from bridge.journal._permits import PermitStatements
from bridge.journal._steps import StepStatements, step_record, step_row, wait_names
from bridge.journal.context import (
    ATTRIBUTES,
    CHILD,
    CHILD_CANCEL,
    COMPLETED,
    CONTINUED,
    DEADLINE,
    DEADLINE_IDX,
    FAILED,
    FINAL_STEP_STATUSES,
    HEADERS,
    HEADERS_IDX,
    PARENT,
    PARENT_IDX,
    SIGNAL,
    UPDATE_REJECTED,
    UPDATE_REQUEST,
    WAITING,
    StepRecord,
)
from bridge.search import Node

__all__ = [
    "CONTINUED_MARK",
    "JournalStore",
    "archive_id",
    "generation_of",
    "run_row",
    "step_record",
    "step_row",
]

#: What an earlier generation's run row says in `waiting_for` (with status COMPLETED): it
#: ended by continuing as new. `list_runs` leaves such rows out; `history` ends them with a
#: `continued_as_new` event.
CONTINUED_MARK = "continued as new"


def archive_id(id: str, generation: int) -> str:
    """The id generation `generation` of run `id` is kept under once it continued as new:
    `id@0`, `id@1`, ... (so `bridge history id@0` shows the first). An id too long to take
    the suffix within the engines' limits (`bridge.limits`) is replaced by its digest."""
    kept = f"{id}@{generation}"
    if len(kept) > 255 or len(kept.encode()) > 1000:
        kept = f"{hashlib.sha256(id.encode()).hexdigest()[:40]}@{generation}"
    return kept


def run_row(steps: Sequence[StepRecord], kind: str) -> StepRecord | None:
    """The row of `kind` among a journal's rows below index 0, which hold settings of the
    run rather than operations and come first in index order (headers at -4, a parent
    link at -3, a deadline at -2, the continuation at -1)."""
    for s in steps:
        if s.idx >= 0:
            return None
        if s.kind == kind:
            return s
    return None


def generation_of(steps: Sequence[StepRecord]) -> int:
    """Which generation a journal is (0 for a run that never continued as new), from the
    `continued` row a continuation writes at index -1."""
    first = run_row(steps, CONTINUED)
    if first is not None and isinstance(first.args, dict):
        return int(first.args.get("generation", 0))
    return 0


class JournalStore(LeaseStatements, StepStatements, PermitStatements):
    """The journal database of one backend; see the module docstring."""

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self,
        id: str,
        name: str,
        input: dict[str, Any],
        *,
        execution_timeout: float | None = None,
        search_attributes: Mapping[str, Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Insert a PENDING run unless `id` exists; True when inserted.

        `search_attributes` (`bridge.search.encode_attributes` JSON) are written with a new
        run, in its transaction (`bridge.journal._attributes`); `headers` (the start's
        trace context, `StartCall.headers`) as its `headers` row at index -4.

        With `execution_timeout` (seconds) the run gets its deadline in the same
        transaction: a `deadline` journal row at index -2 (read by the context that
        executes it) and a timer at that index, which makes a parked run claimable once the
        deadline passes, so the deadline survives a restart and needs no new column."""
        runs = self.schema.runs
        now = time.time()
        with self._write("starting a workflow") as conn:
            created = self.insert_run(conn, id, name, input, now)
            if not created:
                existing = conn.execute(select(runs.c.name).where(runs.c.id == id)).scalar_one()
                if existing != name:
                    raise WorkflowIdConflictError(
                        f"workflow id {id!r} is already used by a run of {existing!r}, "
                        f"not {name!r}; choose another id"
                    )
            else:
                if execution_timeout is not None:
                    self._arm_deadline(conn, id, name, now + execution_timeout, execution_timeout)
                if search_attributes:
                    write_attributes(conn, self.schema.attributes, id, search_attributes)
                if headers:
                    self._write_headers(conn, id, name, headers, now)
        return created

    def _write_headers(
        self, conn: Connection, id: str, name: str, headers: Mapping[str, str], now: float
    ) -> None:
        """Write run `id`'s `headers` row (see `HEADERS` in `bridge.journal.context`)."""
        self._insert_run_row(conn, id, name, HEADERS_IDX, HEADERS, dict(headers), now=now)

    def _insert_run_row(
        self,
        conn: Connection,
        id: str,
        name: str,
        idx: int,
        kind: str,
        args: dict[str, Any],
        *,
        now: float | None = None,
        fire_at: float | None = None,
    ) -> None:
        """Insert one of run `id`'s settled rows below index 0 (a setting of the run, not an
        operation: its deadline, its start headers)."""
        row = StepRecord(
            workflow_id=id,
            idx=idx,
            kind=kind,
            name=name,
            status=COMPLETED,
            args=args,
            started_at=time.time() if now is None else now,
            finished_at=now,
            fire_at=fire_at,
        )
        conn.execute(self.schema.steps.insert(), [step_row(row)])

    def _read_headers(self, conn: Connection, id: str) -> dict[str, str]:
        """Run `id`'s start headers (its `headers` row), or {}."""
        st = self.schema.steps
        stored = conn.execute(
            select(st.c.args).where(
                st.c.workflow_id == id, st.c.idx == HEADERS_IDX, st.c.kind == HEADERS
            )
        ).scalar()
        found = codec.loads(stored) if stored is not None else None
        return dict(found) if isinstance(found, dict) else {}

    def insert_run(
        self, conn: Connection, id: str, name: str, input: dict[str, Any], now: float
    ) -> bool:
        """Insert a PENDING run in `conn`'s transaction unless `id` exists; True when
        inserted. The one run insert of a start, a child's start and a schedule's fire."""
        runs = self.schema.runs
        stmt = (
            self.dialect.insert(runs)
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
            .returning(runs.c.id)
        )
        return conn.execute(stmt).first() is not None

    def _upsert_steps(self, conn: Connection, records: Sequence[StepRecord]) -> None:
        """The step upsert, plus the search attributes an ATTRIBUTES row sets, applied in
        the same transaction (in journal order), so the attributes table always says what
        the journal says. Every backend writes such rows through here (see APPLIED_KINDS).

        What is applied is what the journal holds from the first such row on, in index
        order: a worker that lost its lease and writes late can neither put its own values
        in nor bring older ones back over later changes."""
        super()._upsert_steps(conn, records)
        first: dict[str, int] = {}
        for rec in records:
            if rec.kind == ATTRIBUTES:
                first[rec.workflow_id] = min(rec.idx, first.get(rec.workflow_id, rec.idx))
        st = self.schema.steps
        for workflow_id, idx in first.items():
            rows = conn.execute(
                select(st.c.args)
                .where(st.c.workflow_id == workflow_id, st.c.kind == ATTRIBUTES, st.c.idx >= idx)
                .order_by(st.c.idx)
            ).all()
            for row in rows:
                stored = codec.loads(row.args) if row.args is not None else {}
                write_attributes(
                    conn, self.schema.attributes, workflow_id, stored.get("attributes") or {}
                )

    def read_attributes(self, ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """The search attributes of runs `ids`, `{id: encoded}`; runs without are left out."""
        if not ids or not self._has_attributes():
            return {}
        with self._read("reading search attributes") as conn:
            return read_attributes(conn, self.schema.attributes, ids)

    def _has_attributes(self) -> bool:
        """Whether the attributes table exists: always once this store could write (it
        creates feature tables on opening); a read-only journal an older release wrote
        has none, and then no run has attributes."""
        found: bool | None = self.__dict__.get("_attributes_table")
        if found is None:
            found = not self.read_only
            if not found:
                with self._read("checking the attributes table") as conn:
                    found = self.engine.dialect.has_table(conn, self.schema.attributes.name)
            self.__dict__["_attributes_table"] = found
        return found

    def _arm_deadline(
        self, conn: Connection, id: str, name: str, deadline: float, timeout: float
    ) -> None:
        """Write run `id`'s deadline row and its timer (see `create_run`)."""
        self._insert_run_row(
            conn, id, name, DEADLINE_IDX, DEADLINE, {"seconds": timeout}, fire_at=deadline
        )
        conn.execute(
            self.schema.timers.insert().values(workflow_id=id, idx=DEADLINE_IDX, fire_at=deadline)
        )

    def get_run(self, id: str) -> Row[Any]:
        runs = self.schema.runs
        with self._read("reading a workflow") as conn:
            row = conn.execute(select(runs).where(runs.c.id == id)).first()
        if row is None:
            raise WorkflowNotFoundError(id, self.url)
        return row

    def list_runs(
        self, status: Status | None, limit: int, query: Node | None = None
    ) -> list[Row[Any]]:
        """The newest `limit` runs, with `status` and matching `query` (a parsed
        `bridge.search` query) when given."""
        runs = self.schema.runs
        stmt = (
            select(runs)
            .where(
                # earlier generations of runs that continued as new are not runs of their own
                not_(
                    and_(
                        runs.c.status == Status.COMPLETED.value,
                        runs.c.waiting_for.is_not(None),
                        runs.c.waiting_for == CONTINUED_MARK,
                    )
                )
            )
            .order_by(runs.c.created_at.desc())
            .limit(limit)
        )
        if status is not None:
            stmt = stmt.where(runs.c.status == status.value)
        if query is not None:
            table = self.schema.attributes if self._has_attributes() else None
            stmt = stmt.where(search_condition(query, runs, table))
        with self._read("listing workflows") as conn:
            return list(conn.execute(stmt))

    def load_steps(self, id: str) -> list[StepRecord]:
        """The journal rows of run `id`, by index."""
        steps = self.schema.steps
        with self._read("loading a journal") as conn:
            rows = conn.execute(
                select(steps).where(steps.c.workflow_id == id).order_by(steps.c.idx)
            ).all()
        return [step_record(r) for r in rows]

    # -- a run's ending and parking -----------------------------------------------------
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
        """Record a run's end, fenced by the lease owner; False when the lease was lost."""
        ended = self._end_run(
            conn, id, self.schema.runs.c.lease_owner == owner, status, result, error
        )
        if ended is None:
            return False
        self._run_closed(conn, id)
        self._announce_end(conn, id, ended, status, result, error)
        return True

    def _end_run(
        self,
        conn: Connection,
        id: str,
        condition: Any,
        status: Status,
        result: Any,
        error: dict[str, Any] | None,
    ) -> Row[Any] | None:
        """Write run `id`'s final status where `condition` holds and drop its timers; its
        workflow `name` and `created_at`, or None when no row matched (a lost lease, a run
        already ended)."""
        r = self.schema.runs
        ended = conn.execute(
            update(r)
            .where(r.c.id == id, condition)
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
            .returning(r.c.name, r.c.created_at)
        ).first()
        if ended is not None:
            conn.execute(delete(self.schema.timers).where(self.schema.timers.c.workflow_id == id))
            self.release_run_permits(conn, id)
        return ended

    def _announce_end(
        self,
        conn: Connection,
        id: str,
        run: Row[Any],
        status: Status,
        result: Any,
        error: dict[str, Any] | None,
    ) -> None:
        """Tell the interceptors a run ended: `run_ended` in the transaction that ended it,
        `run_ended_committed` once that transaction committed (`_after_commit`)."""
        if not self.interceptors:
            return
        ended = RunEnded(
            workflow_id=id,
            workflow=run.name,
            engine=self.engine_name,
            status=status,
            result=result,
            error=error,
            started_at=run.created_at,
            headers=self._read_headers(conn, id),
        )
        for interceptor in self.interceptors:
            interceptor.run_ended(conn, ended)
            self._after_commit(functools.partial(interceptor.run_ended_committed, ended))

    def finish(self, id: str, owner: str, **ending: Any) -> bool:
        """`_finish` in a transaction of its own (status, result, error as keywords)."""
        with self._write("finishing a workflow") as conn:
            return self._finish(conn, id=id, owner=owner, **ending)

    def continue_as_new(
        self,
        id: str,
        owner: str,
        *,
        input: dict[str, Any],
        journal: Sequence[StepRecord] | None = None,
    ) -> bool:
        """End the current generation of run `id` and make it PENDING again with `input`
        and an empty journal, in one transaction fenced by the lease owner (False when the
        lease was lost: nothing changes).

        The generation's run row and journal rows are kept under `archive_id(id, n)` (its
        rows moved there, or, when `journal` is given, the langgraph backend's merged
        journal written there), so they are never replayed again yet stay readable. Signals
        not yet taken stay with `id` and are taken by the next generation; taken ones move
        with the journal. The new journal starts with a `continued` row at index -1 naming
        its generation and where the previous one is. Timers of waits left open are
        dropped, and no `run_ended` interceptor is called: the run has not ended.
        """
        r, st, sg = self.schema.runs, self.schema.steps, self.schema.signals
        now = time.time()
        with self._write("continuing a workflow as new") as conn:
            row = conn.execute(select(r).where(r.c.id == id).with_for_update()).first()
            if row is None or row.lease_owner != owner:
                return False
            first = conn.execute(
                select(st.c.kind, st.c.args).where(st.c.workflow_id == id, st.c.idx == -1)
            ).first()
            generation = 0
            if first is not None and first.kind == CONTINUED:
                generation = int(codec.loads(first.args).get("generation", 0))
            kept = archive_id(id, generation)
            # The generation's open children get its close policy (as on Temporal); its
            # own parent link stays with the run, so the last generation wakes the parent.
            self._close_children(conn, id)
            parent_link = conn.execute(
                select(st).where(
                    st.c.workflow_id == id, st.c.idx == PARENT_IDX, st.c.kind == PARENT
                )
            ).first()
            # The execution timeout spans the whole chain (as Temporal's does): the next
            # generation keeps the first one's deadline.
            deadline = conn.execute(
                select(st.c.fire_at, st.c.args).where(
                    st.c.workflow_id == id, st.c.idx == DEADLINE_IDX, st.c.kind == DEADLINE
                )
            ).first()
            # Every generation is in the trace its first one was started in.
            headers = self._read_headers(conn, id)
            # A run of its own may already be called `id@n`: never mix journals, take the
            # first free `id@n.k` instead (the `continued` row names it either way).
            suffix = 0
            while conn.execute(select(r.c.id).where(r.c.id == kept)).first() is not None:
                suffix += 1
                kept = f"{archive_id(id, generation)}.{suffix}"
            conn.execute(
                self.dialect.insert(r).values(
                    id=kept,
                    name=row.name,
                    status=Status.COMPLETED.value,
                    input=row.input,
                    result=codec.dumps({"continued_as_new": input}),
                    created_at=row.created_at,
                    updated_at=now,
                    executions=row.executions,
                    cancel_requested=False,
                    waiting_for=CONTINUED_MARK,
                    blocked=False,
                )
            )
            if journal is None:
                conn.execute(update(st).where(st.c.workflow_id == id).values(workflow_id=kept))
            else:
                conn.execute(delete(st).where(st.c.workflow_id == id))
                if journal:
                    conn.execute(
                        st.insert(),
                        [
                            step_row(StepRecord(**{**rec.__dict__, "workflow_id": kept}))
                            for rec in journal
                        ],
                    )
            conn.execute(delete(self.schema.timers).where(self.schema.timers.c.workflow_id == id))
            conn.execute(
                update(sg)
                .where(sg.c.workflow_id == id, sg.c.consumed_step.is_not(None))
                .values(workflow_id=kept)
            )
            marker = StepRecord(
                workflow_id=id,
                idx=-1,
                kind=CONTINUED,
                name=row.name,
                status=COMPLETED,
                args={"generation": generation + 1, "previous": kept},
                started_at=now,
                finished_at=now,
            )
            conn.execute(st.insert(), [step_row(marker)])
            if parent_link is not None:
                conn.execute(st.insert(), [step_row(step_record(parent_link))])
            if headers:
                self._write_headers(conn, id, row.name, headers, now)
            if deadline is not None and deadline.fire_at is not None:
                timeout = float((codec.loads(deadline.args) or {}).get("seconds", 0.0))
                self._arm_deadline(conn, id, row.name, deadline.fire_at, timeout)
            conn.execute(
                update(r)
                .where(r.c.id == id)
                .values(
                    status=Status.PENDING.value,
                    input=codec.dumps(input),
                    result=None,
                    error=None,
                    created_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    executions=0,
                    waiting_for=None,
                    blocked=False,
                )
            )
        return True

    def park(
        self,
        id: str,
        owner: str,
        *,
        waiting_for: str | None,
        error: dict[str, Any] | None = None,
        blocked: bool = False,
        wake_on_update: bool = True,
        children: Sequence[str] = (),
    ) -> bool:
        """Park a run (False when the lease was lost). `children` are the child runs the
        execution waited for: one that ended meanwhile makes the run PENDING at once.
        A signal for one of its waits (or,
        with `park_wakes_on_cancel`, a cancel; or a pending update request, unless
        `wake_on_update` is False because the run waits inside an update handler, where
        no update is delivered) that arrived while it ran makes it PENDING
        again at once, so a wake-up is never lost between the check and the park. Other
        signals leave it parked: waking for them would replay the run for nothing."""
        r, st, sg = self.schema.runs, self.schema.steps, self.schema.signals
        with self._write("suspending a workflow") as conn:
            row = conn.execute(
                select(r.c.lease_owner, r.c.cancel_requested).where(r.c.id == id).with_for_update()
            ).first()
            if row is None or row.lease_owner != owner:
                return False
            # The names its open signal waits take (a multi-name wait keeps its names in
            # its arguments): a run has a handful of open waits at most.
            waits = conn.execute(
                select(st.c.name, st.c.args).where(
                    st.c.workflow_id == id, st.c.kind == SIGNAL, st.c.status == WAITING
                )
            ).all()
            names = sorted({n for w in waits for n in wait_names(w.name, codec.loads(w.args))})
            if self.park_wakes_on_update and wake_on_update:
                # An update request that came while the run executed: deliver it now.
                names.append(UPDATE_REQUEST)
            signalled = select(sg.c.seq).where(
                sg.c.workflow_id == id, sg.c.consumed_step.is_(None), sg.c.name.in_(names)
            )
            woken = not blocked and (
                (self.park_wakes_on_cancel and bool(row.cancel_requested))
                or (bool(names) and conn.execute(signalled.limit(1)).first() is not None)
                or (bool(children) and self._any_ended(conn, children))
                or self.permit_granted(conn, id)
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

    # -- client side --------------------------------------------------------------------
    def _lock_open_run(self, conn: Connection, id: str, action: str) -> str:
        """Lock run `id`'s row and return its status; refuse unknown or finished runs.

        `park` takes the same row lock, so a signal and a park never miss each other.
        """
        r = self.schema.runs
        status = conn.execute(select(r.c.status).where(r.c.id == id).with_for_update()).scalar()
        if status is None:
            raise WorkflowNotFoundError(id, self.url)
        if Status(status).is_terminal:
            raise WorkflowClosedError(id, status, action)
        return str(status)

    def add_signal(self, id: str, name: str, payload: Any) -> None:
        r = self.schema.runs
        with self._write("sending a signal") as conn:
            self._lock_open_run(conn, id, "signal")
            conn.execute(
                self.schema.signals.insert().values(
                    workflow_id=id, name=name, payload=codec.dumps(payload), created_at=time.time()
                )
            )
            conn.execute(
                update(r)
                .where(r.c.id == id, r.c.status == Status.WAITING.value, r.c.blocked.is_(False))
                .values(status=Status.PENDING.value, updated_at=time.time())
            )

    def request_cancel(self, id: str) -> None:
        r = self.schema.runs
        with self._write("cancelling a workflow") as conn:
            status = self._lock_open_run(conn, id, "cancel")
            values: dict[str, Any] = {"cancel_requested": True, "updated_at": time.time()}
            if status == Status.WAITING.value:
                values["status"] = Status.PENDING.value  # wake it so the workflow sees it
            conn.execute(update(r).where(r.c.id == id).values(**values))

    # -- updates --------------------------------------------------------------------------
    # An update request is a row of the signals table named `UPDATE_REQUEST` (so no schema
    # change): its payload holds the update id, name and arguments; `consumed_step` is
    # NULL while pending, the journal index of its `update` row once accepted, or
    # `UPDATE_REJECTED` (with the refusal added to the payload) once rejected.
    def _find_update(self, conn: Connection, id: str, update_id: str) -> Row[Any] | None:
        sg = self.schema.signals
        rows = conn.execute(
            select(sg.c.seq, sg.c.payload, sg.c.consumed_step).where(
                sg.c.workflow_id == id, sg.c.name == UPDATE_REQUEST
            )
        ).all()
        return next((r for r in rows if codec.loads(r.payload)["update_id"] == update_id), None)

    def add_update(self, id: str, update_id: str, name: str, args: Sequence[Any]) -> None:
        """Record update request `update_id` for run `id` (nothing when it is already
        there: the same id is delivered once) and wake the run if it is parked. A new id
        for a finished run is refused (WorkflowClosedError); the run's row lock orders
        this with `park`, so a request is never missed by a run about to park."""
        r = self.schema.runs
        with self._write("sending an update") as conn:
            status = conn.execute(select(r.c.status).where(r.c.id == id).with_for_update()).scalar()
            if status is None:
                raise WorkflowNotFoundError(id, self.url)
            if self._find_update(conn, id, update_id) is not None:
                return
            if Status(status).is_terminal:
                raise WorkflowClosedError(id, status, f"send update {name!r} to")
            payload = {"update_id": update_id, "name": name, "args": list(args)}
            conn.execute(
                self.schema.signals.insert().values(
                    workflow_id=id,
                    name=UPDATE_REQUEST,
                    payload=codec.dumps(payload),
                    created_at=time.time(),
                )
            )
            conn.execute(
                update(r)
                .where(r.c.id == id, r.c.status == Status.WAITING.value, r.c.blocked.is_(False))
                .values(status=Status.PENDING.value, updated_at=time.time())
            )

    def update_outcome(self, id: str, update_id: str) -> tuple[str, Any]:
        """Where update `update_id` of run `id` is: ("pending", None), ("rejected",
        refusal), or ("accepted", its journal row), read in one transaction."""
        st = self.schema.steps
        with self._read("reading an update") as conn:
            row = self._find_update(conn, id, update_id)
            if row is None:
                return "missing", None
            if row.consumed_step is None:
                return "pending", None
            if row.consumed_step == UPDATE_REJECTED:
                return "rejected", codec.loads(row.payload).get("rejected") or {}
            step = conn.execute(
                select(st).where(st.c.workflow_id == id, st.c.idx == row.consumed_step)
            ).first()
        return "accepted", None if step is None else step_record(step)

    def pending_updates(self, id: str) -> list[dict[str, Any]]:
        """Run `id`'s update requests not yet accepted or rejected, oldest first, each its
        payload with its `seq`."""
        sg = self.schema.signals
        with self._read("reading update requests") as conn:
            rows = conn.execute(
                select(sg.c.seq, sg.c.payload)
                .where(
                    sg.c.workflow_id == id,
                    sg.c.name == UPDATE_REQUEST,
                    sg.c.consumed_step.is_(None),
                )
                .order_by(sg.c.seq)
            ).all()
        return [{**codec.loads(r.payload), "seq": r.seq} for r in rows]

    def reject_update(self, seq: int, refusal: dict[str, Any]) -> None:
        """Mark request `seq` rejected with `refusal`; nothing goes to the journal."""
        sg = self.schema.signals
        with self._write("rejecting an update") as conn:
            payload = conn.execute(select(sg.c.payload).where(sg.c.seq == seq)).scalar_one()
            data = {**codec.loads(payload), "rejected": refusal}
            conn.execute(
                update(sg)
                .where(sg.c.seq == seq, sg.c.consumed_step.is_(None))
                .values(payload=codec.dumps(data), consumed_step=UPDATE_REJECTED)
            )

    def accept_update(self, seq: int, records: Sequence[StepRecord]) -> None:
        """Write the accepted update's journal row (the last of `records`, after any
        buffered ones) and mark request `seq` taken by it, in one transaction."""
        sg = self.schema.signals
        with self._write("accepting an update") as conn:
            self._upsert_steps(conn, records)
            conn.execute(
                update(sg)
                .where(sg.c.seq == seq, sg.c.consumed_step.is_(None))
                .values(consumed_step=records[-1].idx)
            )

    # -- child workflows ----------------------------------------------------------------
    # A child is a run of its own in the same store (claimable by any worker serving its
    # workflow). Its parent journals the start as a `child` row, written with the child's
    # run and its `parent` link row (index PARENT_IDX) in one transaction; the child's end
    # (`_run_closed`, in the transaction that ends it) makes a parked parent PENDING, and
    # the parent settles its row from the child's run when it next looks. Parent and
    # child rows are locked in that order everywhere (`park` locks the parent's row and
    # reads the child's status), so a child ending as its parent parks is never missed.
    _TERMINAL = tuple(s.value for s in Status if s.is_terminal)

    def _any_ended(self, conn: Connection, ids: Sequence[str]) -> bool:
        r = self.schema.runs
        found = conn.execute(
            select(r.c.id).where(r.c.id.in_(list(ids)), r.c.status.in_(self._TERMINAL)).limit(1)
        ).first()
        return found is not None

    def start_child(self, records: Sequence[StepRecord]) -> StepRecord:
        """Write `records` (the parent's `child` row last) and create the child run with its
        parent link, in one transaction; the `child` row as written. A row already there
        (written before a crash) is returned as it is; an id already in use makes the row
        FAILED with a ChildWorkflowError (status ALREADY_STARTED), never a second run."""
        *pending, rec = records
        st = self.schema.steps
        data = rec.args
        child_id, now = str(data["id"]), time.time()
        with self._write("starting a child workflow") as conn:
            if pending:
                self._upsert_steps(conn, pending)
            existing = conn.execute(
                select(st).where(st.c.workflow_id == rec.workflow_id, st.c.idx == rec.idx)
            ).first()
            if existing is not None:
                return step_record(existing)
            created = self.insert_run(conn, child_id, rec.name, data["args"], now)
            if created:
                link = StepRecord(
                    workflow_id=child_id,
                    idx=PARENT_IDX,
                    kind=PARENT,
                    name=rec.workflow_id,
                    status=COMPLETED,
                    args={"parent_id": rec.workflow_id, "idx": rec.idx, "policy": data["policy"]},
                    started_at=now,
                    finished_at=now,
                )
                conn.execute(st.insert(), [step_row(link)])
                # The child continues its parent's trace (its start headers).
                headers = self._read_headers(conn, rec.workflow_id)
                if headers:
                    self._write_headers(conn, child_id, rec.name, headers, now)
            else:
                error = ChildWorkflowError(
                    child_id=child_id,
                    workflow=rec.name,
                    status="ALREADY_STARTED",
                    error_type="WorkflowIdConflictError",
                    message=f"a run with id {child_id!r} already exists; pass another id=",
                )
                rec = replace(rec, status=FAILED, error=error.to_json(), finished_at=now)
            self._upsert_steps(conn, [rec])
        return rec

    def settle_child(self, rec: StepRecord) -> StepRecord:
        """The parent's `child` row `rec` settled from the child run once that has ended
        (written in this transaction), or `rec` unchanged while the child is open."""
        st = self.schema.steps
        with self._write("reading a child workflow") as conn:
            current = conn.execute(
                select(st).where(st.c.workflow_id == rec.workflow_id, st.c.idx == rec.idx)
            ).first()
            if current is not None and current.status in FINAL_STEP_STATUSES:
                return step_record(current)
            settled = self._child_outcome(conn, rec)
            if settled is None:
                return rec
            self._upsert_steps(conn, [settled])
        return settled

    def _child_outcome(self, conn: Connection, rec: StepRecord) -> StepRecord | None:
        """The parent's `child` row `rec` settled from its child's run (unwritten), or None
        while the child is open. A child run that is gone reads as failed (NOT_FOUND)."""
        r = self.schema.runs
        child_id = str(rec.args["id"])
        child = conn.execute(
            select(r.c.status, r.c.result, r.c.error).where(r.c.id == child_id)
        ).first()
        if child is not None and child.status not in self._TERMINAL:
            return None
        now = time.time()
        if child is not None and child.status == Status.COMPLETED.value:
            settled = replace(
                rec, status=COMPLETED, output=codec.loads(child.result), finished_at=now
            )
        else:
            err = (codec.loads(child.error) if child is not None else None) or {}
            status = "FAILED" if child is not None else "NOT_FOUND"
            if child is not None and child.status == Status.CANCELLED.value:
                status = "CANCELLED"
            elif err.get("error_type") == "TerminatedError":
                status = "TERMINATED"
            error = ChildWorkflowError(
                child_id=child_id,
                workflow=rec.name,
                status=status,
                error_type=str(err.get("error_type", "CancelledError")),
                message=str(err.get("message", "the child run is gone")),
            )
            settled = replace(rec, status=FAILED, error=error.to_json(), finished_at=now)
        return settled

    def cancel_child(self, child_id: str) -> None:
        """Request the cancellation of child run `child_id`; nothing when it has ended."""
        with self._write("cancelling a child workflow") as conn:
            self._request_cancel(conn, child_id)

    def command_child(self, records: Sequence[StepRecord]) -> StepRecord:
        """Write `records` and deliver the last (a `child_signal` or `child_cancel` row) to
        its child in one transaction; that row, FAILED when the child has ended."""
        *pending, rec = records
        st, r = self.schema.steps, self.schema.runs
        child_id = str(rec.args["id"])
        with self._write("sending to a child workflow") as conn:
            if pending:
                self._upsert_steps(conn, pending)
            existing = conn.execute(
                select(st).where(st.c.workflow_id == rec.workflow_id, st.c.idx == rec.idx)
            ).first()
            if existing is not None:
                return step_record(existing)
            status = conn.execute(
                select(r.c.status).where(r.c.id == child_id).with_for_update()
            ).scalar()
            if status is None or status in self._TERMINAL:
                error = ChildWorkflowError(
                    child_id=child_id,
                    workflow="",
                    status=str(status or "NOT_FOUND"),
                    error_type="WorkflowClosedError",
                    message=f"cannot {rec.kind.replace('child_', '')} a child that has ended",
                )
                rec = replace(rec, status=FAILED, error=error.to_json())
            elif rec.kind == CHILD_CANCEL:
                self._request_cancel(conn, child_id)
            else:
                conn.execute(
                    self.schema.signals.insert().values(
                        workflow_id=child_id,
                        name=rec.args["signal"],
                        payload=codec.dumps(rec.args.get("payload")),
                        created_at=time.time(),
                    )
                )
                conn.execute(
                    update(r)
                    .where(
                        r.c.id == child_id,
                        r.c.status == Status.WAITING.value,
                        r.c.blocked.is_(False),
                    )
                    .values(status=Status.PENDING.value, updated_at=time.time())
                )
            self._upsert_steps(conn, [rec])
        return rec

    def _request_cancel(self, conn: Connection, id: str) -> None:
        """Set run `id`'s cancel request (waking it when parked), unless it has ended."""
        r = self.schema.runs
        now = time.time()
        conn.execute(
            update(r)
            .where(r.c.id == id, r.c.status.not_in(self._TERMINAL))
            .values(cancel_requested=True, updated_at=now)
        )
        conn.execute(
            update(r)
            .where(r.c.id == id, r.c.status == Status.WAITING.value)
            .values(status=Status.PENDING.value, updated_at=now)
        )

    def _run_closed(self, conn: Connection, id: str) -> None:
        """Run `id` just ended (in `conn`'s transaction): wake its parent if it has one,
        and apply its close policy to its children still open."""
        st, r = self.schema.steps, self.schema.runs
        link = conn.execute(
            select(st.c.args).where(
                st.c.workflow_id == id, st.c.idx == PARENT_IDX, st.c.kind == PARENT
            )
        ).scalar()
        if link is not None:
            parent_id = codec.loads(link)["parent_id"]
            conn.execute(
                update(r)
                .where(
                    r.c.id == parent_id,
                    r.c.status == Status.WAITING.value,
                    r.c.blocked.is_(False),
                )
                .values(status=Status.PENDING.value, updated_at=time.time())
            )
        self._close_children(conn, id)

    def _close_children(self, conn: Connection, id: str) -> None:
        """Apply the parent-close policy of each child of run `id` whose end it has not
        seen: terminate (the child ends at once, FAILED with TerminatedError, its own
        children closed in turn), request_cancel, or abandon (left running)."""
        st = self.schema.steps
        rows = conn.execute(
            select(st.c.args).where(
                st.c.workflow_id == id,
                st.c.kind == CHILD,
                st.c.status.not_in([COMPLETED, FAILED]),
            )
        ).all()
        for row in rows:
            data = codec.loads(row.args)
            policy, child_id = data.get("policy"), str(data["id"])
            if policy == "terminate":
                why = (
                    f"terminated because its parent {id!r} ended (parent_close_policy 'terminate')"
                )
                self._terminate(conn, child_id, why)
            elif policy == "request_cancel":
                self._request_cancel(conn, child_id)

    def _terminate(self, conn: Connection, id: str, why: str) -> None:
        """End run `id` now (a child whose parent ended, a schedule's run under
        "terminate_other"), FAILED with a TerminatedError saying `why` (Temporal reports a
        terminated run as failed too); its worker, if any, loses its lease at its next
        renewal and stops. Interceptors see the ending as for any run."""
        r = self.schema.runs
        error = {"error_type": "TerminatedError", "message": why}
        # A child already asked to cancel (its parent was cancelled while awaiting it) is
        # left to finish cancelling, as Temporal's default child cancellation waits for.
        running = and_(r.c.status.not_in(self._TERMINAL), r.c.cancel_requested.is_(False))
        ended = self._end_run(conn, id, running, Status.FAILED, None, error)
        if ended is None:
            return
        self._close_children(conn, id)
        self._announce_end(conn, id, ended, Status.FAILED, None, error)
