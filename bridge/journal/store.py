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

Interceptors (`bridge.interceptors`) see two moments, inside the store's own transactions:
`storage_opened(conn)` when the store opens (so a feature can create tables beside the
journal) and `run_ended(conn, RunEnded)` in the transaction that writes a run's final
status (what it writes commits if and only if the run ended).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, not_, select, update

from bridge import codec
from bridge.backend import Status
from bridge.errors import WorkflowClosedError, WorkflowIdConflictError, WorkflowNotFoundError
from bridge.interceptors import RunEnded
from bridge.journal._leases import LeaseStatements
from bridge.journal._steps import StepStatements, step_record, step_row, wait_names
from bridge.journal.context import (
    COMPLETED,
    CONTINUED,
    DEADLINE,
    DEADLINE_IDX,
    SIGNAL,
    UPDATE_REJECTED,
    UPDATE_REQUEST,
    WAITING,
    StepRecord,
)

__all__ = [
    "CONTINUED_MARK",
    "JournalStore",
    "archive_id",
    "generation_of",
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


def generation_of(steps: Sequence[StepRecord]) -> int:
    """Which generation a journal is (0 for a run that never continued as new), from the
    `continued` row a continuation writes at index -1."""
    # The rows below index 0 come first (a deadline at -2, the continuation at -1).
    first = next((s for s in steps[:2] if s.kind == CONTINUED), None)
    if first is not None and isinstance(first.args, dict):
        return int(first.args.get("generation", 0))
    return 0


class JournalStore(LeaseStatements, StepStatements):
    """The journal database of one backend; see the module docstring."""

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self,
        id: str,
        name: str,
        input: dict[str, Any],
        *,
        execution_timeout: float | None = None,
    ) -> bool:
        """Insert a PENDING run unless `id` exists; True when inserted.

        With `execution_timeout` (seconds) the run gets its deadline in the same
        transaction: a `deadline` journal row at index -2 (read by the context that
        executes it) and a timer at that index, which makes a parked run claimable once the
        deadline passes, so the deadline survives a restart and needs no new column."""
        runs = self.schema.runs
        now = time.time()
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
        with self._write("starting a workflow") as conn:
            created = conn.execute(stmt).first() is not None
            if not created:
                existing = conn.execute(select(runs.c.name).where(runs.c.id == id)).scalar_one()
                if existing != name:
                    raise WorkflowIdConflictError(
                        f"workflow id {id!r} is already used by a run of {existing!r}, "
                        f"not {name!r}; choose another id"
                    )
            elif execution_timeout is not None:
                self._arm_deadline(conn, id, name, now + execution_timeout, execution_timeout)
        return created

    def _arm_deadline(
        self, conn: Connection, id: str, name: str, deadline: float, timeout: float
    ) -> None:
        """Write run `id`'s deadline row and its timer (see `create_run`)."""
        row = StepRecord(
            workflow_id=id,
            idx=DEADLINE_IDX,
            kind=DEADLINE,
            name=name,
            status=COMPLETED,
            args={"seconds": timeout},
            started_at=time.time(),
            fire_at=deadline,
        )
        conn.execute(self.schema.steps.insert(), [step_row(row)])
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

    def list_runs(self, status: Status | None, limit: int) -> list[Row[Any]]:
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
        r = self.schema.runs
        name = conn.execute(
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
            .returning(r.c.name)
        ).scalar()
        if name is None:
            return False
        conn.execute(delete(self.schema.timers).where(self.schema.timers.c.workflow_id == id))
        if self.interceptors:
            ended = RunEnded(
                workflow_id=id,
                workflow=name,
                engine=self.engine_name,
                status=status,
                result=result,
                error=error,
            )
            for interceptor in self.interceptors:
                interceptor.run_ended(conn, ended)
        return True

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
            # The execution timeout spans the whole chain (as Temporal's does): the next
            # generation keeps the first one's deadline.
            deadline = conn.execute(
                select(st.c.fire_at, st.c.args).where(
                    st.c.workflow_id == id, st.c.idx == DEADLINE_IDX, st.c.kind == DEADLINE
                )
            ).first()
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
    ) -> bool:
        """Park a run (False when the lease was lost). A signal for one of its waits (or,
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
