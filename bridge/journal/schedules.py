"""Schedules on the embedded engines: the `{prefix}schedules` table and the worker's scheduler.

A schedule row holds what to start (`spec`: cron, arguments, overlap policy, catch-up window)
and what the scheduler keeps between fires (`state`: the last cron time it took, the open
runs it started, a buffered fire, counters). `next_fire_at` is when the row needs the
scheduler again; every journal worker runs `Schedules.tick()` in its loop.

- **Exactly once per fire time.** The scheduler locks due rows (`FOR UPDATE SKIP LOCKED` on
  PostgreSQL, the IMMEDIATE write transaction on SQLite), starts their runs and moves their
  cursor in that one transaction, so of several workers one takes each fire. The run id is
  Temporal's, `<schedule id>-<fire time, RFC 3339 UTC>`, and the run insert does nothing
  when the id exists: a fire is started at most once whatever happens.
- **Catch-up.** Fires that passed while no worker ran are taken when one starts, unless
  they are older than the catch-up window (counted as `missed`). The default window is a
  year, Temporal's (`bridge.client.DEFAULT_CATCHUP_WINDOW`); at most `_MAX_FIRES_PER_STEP`
  fires are taken per pass, the rest in the next ones.
- **Overlap** (Temporal's policies), for a fire while a run the schedule started is open:
  `skip` drops it; `buffer_one` keeps the first such fire and starts it once the run ends
  (later ones are dropped); `buffer_all` keeps every such fire and starts them one after
  the other, each once the run before it ended; `cancel_other` asks the open runs to cancel
  and keeps the latest fire (dropping an earlier one) to start once they ended;
  `terminate_other` ends the open runs at once (FAILED with TerminatedError, as Temporal
  reports a terminated run) and starts the fire; `allow_all` starts every fire.
- **Time.** The scheduler reads `Schedules.clock` (epoch seconds, `time.time` by default),
  never the journal's own clock, so tests drive a simulated hour without sleeping. The hot
  path pays one comparison per loop; the table is read at most every `_RESCAN` seconds
  (a schedule created by another process is seen that quickly) and written only when a
  row is due.
- Scheduled runs are created by the store directly, so they skip the client's
  `start_workflow` interceptors, as Temporal's scheduled starts skip client interceptors.
- cron is 5 fields (minute hour day month weekday) or a macro (`@hourly`), read in the
  schedule's IANA time zone (UTC by default; croniter follows its daylight saving time),
  parsed with croniter (the `schedules` extra).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from bridge import codec
from bridge.backend import SCHEDULE_OVERLAPS, ScheduleDescription, Status
from bridge.errors import (
    ConfigError,
    InvalidScheduleError,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
)
from bridge.history import utc

if TYPE_CHECKING:
    from bridge.journal.store import JournalStore

__all__ = ["Schedules", "check_cron", "fire_id"]

log = logging.getLogger("bridge.journal.schedules")

#: Seconds (of real time) between reads of the table's earliest due time.
_RESCAN = 1.0
#: Rows and fires taken per pass; what is left is taken in the next passes.
_MAX_ROWS_PER_STEP = 50
_MAX_FIRES_PER_STEP = 1000
#: Missed fires counted one by one before the count jumps to the window's start.
_MAX_MISSED_SCAN = 10_000
#: Run ids of a schedule's latest runs kept for `describe`.
_RECENT = 10
_TERMINAL = [s.value for s in Status if s.is_terminal]


def fire_id(schedule_id: str, at: float) -> str:
    """The id of the run schedule `schedule_id` starts for time `at`, as Temporal names it."""
    return f"{schedule_id}-{datetime.fromtimestamp(at, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:  # pragma: no cover - the extra is installed with the project
        raise ConfigError(
            "schedules on the embedded engines need croniter: "
            'pip install "durable-bridge[schedules]"'
        ) from None
    return croniter


def _times(cron: str, after: float, timezone: str = "UTC") -> Iterator[float]:
    """The times of `cron`, read in `timezone`, after `after`, in order."""
    it = _croniter()(cron, datetime.fromtimestamp(after, ZoneInfo(timezone)))
    while True:
        yield float(it.get_next(float))


def check_cron(cron: str) -> None:
    """Raise InvalidScheduleError unless `cron` is 5 fields or a macro that croniter reads
    (croniter also takes a 6th, seconds, field that Temporal reads differently: refused)."""
    fields = cron.split()
    if not (
        (len(fields) == 5 or (len(fields) == 1 and cron.startswith("@")))
        and _croniter().is_valid(cron)
    ):
        raise InvalidScheduleError(
            f"cron expression {cron!r} is not valid: use 5 fields (minute hour day-of-month "
            f"month day-of-week, UTC), e.g. '*/5 * * * *', or a macro such as '@hourly'"
        )


@dataclass
class _Spec:
    cron: str
    args: dict[str, Any]
    overlap: str
    catchup_window: float
    timezone: str = "UTC"


@dataclass
class _State:
    #: The last cron time taken (fired, skipped, buffered or missed).
    cursor: float
    running: list[str] = field(default_factory=list)
    buffered: float | None = None
    #: Fires waiting their turn under "buffer_all", oldest first.
    queue: list[float] = field(default_factory=list)
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    recent: list[str] = field(default_factory=list)
    last_fire: float | None = None
    note: str | None = None


class Schedules:
    """The schedules of one journal store; see the module docstring."""

    def __init__(self, store: JournalStore, *, backend: str) -> None:
        self.store = store
        self.backend = backend
        #: Now, in epoch seconds; tests replace it to simulate time.
        self.clock: Callable[[], float] = time.time
        self._next_due: float | None = None
        self._read_at = -math.inf

    @property
    def _table(self) -> Any:
        return self.store.schema.schedules

    # -- the worker's pass --------------------------------------------------------------
    def tick(self) -> float:
        """Fire what is due; seconds (by `clock`) until the next look is needed."""
        now = self.clock()
        if time.monotonic() - self._read_at >= _RESCAN:
            t = self._table
            with self.store._read("reading schedules") as conn:
                self._next_due = conn.execute(
                    select(func.min(t.c.next_fire_at)).where(t.c.paused.is_(False))
                ).scalar()
            self._read_at = time.monotonic()
        if self._next_due is not None and now >= self._next_due:
            self._next_due = self.step(now)
        return math.inf if self._next_due is None else max(0.0, self._next_due - now)

    def step(self, now: float) -> float | None:
        """Take the due rows' fires up to `now`, in one transaction; the next due time."""
        t = self._table
        due = (
            select(t)
            .where(t.c.paused.is_(False), t.c.next_fire_at <= now)
            .order_by(t.c.next_fire_at)
            .limit(_MAX_ROWS_PER_STEP)
            # Of several workers on PostgreSQL, one takes each row; the others skip it.
            .with_for_update(skip_locked=True)
        )
        with self.store._write("firing schedules") as conn:
            for row in conn.execute(due).all():
                try:
                    spec, state = _load(row)
                    self._advance(conn, row.id, row.workflow, spec, state, now)
                except SQLAlchemyError:
                    raise  # the store's StorageError; the worker retries the pass
                except Exception as exc:
                    # A row this code cannot read (written by another version, edited by
                    # hand) must not stop the worker nor the other schedules.
                    log.error("schedule %s cannot fire: %s; retried in a minute", row.id, exc)
                    conn.execute(update(t).where(t.c.id == row.id).values(next_fire_at=now + 60.0))
            return conn.execute(
                select(func.min(t.c.next_fire_at)).where(t.c.paused.is_(False))
            ).scalar()

    def _advance(
        self, conn: Connection, id: str, workflow: str, spec: _Spec, st: _State, now: float
    ) -> None:
        open_runs = self._settle(conn, id, workflow, spec, st)
        times = _times(spec.cron, st.cursor, spec.timezone)
        fires: list[float] = []
        scanned = 0
        while len(fires) < _MAX_FIRES_PER_STEP:
            at = next(times)
            if at > now:
                break
            st.cursor = at
            if now - at > spec.catchup_window:
                st.missed += 1
                scanned += 1
                if scanned >= _MAX_MISSED_SCAN:  # skip the rest of the gap uncounted
                    st.cursor = max(st.cursor, now - spec.catchup_window)
                    times = _times(spec.cron, st.cursor, spec.timezone)
                continue
            fires.append(at)
        for at in fires:
            self._fire(conn, id, workflow, spec, st, at, open_runs)
        self._save(conn, id, spec, st, now)

    # -- one fire -----------------------------------------------------------------------
    def _settle(
        self, conn: Connection, id: str, workflow: str, spec: _Spec, st: _State
    ) -> list[str]:
        """Forget ended runs; start the buffered fire (or the first queued one) if the runs
        it waited for ended."""
        if st.running:
            runs = self.store.schema.runs
            still = set(
                conn.execute(
                    select(runs.c.id).where(
                        runs.c.id.in_(st.running), runs.c.status.not_in(_TERMINAL)
                    )
                ).scalars()
            )
            st.running = [r for r in st.running if r in still]
        open_runs = list(st.running)
        if st.buffered is not None and not open_runs:
            at, st.buffered = st.buffered, None
            self._start(conn, id, workflow, spec, st, at, open_runs)
        if st.queue and not open_runs:
            self._start(conn, id, workflow, spec, st, st.queue.pop(0), open_runs)
        return open_runs

    def _fire(
        self,
        conn: Connection,
        id: str,
        workflow: str,
        spec: _Spec,
        st: _State,
        at: float,
        open_runs: list[str],
    ) -> None:
        policy = spec.overlap
        if not open_runs or policy == "allow_all":
            self._start(conn, id, workflow, spec, st, at, open_runs)
        elif policy == "skip":
            st.skipped += 1
        elif policy == "buffer_one":
            if st.buffered is None:
                st.buffered = at
            else:
                st.skipped += 1
        elif policy == "buffer_all":
            st.queue.append(at)
        elif policy == "cancel_other":
            for run_id in open_runs:
                self.store._request_cancel(conn, run_id)
            if st.buffered is not None:
                st.skipped += 1  # the latest fire waits; an earlier one is dropped
            st.buffered = at
        else:  # terminate_other
            why = f"terminated by schedule {id!r} (overlap 'terminate_other')"
            for run_id in open_runs:
                self.store._terminate(conn, run_id, why)
            st.running = [r for r in st.running if r not in open_runs]
            open_runs.clear()
            self._start(conn, id, workflow, spec, st, at, open_runs)

    def _start(
        self,
        conn: Connection,
        id: str,
        workflow: str,
        spec: _Spec,
        st: _State,
        at: float,
        open_runs: list[str],
    ) -> None:
        """Insert the fire's run (nothing when its id exists: that fire was started)."""
        run_id = fire_id(id, at)
        # The run's own times are the journal's, not the schedule clock.
        created = self.store.insert_run(conn, run_id, workflow, spec.args, time.time())
        if not created:
            return
        st.fired += 1
        st.last_fire = at
        st.running.append(run_id)
        open_runs.append(run_id)
        st.recent = [*st.recent, run_id][-_RECENT:]

    def _save(self, conn: Connection, id: str, spec: _Spec, st: _State, now: float) -> None:
        # A buffered fire waits for a run to end, which no cron time announces: look again
        # at every pass until it starts.
        waiting = st.buffered is not None or st.queue
        next_at = now if waiting else next(_times(spec.cron, st.cursor, spec.timezone))
        t = self._table
        conn.execute(
            update(t)
            .where(t.c.id == id)
            .values(state=codec.dumps(asdict(st)), next_fire_at=next_at, updated_at=time.time())
        )

    # -- the client's calls -------------------------------------------------------------
    def create(
        self,
        id: str,
        workflow: str,
        args: dict[str, Any],
        *,
        cron: str,
        overlap: str,
        catchup_window: float,
        paused: bool,
        timezone: str = "UTC",
    ) -> None:
        check_cron(cron)
        if overlap not in SCHEDULE_OVERLAPS:
            raise InvalidScheduleError(
                f"overlap of schedule {id!r} must be one of {SCHEDULE_OVERLAPS}, not {overlap!r}"
            )
        now = self.clock()
        spec = _Spec(
            cron=cron,
            args=args,
            overlap=overlap,
            catchup_window=catchup_window,
            timezone=timezone,
        )
        st = _State(cursor=now)
        t = self._table
        stmt = (
            self.store.dialect.insert(t)
            .values(
                id=id,
                workflow=workflow,
                spec=codec.dumps(asdict(spec)),
                state=codec.dumps(asdict(st)),
                paused=paused,
                next_fire_at=next(_times(cron, now, timezone)),
                created_at=time.time(),
                updated_at=time.time(),
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.c.id)
        )
        with self.store._write("creating a schedule") as conn:
            if conn.execute(stmt).first() is None:
                raise ScheduleAlreadyExistsError(id)
        self._read_at = -math.inf  # this process's workers see it at their next pass

    def _locked(self, conn: Connection, id: str) -> Row[Any]:
        t = self._table
        row = conn.execute(select(t).where(t.c.id == id).with_for_update()).first()
        if row is None:
            raise ScheduleNotFoundError(id, self.store.url)
        return row

    def _describe(self, conn: Connection, row: Row[Any]) -> ScheduleDescription:
        spec, st = _load(row)
        running: list[str] = []
        if st.running:
            runs = self.store.schema.runs
            still = set(
                conn.execute(
                    select(runs.c.id).where(
                        runs.c.id.in_(st.running), runs.c.status.not_in(_TERMINAL)
                    )
                ).scalars()
            )
            running = [r for r in st.running if r in still]
        return ScheduleDescription(
            id=row.id,
            workflow=row.workflow,
            cron=spec.cron,
            args=spec.args,
            overlap=spec.overlap,
            catchup_window=spec.catchup_window,
            paused=bool(row.paused),
            backend=self.backend,
            next_fire_at=None
            if row.paused
            else _utc(next(_times(spec.cron, st.cursor, spec.timezone))),
            last_fire_at=_utc(st.last_fire),
            fired=st.fired,
            skipped=st.skipped,
            missed=st.missed,
            buffered=st.buffered is not None or bool(st.queue),
            running=tuple(running),
            recent=tuple(st.recent),
            timezone=spec.timezone,
            note=st.note,
        )

    def _absent(self, conn: Connection) -> bool:
        """A read-only journal written before schedules existed has no schedules table."""
        return self.store.read_only and not self.store.engine.dialect.has_table(
            conn, self._table.name
        )

    def describe(self, id: str) -> ScheduleDescription:
        t = self._table
        with self.store._read("reading a schedule") as conn:
            if self._absent(conn):
                raise ScheduleNotFoundError(id, self.store.url)
            row = conn.execute(select(t).where(t.c.id == id)).first()
            if row is None:
                raise ScheduleNotFoundError(id, self.store.url)
            return self._describe(conn, row)

    def list(self) -> list[ScheduleDescription]:
        t = self._table
        with self.store._read("listing schedules") as conn:
            if self._absent(conn):
                return []
            return [self._describe(conn, r) for r in conn.execute(select(t).order_by(t.c.id))]

    def pause(self, id: str, note: str | None = None) -> None:
        with self.store._write("pausing a schedule") as conn:
            row = self._locked(conn, id)
            _, st = _load(row)
            st.note = note
            t = self._table
            conn.execute(
                update(t)
                .where(t.c.id == id)
                .values(paused=True, state=codec.dumps(asdict(st)), updated_at=time.time())
            )

    def resume(self, id: str) -> None:
        """Unpause; cron times that passed while paused are dropped, as on Temporal."""
        now = self.clock()
        with self.store._write("resuming a schedule") as conn:
            row = self._locked(conn, id)
            if not row.paused:
                return
            spec, st = _load(row)
            st.cursor, st.note = max(st.cursor, now), None
            t = self._table
            conn.execute(update(t).where(t.c.id == id).values(paused=False))
            self._save(conn, id, spec, st, now)
        self._read_at = -math.inf

    def delete(self, id: str) -> None:
        t = self._table
        with self.store._write("deleting a schedule") as conn:
            if conn.execute(delete(t).where(t.c.id == id).returning(t.c.id)).first() is None:
                raise ScheduleNotFoundError(id, self.store.url)

    def trigger(self, id: str) -> None:
        """Fire now (to the second, as Temporal names a triggered run), under the
        schedule's overlap policy; the cron cursor does not move."""
        now = float(math.floor(self.clock()))
        with self.store._write("triggering a schedule") as conn:
            row = self._locked(conn, id)
            spec, st = _load(row)
            open_runs = self._settle(conn, id, row.workflow, spec, st)
            self._fire(conn, id, row.workflow, spec, st, now, open_runs)
            self._save(conn, id, spec, st, now)
        self._read_at = -math.inf

    def backfill(self, id: str, start: datetime, end: datetime) -> None:
        """Take the fires of cron times in [start, end] now, under the overlap policy and
        without the catch-up window (Temporal's backfill, whose server takes both ends);
        the cron cursor does not move."""
        lo, hi = start.timestamp(), end.timestamp()
        with self.store._write("backfilling a schedule") as conn:
            row = self._locked(conn, id)
            spec, st = _load(row)
            open_runs = self._settle(conn, id, row.workflow, spec, st)
            for at in _times(spec.cron, lo - 1.0, spec.timezone):
                if at > hi:
                    break
                if at < lo:
                    continue
                self._fire(conn, id, row.workflow, spec, st, at, open_runs)
            self._save(conn, id, spec, st, self.clock())
        self._read_at = -math.inf


def _load(row: Row[Any]) -> tuple[_Spec, _State]:
    return _Spec(**codec.loads(row.spec)), _State(**codec.loads(row.state))


def _utc(at: float | None) -> datetime | None:
    return None if at is None else utc(at)
