"""Concurrency permits and rate buckets in the journal's database, shared by every worker.

Rate limits (`bridge.RateLimit`): one row per bucket (`{prefix}rate_buckets`); an attempt
reserves a token in one short transaction (`take_token`) and waits out what it is told.

Concurrency limits (`bridge.Limit`):
One row per step holding or queued for a permit of a key (`{prefix}permits`). A step asks
with `acquire_permit`: its row is queued if new, and permits are granted first come, first
served while fewer than `max` are held. A step that gets none parks its run
(`waiting_for = "permit:<key>"`); `release_permit`, when a holder's step is final, and
`release_run_permits`, when a run ends, grant the next queued steps and wake their runs.
`park` looks for a permit granted meanwhile (`permit_granted`), under the run's row lock
that a grant also takes, so a wake-up is never lost between the two.

Grants of one key are serialized by locking the key's queue rows (FOR UPDATE on
PostgreSQL; SQLite's write transactions are serialized already), so two workers never both
take the last permit. Asking again with the same holder (a replay, a retry, the worker that
recovers a run after another died) is answered from its row.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, delete, exists, select, update

from bridge.backend import Status
from bridge.concurrency import reserve
from bridge.journal._database import JournalDatabase

__all__ = ["PermitStatements"]


class PermitStatements(JournalDatabase):
    """Acquire, release and look up concurrency permits; see the module docstring."""

    def acquire_permit(self, key: str, holder: str, workflow_id: str, limit: int) -> bool:
        """True when `holder` holds a permit of `key` (now or already), False when queued."""
        p = self.schema.permits
        with self._write("taking a concurrency permit") as conn:
            row = conn.execute(
                select(p.c.granted).where(p.c.key == key, p.c.holder == holder)
            ).first()
            if row is not None and row.granted:
                return True
            if row is None:
                conn.execute(
                    p.insert().values(
                        key=key,
                        holder=holder,
                        workflow_id=workflow_id,
                        max_held=limit,
                        granted=False,
                        queued_at=time.time(),
                    )
                )
            return holder in self._grant(conn, key, limit)

    def take_token(self, key: str, per_second: float, burst: int) -> float:
        """Reserve a token of bucket `key`: the time (epoch seconds) to use it from."""
        b = self.schema.rate_buckets
        with self._write("taking a rate-limit token") as conn:
            row = conn.execute(
                select(b.c.tokens, b.c.updated_at).where(b.c.key == key).with_for_update()
            ).first()
            now = time.time()
            tokens, updated = (float(burst), now) if row is None else row
            left, ready_at = reserve(tokens, updated, now, per_second, burst)
            if row is None:
                conn.execute(b.insert().values(key=key, tokens=left, updated_at=now))
            else:
                conn.execute(update(b).where(b.c.key == key).values(tokens=left, updated_at=now))
        return ready_at

    def release_permit(self, key: str, holder: str) -> None:
        """Give back `holder`'s permit (or leave the queue) and grant the next in line."""
        p = self.schema.permits
        with self._write("releasing a concurrency permit") as conn:
            gone = conn.execute(
                delete(p).where(p.c.key == key, p.c.holder == holder).returning(p.c.max_held)
            ).scalar()
            if gone is not None:
                self._grant(conn, key, int(gone))

    def release_run_permits(self, conn: Connection, workflow_id: str) -> None:
        """Drop what an ended run held or queued for, granting each key's next in line."""
        p = self.schema.permits
        dropped = conn.execute(
            delete(p).where(p.c.workflow_id == workflow_id).returning(p.c.key, p.c.max_held)
        ).all()
        for key, limit in sorted(set(dropped)):
            self._grant(conn, key, int(limit))

    def permit_granted(self, conn: Connection, workflow_id: str) -> bool:
        """Whether a step of the run holds a permit: when the run parks, one granted after
        its step asked (the run's steps release theirs before it parks) must wake it."""
        p = self.schema.permits
        query = select(exists().where(p.c.workflow_id == workflow_id, p.c.granted.is_(True)))
        return bool(conn.execute(query).scalar())

    def _grant(self, conn: Connection, key: str, limit: int) -> set[str]:
        """Grant queued holders of `key`, oldest first, up to `limit` held; wake their runs.
        Returns the holders granted now."""
        p, r = self.schema.permits, self.schema.runs
        rows = conn.execute(
            select(p.c.holder, p.c.workflow_id, p.c.granted)
            .where(p.c.key == key)
            .order_by(p.c.queued_at, p.c.holder)
            .with_for_update()
        ).all()
        free = limit - sum(1 for row in rows if row.granted)
        chosen = [row for row in rows if not row.granted][: max(free, 0)]
        if not chosen:
            return set()
        holders = [row.holder for row in chosen]
        conn.execute(update(p).where(p.c.key == key, p.c.holder.in_(holders)).values(granted=True))
        conn.execute(
            update(r)
            .where(
                r.c.id.in_({row.workflow_id for row in chosen}),
                r.c.status == Status.WAITING.value,
                r.c.blocked.is_(False),
            )
            .values(status=Status.PENDING.value, updated_at=time.time())
        )
        return set(holders)
