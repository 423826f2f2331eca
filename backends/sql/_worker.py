"""The SQL executor's worker: claims runnable runs, executes them, keeps their leases.

Recovery is the same loop as normal work: a run whose worker died is RUNNING with a lease
that expires (or whose owner process is visibly dead on this host), so it is claimed again
and replayed from its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backends.sql._commit import GroupCommitter
from backends.sql._store import owner_id
from bridge import codec
from bridge._replay import JournaledContext, StepRecord, drive
from bridge.backend import Status, Worker
from bridge.errors import StorageError
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from backends.sql._backend import SqlBackend

log = logging.getLogger("bridge.sql.worker")

_DEAD_OWNER_CHECK_SECONDS = 1.0
# Stop starting work this fraction of a lease before it runs out: clocks of workers on
# different hosts are close, not equal.
_LEASE_MARGIN = 0.2


class _RunJournal:
    """The RunJournal of one run, writing through the worker's group committer."""

    def __init__(self, worker: SqlWorker, id: str) -> None:
        self._worker = worker
        self._id = id

    async def write(self, *records: StepRecord) -> None:
        await self._worker.committer.write(records)

    def lease_ok(self) -> bool:
        return self._worker.lease_ok(self._id)

    async def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        return self._worker.backend.store.take_signal(record)


class SqlWorker(Worker):
    def __init__(
        self, backend: SqlBackend, workflows: Sequence[WorkflowDefinition[..., Any]]
    ) -> None:
        self.backend = backend
        self.definitions = {w.name: w for w in workflows}
        self.owner = owner_id()
        self.committer = GroupCommitter(backend.store)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, JournaledContext] = {}
        # When each held lease runs out by this worker's own account (claim or last
        # successful renewal). Past it another worker may claim the run, so this one must
        # not start a side effect or write to its journal.
        self._lease_until: dict[str, float] = {}
        self._margin = backend.settings.sql.lease_seconds * _LEASE_MARGIN
        self._stopping = False
        self._wake: asyncio.Event | None = None

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def lease_ok(self, id: str) -> bool:
        return time.time() < self._lease_until.get(id, 0.0) - self._margin

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        store = self.backend.store
        settings = self.backend.settings.sql
        names = list(self.definitions)
        self._wake = asyncio.Event()
        self.backend.attach(self)
        heartbeat_every = settings.lease_seconds / 3
        last_heartbeat = last_dead_check = 0.0
        try:
            if names:
                store.unblock(names)
            while not self._stopping:
                now = time.monotonic()
                if now - last_heartbeat >= heartbeat_every:
                    self._heartbeat()
                    last_heartbeat = now
                if now - last_dead_check >= _DEAD_OWNER_CHECK_SECONDS:
                    store.expire_dead_owners()
                    last_dead_check = now
                free = settings.max_concurrency - len(self._tasks)
                claimed_at = time.time()
                claimed = store.claim(self.owner, names, free) if free > 0 and names else []
                for row in claimed:
                    self._lease_until[row.id] = claimed_at + settings.lease_seconds
                for row in claimed:
                    self._spawn(row)
                delay = 0.0 if claimed and len(claimed) == free else settings.poll_interval
                next_timer = store.next_timer()
                if next_timer is not None:
                    delay = min(delay, max(0.0, next_timer - time.time()))
                delay = min(delay, heartbeat_every)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
        finally:
            self.backend.detach(self)
            await self._shutdown()

    def _heartbeat(self) -> None:
        renewed_at = time.time()
        try:
            held = self.backend.store.heartbeat(self.owner, list(self._tasks))
        except StorageError as exc:
            log.warning("lease renewal failed: %s", exc)
            return
        until = renewed_at + self.backend.settings.sql.lease_seconds
        for id in held:
            self._lease_until[id] = until
        for id, task in list(self._tasks.items()):
            if id not in held:
                log.warning("lost the lease of workflow %s; another worker took it", id)
                task.cancel()
            elif held[id] and not self._contexts[id].cancelled_by_request:
                self._contexts[id].cancelled_by_request = True
                task.cancel()

    def _spawn(self, row: Any) -> None:
        task = asyncio.ensure_future(self._execute(row))
        self._tasks[row.id] = task

    async def _execute(self, row: Any) -> None:
        store = self.backend.store
        try:
            defn = self.definitions[row.name]
            ctx = JournaledContext(
                workflow_id=row.id,
                journal=_RunJournal(self, row.id),
                steps=store.load_steps(row.id),
                started_at=row.created_at,
                attempt=row.executions,
                cancel_requested=bool(row.cancel_requested),
            )
            self._contexts[row.id] = ctx
            outcome = await drive(defn, ctx, codec.loads(row.input))
            if outcome.status is Status.WAITING:
                store.suspend(
                    row.id,
                    self.owner,
                    waiting_for=outcome.waiting_for,
                    error=outcome.error,
                    blocked=outcome.blocked,
                )
                if outcome.blocked:
                    log.error(
                        "workflow %s stopped: %s", row.id, (outcome.error or {}).get("message")
                    )
            else:
                await self.committer.finish(
                    id=row.id,
                    owner=self.owner,
                    status=outcome.status,
                    result=outcome.result,
                    error=outcome.error,
                )
            self.backend.notify(row.id)
        except asyncio.CancelledError:
            # Shutdown (which releases every lease itself) or a lease this worker can no
            # longer vouch for: hand the run back if it is still ours, so it never waits
            # for a lease nobody renews. The journal is intact; the run resumes elsewhere.
            if not self._stopping:
                with contextlib.suppress(StorageError):
                    store.release(self.owner, [row.id])
        except Exception as exc:
            # Infrastructure trouble (the database): hand the run back, do not fail it.
            log.error("workflow %s interrupted: %s", row.id, exc)
            with contextlib.suppress(StorageError):
                store.release(self.owner, [row.id])
        finally:
            self._tasks.pop(row.id, None)
            self._contexts.pop(row.id, None)
            self._lease_until.pop(row.id, None)
            self.wake()

    async def _shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StorageError):
            self.backend.store.release(self.owner)
