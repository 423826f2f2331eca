"""The langgraph backend's store: the shared journal store plus LangGraph's saver.

The bridge's tables (`_schema.py`) and LangGraph's checkpointer (SqliteSaver or
PostgresSaver, made durable in `_saver.py`) live in one database. Runs, leases, signals and
journal rows are `bridge.journal.store.JournalStore`'s; what is this backend's own is the
saver and `settle_wait`, which decides an interrupted wait's answer before the thread is
resumed. No bridge statement is on a step's hot path, which is LangGraph's task write alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import select

from backends.langgraph._saver import DurableSaverMixin
from backends.langgraph._schema import SCHEMA
from bridge._sqlengine import SqliteDialect
from bridge.config import LangGraphSettings
from bridge.interceptors import Interceptor
from bridge.journal.context import (
    ANSWERED_LATER,
    CHILD,
    COMPLETED,
    DEADLINE,
    DEADLINE_IDX,
    FINAL_STEP_STATUSES,
    SIGNAL,
    SLEEP,
    TIMED_OUT,
    StepRecord,
)
from bridge.journal.store import JournalStore, step_record

#: The final status of a wait answered with a cancellation (the bridge's own status; the
#: sql journal has no such row because it delivers a cancel at the next operation instead).
CANCELLED = "cancelled"
#: Statuses a wait row never leaves once written.
SETTLED = FINAL_STEP_STATUSES | {CANCELLED}


class Store(JournalStore):
    """The bridge's tables (`bridge_lg_runs`, ...) and LangGraph's saver on one database."""

    schema = SCHEMA
    engine_name = "langgraph"
    setting = "langgraph.url"
    noun = "LangGraph database"
    url_hint = "sqlite:///PATH (SqliteSaver) or postgresql://USER@HOST/DB (PostgresSaver)"
    # Any constant works; it only has to be the same in every durable-bridge process.
    schema_lock_key = 0x62726C67
    settled = SETTLED
    # A cancel answers the run's wait (`settle_wait`), so it must wake a parking run.
    park_wakes_on_cancel = True

    def __init__(
        self, settings: LangGraphSettings, *, interceptors: Sequence[Interceptor] = ()
    ) -> None:
        super().__init__(settings, interceptors=interceptors)
        try:
            self.saver: DurableSaverMixin = self._open_saver(settings)
        except BaseException:
            self.close()  # a refused database leaves no connection behind
            raise

    def _open_saver(self, settings: LangGraphSettings) -> DurableSaverMixin:
        if isinstance(self.dialect, SqliteDialect):
            from backends.langgraph._saver_sqlite import open_saver

            return open_saver(
                settings, self.dialect.path, read_only=self.read_only, codec=self.payload_codec
            )
        from backends.langgraph._saver_postgres import open_saver as open_pg_saver

        return open_pg_saver(settings.url, codec=self.payload_codec)

    def close(self) -> None:
        saver = getattr(self, "saver", None)
        if saver is not None:
            with contextlib.suppress(Exception):
                saver.conn.close()
        super().close()

    def keep_segment(self, id: str, owner: str, records: Sequence[StepRecord]) -> bool:
        """Write the finished steps of run `id`'s ended segment (its step tasks' writes) to
        the journal rows, in one transaction fenced by the lease owner `owner` (False when
        the lease was lost: nothing is written). Rows already settled are kept as they are
        (`_upsert_steps`), so a repeat after a crash changes nothing."""
        runs = self.schema.runs
        with self._write("keeping a finished segment's steps") as conn:
            row = conn.execute(
                select(runs.c.lease_owner).where(runs.c.id == id).with_for_update()
            ).first()
            if row is None or row.lease_owner != owner:
                return False
            if records:
                self._upsert_steps(conn, list(records))
        return True

    def settle_wait(self, rec: StepRecord) -> StepRecord | None:
        """Decide the outcome of the wait `rec`, durably, before the thread is resumed.

        A signal wait takes the oldest pending signal of its name; a due timer fires (a
        sleep completes, a signal wait times out); a requested cancel, or the run's passed
        execution deadline, answers any wait.
        The settled row is written in the same transaction as the signal it consumed, so a
        crash between this and the resume re-delivers the same answer. None: nothing yet.
        """
        now = time.time()
        steps, runs = self.schema.steps, self.schema.runs
        with self._write("answering a wait") as conn:
            current = conn.execute(
                select(steps).where(steps.c.workflow_id == rec.workflow_id, steps.c.idx == rec.idx)
            ).first()
            if current is not None and current.status in SETTLED:
                return step_record(current)
            settled: StepRecord | None = None
            if rec.kind == SIGNAL:
                found, payload = self._take_signal(conn, rec)
                if found:
                    settled = replace(rec, status=COMPLETED, output=payload, finished_at=now)
            if rec.kind == CHILD:
                # A child's wait is answered by the child's end (its run's outcome).
                settled = self._child_outcome(conn, rec)
            due = rec.fire_at is not None and rec.fire_at <= now
            if settled is None and due:
                status = COMPLETED if rec.kind == SLEEP else TIMED_OUT
                settled = replace(rec, status=status, finished_at=now)
            cancel = select(runs.c.cancel_requested).where(runs.c.id == rec.workflow_id)
            # A passed execution deadline answers any wait as a cancel does; the context
            # sees that the deadline passed and ends the run FAILED (WorkflowTimeoutError).
            deadline = select(steps.c.fire_at).where(
                steps.c.workflow_id == rec.workflow_id,
                steps.c.idx == DEADLINE_IDX,
                steps.c.kind == DEADLINE,
            )
            if settled is None and (
                conn.execute(cancel).scalar()
                or (conn.execute(deadline).scalar() or float("inf")) <= now
            ):
                settled = replace(rec, status=CANCELLED, finished_at=now)
                if rec.kind == CHILD:
                    # Cancelling a parent that waits for a child cancels the child too.
                    self._request_cancel(conn, str(rec.args["id"]))
            if settled is not None:
                # Every wait here is an interrupt answered in a later invocation: a replay
                # (a query's) holds its answer until the other branches are blocked.
                settled = replace(settled, attempt=ANSWERED_LATER)
                self._upsert_steps(conn, [settled])
            return settled


def open_store(settings: LangGraphSettings, *, interceptors: Sequence[Interceptor] = ()) -> Store:
    """The bridge's tables and LangGraph's saver at `settings.url`."""
    return Store(settings, interceptors=interceptors)
