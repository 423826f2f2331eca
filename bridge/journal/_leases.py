"""Leases: which worker executes which run, and for how long.

A worker claims runnable runs (pending, due, or with an expired lease), renews the leases of
the runs it is executing, expires the leases of owners proven dead (`bridge.journal.owner`)
and hands runs back when it stops or hits an infrastructure error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, or_, select, update

from bridge.backend import Status
from bridge.journal._database import JournalDatabase
from bridge.journal.owner import owner_dead


class LeaseStatements(JournalDatabase):
    """Claim, heartbeat, expire dead owners, release, unblock, next timer."""

    def claim(self, owner: str, names: Sequence[str], limit: int) -> list[Row[Any]]:
        """Lease up to `limit` runnable runs: pending, due, or with an expired lease."""
        now = time.time()
        r, timers = self.schema.runs, self.schema.timers
        due = select(timers.c.workflow_id).where(timers.c.fire_at <= now)
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
        """Extend `owner`'s leases of runs `ids` (only runs it is executing: a lease renewed
        for a run nobody executes would strand it); {id: cancel_requested} of those held."""
        if not ids:
            return {}
        r = self.schema.runs
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

    def cancel_requested(self, ids: Sequence[str]) -> set[str]:
        """Which of runs `ids` have a cancel request: a read, so a worker can look for them
        more often than it renews leases and stop a running activity within a second."""
        if not ids:
            return set()
        r = self.schema.runs
        stmt = select(r.c.id).where(r.c.id.in_(list(ids)), r.c.cancel_requested)
        with self._read("looking for cancel requests") as conn:
            return set(conn.execute(stmt).scalars())

    def expire_dead_owners(self) -> int:
        """Expire leases of owners proven dead (`bridge.journal.owner`), so a restarted
        worker recovers a killed one's runs at once instead of after the lease runs out."""
        r = self.schema.runs
        running = r.c.status == Status.RUNNING.value
        with self._read("finding dead workers") as conn:
            owners = conn.execute(select(r.c.lease_owner).where(running).distinct()).scalars()
            dead = [o for o in owners.all() if o and owner_dead(o)]
        if not dead:
            return 0
        with self._write("expiring dead workers' leases") as conn:
            return conn.execute(
                update(r).where(r.c.lease_owner.in_(dead), running).values(lease_expires_at=0.0)
            ).rowcount

    def release(self, owner: str, ids: Sequence[str] | None = None) -> None:
        """Hand runs back (graceful stop or an infrastructure error) for any worker."""
        r = self.schema.runs
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
        r = self.schema.runs
        with self._write("retrying blocked runs") as conn:
            conn.execute(
                update(r)
                .where(r.c.blocked.is_(True), r.c.name.in_(list(names)))
                .values(status=Status.PENDING.value, blocked=False, updated_at=time.time())
            )

    def next_timer(self) -> float | None:
        """When the next timer of a parked run falls due (what the worker sleeps until).

        Only parked (WAITING, not blocked) runs count: a run's execution deadline timer
        stays armed while a worker executes it past the deadline, and a due timer of a run
        nobody can claim would make the worker loop without pause."""
        r, timers = self.schema.runs, self.schema.timers
        stmt = select(func.min(timers.c.fire_at)).where(
            timers.c.workflow_id.in_(
                select(r.c.id).where(r.c.status == Status.WAITING.value, r.c.blocked.is_(False))
            )
        )
        with self._read("reading timers") as conn:
            return conn.execute(stmt).scalar()
