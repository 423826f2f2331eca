"""The worker loop every journal backend shares: claim, execute, renew, recover, stop.

A worker leases runnable runs from the journal (new ones, ones whose timer is due or that
got a signal, and ones whose worker died, which is recovery: the same loop as normal work)
and executes each in a task of its own. A backend subclasses `JournalWorker` with one
method, `execute(row)`, which takes a claimed run as far as it can go (finished, parked or
blocked).

- **Leases.** Renewed every lease_seconds/3, only for runs a task is executing. A run whose
  lease another worker took is stopped; one whose cancel was requested, or whose execution
  deadline passed, has its task cancelled so the workflow sees the cancel.
- **Fencing.** The worker tracks how long each lease is valid by its own clock, and the
  context starts no activity attempt and writes no journal row within 20% of expiry
  (`lease_ok`), so a stalled worker never starts a side effect after another worker could
  have claimed the run.
- **Dead owners.** Leases of owners proven dead (`bridge.journal.owner`) are expired at
  once, so a restarted worker recovers a killed one's runs without waiting out the lease.
- **Storage errors never end the loop.** A locked or unreachable database is logged and
  retried with a backoff that doubles up to `_MAX_BACKOFF` (leases keep being renewed
  meanwhile); a run interrupted by one is handed back, and when even that fails, handed
  back as soon as the database answers again instead of waiting out its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bridge.backend import Worker
from bridge.errors import StorageError
from bridge.journal.context import JournaledContext, StepRecord
from bridge.journal.integrity import check_integrity
from bridge.journal.owner import owner_id
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from bridge.journal.backend import JournalBackend

log = logging.getLogger("bridge.journal.worker")

# Stop starting work this fraction of a lease before it runs out: clocks of workers on
# different hosts are close, not equal.
_LEASE_MARGIN = 0.2
# Look for dead owners every few polls, at most every second: a restarted worker takes a
# killed one's runs over that quickly.
_DEAD_OWNER_CHECK_POLLS = 5
_DEAD_OWNER_CHECK_MAX = 1.0
# The longest pause between tries while the database is locked or away.
_MAX_BACKOFF = 2.0
#: Seconds between looks for cancel requests while runs execute (a running activity is
#: cancelled within about this long after its run's cancel request).
_CANCEL_CHECK = 0.5


class RunJournal:
    """The `RunJournal` of one run (`bridge.journal.context`), through its worker."""

    def __init__(self, worker: JournalWorker, id: str) -> None:
        self._worker = worker
        self._id = id
        self.interceptors = worker.backend.interceptors

    async def write(self, *records: StepRecord) -> None:
        await self._worker.write_steps(records)

    def lease_ok(self) -> bool:
        return self._worker.lease_ok(self._id)

    async def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        return self._worker.store.take_signal(record)

    async def pending_updates(self) -> list[dict[str, Any]]:
        return self._worker.store.pending_updates(self._id)

    async def reject_update(self, seq: int, refusal: dict[str, Any]) -> None:
        self._worker.store.reject_update(seq, refusal)

    async def accept_update(self, seq: int, *records: StepRecord) -> None:
        self._worker.store.accept_update(seq, records)

    # Child workflows (`JournaledContext.start_child`): each one store transaction.
    async def start_child(self, *records: StepRecord) -> StepRecord:
        started = self._worker.store.start_child(records)
        self._worker.backend.wake_workers()
        return started

    async def settle_child(self, record: StepRecord) -> StepRecord:
        return self._worker.store.settle_child(record)

    async def cancel_child(self, child_id: str) -> None:
        self._worker.store.cancel_child(child_id)
        self._worker.backend.wake_workers()

    async def command_child(self, *records: StepRecord) -> StepRecord:
        sent = self._worker.store.command_child(records)
        self._worker.backend.wake_workers()
        return sent

    async def acquire_permit(self, key: str, holder: str, limit: int) -> bool:
        return self._worker.store.acquire_permit(key, holder, self._id, limit)

    async def release_permit(self, key: str, holder: str) -> None:
        self._worker.store.release_permit(key, holder)
        self._worker.backend.wake_workers()  # a run woken by the grant may be ours

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        return self._worker.store.take_token(key, per_second, burst)


class JournalWorker(Worker):
    """Claims and executes runs of `workflows`; subclasses implement `execute(row)`."""

    def __init__(
        self, backend: JournalBackend, workflows: Sequence[WorkflowDefinition[..., Any]]
    ) -> None:
        self.backend = backend
        self.store = backend.store
        self.settings = backend.journal_settings
        self.definitions = {w.name: w for w in workflows}
        self.owner = owner_id()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, JournaledContext] = {}
        # When each held lease runs out by this worker's own account (claim or last
        # successful renewal). Past it another worker may claim the run, so this one must
        # not start a side effect or write to its journal.
        self._lease_until: dict[str, float] = {}
        self._margin = self.settings.lease_seconds * _LEASE_MARGIN
        # Runs interrupted by a storage error whose hand-back failed too.
        self._to_release: set[str] = set()
        self._stopping = False
        self._wake: asyncio.Event | None = None

    # -- what a backend provides --------------------------------------------------------
    async def execute(self, row: Any) -> None:
        """Take claimed run `row` as far as it goes now (finished, parked or blocked)."""
        raise NotImplementedError

    async def write_steps(self, records: Sequence[StepRecord]) -> None:
        """Make a run's journal rows durable (the sql backend group-commits them)."""
        self.store.write_steps(records)

    def context_of(self, id: str) -> JournaledContext | None:
        """The context executing run `id`, once there is one."""
        return self._contexts.get(id)

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def lease_ok(self, id: str) -> bool:
        return time.time() < self._lease_until.get(id, 0.0) - self._margin

    async def run(self) -> None:
        if self.store.read_only:
            raise StorageError(
                f"a worker cannot run on {self.store.url}: the {self.store.noun} is read-only "
                f"for this process. Give it write access to the file and its directory, or "
                f"point {self.store.setting} at a writable journal"
            )
        # A damaged SQLite file is found before any run is claimed from it, not half-way
        # through a replay; the check reads the file (PostgreSQL checks its own pages).
        check_integrity(self.store.engine)
        s = self.settings
        names = list(self.definitions)
        self._wake = asyncio.Event()
        self.backend.attach(self)
        heartbeat_every = s.lease_seconds / 3
        dead_check_every = min(s.poll_interval * _DEAD_OWNER_CHECK_POLLS, _DEAD_OWNER_CHECK_MAX)
        last_heartbeat = last_dead_check = last_cancel_check = 0.0
        unblocked = False
        failures = 0
        try:
            while not self._stopping:
                try:
                    if names and not unblocked:
                        self.store.unblock(names)
                        unblocked = True
                    now = time.monotonic()
                    if now - last_heartbeat >= heartbeat_every:
                        self._heartbeat()
                        last_heartbeat = now
                    elif self._tasks and now - last_cancel_check >= _CANCEL_CHECK:
                        # Between lease renewals: a running activity hears of its run's
                        # cancellation within a second, not a third of a lease.
                        self._deliver_cancels(self.store.cancel_requested(list(self._tasks)))
                        last_cancel_check = now
                    if self._to_release:
                        self._release_interrupted()
                    if now - last_dead_check >= dead_check_every:
                        self.store.expire_dead_owners()
                        last_dead_check = now
                    # Schedules first, so the runs they start are claimed in this pass.
                    delay = min(self.backend.schedules.tick(), self._claim_and_spawn(names))
                    next_timer = self.store.next_timer()
                    if next_timer is not None:
                        delay = min(delay, max(0.0, next_timer - time.time()))
                    if failures:
                        log.warning("worker %s reaches its database again", self.owner)
                    failures = 0
                except StorageError as exc:
                    # Locked (a backup, a long query) or away: keep the runs held, retry.
                    failures += 1
                    delay = min(s.poll_interval * 2**failures, _MAX_BACKOFF)
                    log.warning("worker cannot reach its database (retry in %.2fs): %s", delay, exc)
                if self._tasks:
                    delay = min(delay, _CANCEL_CHECK)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(delay, heartbeat_every))
                self._wake.clear()
        finally:
            self.backend.detach(self)
            await self._shutdown()

    def _claim_and_spawn(self, names: list[str]) -> float:
        """Claim what this worker has room for; the delay before the next look."""
        free = self.settings.max_concurrency - len(self._tasks)
        if free <= 0 or not names:
            return self.settings.poll_interval
        claimed_at = time.time()
        claimed = self.store.claim(self.owner, names, free)
        for row in claimed:
            self._lease_until[row.id] = claimed_at + self.settings.lease_seconds
            self._to_release.discard(row.id)
        for row in claimed:
            self._tasks[row.id] = asyncio.ensure_future(self._execute(row))
        return 0.0 if claimed and len(claimed) == free else self.settings.poll_interval

    def _heartbeat(self) -> None:
        renewed_at = time.time()
        try:
            held = self.store.heartbeat(self.owner, list(self._tasks))
        except StorageError as exc:
            log.warning("lease renewal failed: %s", exc)
            return
        until = renewed_at + self.settings.lease_seconds
        for id in held:
            self._lease_until[id] = until
        self._deliver_cancels({id for id, cancel in held.items() if cancel})
        for id, task in list(self._tasks.items()):
            ctx = self.context_of(id)
            if id not in held:
                log.warning("lost the lease of workflow %s; another worker took it", id)
                task.cancel()
            elif ctx is not None and not ctx.cancelled_by_request and ctx.past_deadline():
                # Past its execution deadline while executing (an activity under way, a
                # condition waiting on other branches): cancel it now, as a cancel request
                # would be; `drive` ends it FAILED with WorkflowTimeoutError.
                ctx.cancelled_by_request = True
                ctx.timed_out = True
                task.cancel()

    def _deliver_cancels(self, ids: set[str]) -> None:
        """Cancel the executions of runs whose cancel was requested, once each: the
        workflow sees the cancel where it awaits, a running activity is cancelled with it
        (a synchronous one at its next `bridge.heartbeat()`)."""
        for id in ids:
            task, ctx = self._tasks.get(id), self.context_of(id)
            if task is not None and ctx is not None and not ctx.cancelled_by_request:
                ctx.cancelled_by_request = True
                task.cancel()

    def _release(self, id: str) -> None:
        try:
            self.store.release(self.owner, [id])
        except StorageError:
            self._to_release.add(id)  # retried by the loop once the database answers

    def _release_interrupted(self) -> None:
        ids = [i for i in self._to_release if i not in self._tasks]
        if ids:
            self.store.release(self.owner, ids)
        self._to_release.difference_update(ids)

    async def _execute(self, row: Any) -> None:
        try:
            await self.execute(row)
        except asyncio.CancelledError:
            # Shutdown (which releases every lease itself) or a lease this worker can no
            # longer vouch for: hand the run back if it is still ours, so it never waits
            # for a lease nobody renews. The journal is intact; the run resumes elsewhere.
            if not self._stopping:
                self._release(row.id)
        except Exception as exc:
            # Infrastructure trouble (the database): hand the run back, do not fail it.
            log.error("workflow %s interrupted: %s", row.id, exc)
            self._release(row.id)
        finally:
            self._tasks.pop(row.id, None)
            self._contexts.pop(row.id, None)
            self._lease_until.pop(row.id, None)
            self.backend.notify(row.id)
            self.wake()

    async def _shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StorageError):
            self.store.release(self.owner)
