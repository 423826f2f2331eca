"""Journal rows: the step upsert, the timers of waits, the taking of a signal.

A row is upserted by (run, index) and never overwritten once settled; a wait's row arms its
timer and settling the wait disarms it, in the same transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, delete, select, text, update

from bridge import codec
from bridge._redact import mask
from bridge.encryption import Keyring, attach, check_keys, seal_row
from bridge.interceptors import Interceptor, payload_codec
from bridge.journal._database import JournalDatabase
from bridge.journal.context import COMPLETED, WAIT_KINDS, WAITING, StepRecord

if TYPE_CHECKING:
    from bridge.config import JournalSettings

_WAITS = WAIT_KINDS


class StepStatements(JournalDatabase):
    """Upsert journal rows (arming and settling timers); take a signal for a wait."""

    def __init__(
        self, settings: JournalSettings, *, interceptors: Sequence[Interceptor] = ()
    ) -> None:
        super().__init__(settings, interceptors=interceptors)
        # The payload columns (`SealedText`) seal and open with the chain's codec: attached
        # to this store's own engine, so journals with other keys in this process keep them.
        self.payload_codec: Keyring | None = payload_codec(self.interceptors)
        attach(self.engine, self.payload_codec, url=settings.url)
        if self.payload_codec is not None:
            self._check_keys(self.payload_codec)

    def _check_keys(self, keyring: Keyring) -> None:
        """Refuse a key that is not the one this journal knows under its id, before
        anything is written with it: a wrong key under the right id would otherwise seal
        new signals and results that no worker with the real key can read.

        The meta table keeps, per key id, a constant sealed with that key (`key_check:ID`,
        `bridge.encryption.check_keys`), written the first time a process opens the
        journal with that key.
        """
        meta = self.schema.meta
        where = f"the journal {mask(self.url)}"
        with self._read("checking the encryption keys") as conn:
            rows = conn.execute(
                select(meta.c.key, meta.c.value).where(meta.c.key.like("key_check:%"))
            ).all()
        recorded = {r.key.partition(":")[2]: r.value for r in rows}
        missing = check_keys(keyring, recorded, where=where)
        if missing and not self.read_only:
            with self._write("recording the encryption keys") as conn:
                conn.execute(
                    self.dialect.insert(meta).on_conflict_do_nothing(index_elements=["key"]),
                    [{"key": f"key_check:{k}", "value": v} for k, v in missing.items()],
                )
            # Re-read: another process opening the journal at once may have won the insert.
            with self._read("checking the encryption keys") as conn:
                rows = conn.execute(
                    select(meta.c.key, meta.c.value).where(meta.c.key.like("key_check:%"))
                ).all()
            check_keys(keyring, {r.key.partition(":")[2]: r.value for r in rows}, where=where)

    def sealed_rows(self, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        """`step_row`s with their payloads sealed, for a statement run on the bare DBAPI
        cursor, which `SealedText` does not see (the sql backend's hot path)."""
        if self.payload_codec is None:
            return rows
        return [seal_row(self.payload_codec, row) for row in rows]

    def _step_upsert(self) -> Any:
        """Built once: constructing an ON CONFLICT statement costs more than running it."""
        if self._upsert_stmt is None:
            st = self.schema.steps
            ins = self.dialect.insert(st)
            changing = (
                "status",
                "output",
                "error",
                "attempt",
                "attempts",
                "finished_at",
                "fire_at",
            )
            self._upsert_stmt = ins.on_conflict_do_update(
                index_elements=["workflow_id", "idx"],
                set_={c: ins.excluded[c] for c in changing},
                # A settled row is never overwritten: the journal is append-only once decided.
                # Spelled as literal SQL: a bound IN list cannot be used with executemany.
                where=text(
                    f"{st.name}.status NOT IN ("
                    + ", ".join(f"'{x}'" for x in sorted(self.settled))
                    + ")"
                ),
            )
        return self._upsert_stmt

    def _upsert_steps(self, conn: Connection, records: Sequence[StepRecord]) -> None:
        """Upsert rows; a wait's row arms its timer, and settling the wait disarms it."""
        timers = self.schema.timers
        conn.execute(self._step_upsert(), [step_row(r) for r in records])
        arming = [r for r in records if r.status == WAITING and r.fire_at is not None]
        if arming:
            conn.execute(
                self.dialect.insert(timers).on_conflict_do_nothing(
                    index_elements=["workflow_id", "idx"]
                ),
                [
                    {"workflow_id": r.workflow_id, "idx": r.idx, "fire_at": r.fire_at}
                    for r in arming
                ],
            )
        for r in records:
            if r.kind in _WAITS and r.status != WAITING:
                conn.execute(
                    delete(timers).where(
                        timers.c.workflow_id == r.workflow_id, timers.c.idx == r.idx
                    )
                )

    def write_steps(self, records: Sequence[StepRecord]) -> None:
        """Upsert journal rows (and arm or settle their timers) in one transaction."""
        with self._write("writing the journal") as conn:
            self._upsert_steps(conn, records)

    def _take_signal(self, conn: Connection, record: StepRecord) -> tuple[bool, Any]:
        """Consume the oldest pending signal wait `record` takes (named `record.name`, or
        one of the names of a multi-name wait). A multi-name wait's payload is recorded as
        `{"name": ..., "payload": ...}`, so the replay knows which signal came."""
        sg = self.schema.signals
        names = wait_names(record.name, record.args)
        row = conn.execute(
            select(sg.c.seq, sg.c.name, sg.c.payload)
            .where(
                sg.c.workflow_id == record.workflow_id,
                sg.c.name.in_(names),
                sg.c.consumed_step.is_(None),
            )
            .order_by(sg.c.seq)
            .limit(1)
            .with_for_update()
        ).first()
        if row is None:
            return False, None
        conn.execute(update(sg).where(sg.c.seq == row.seq).values(consumed_step=record.idx))
        payload = codec.loads(row.payload)
        if _multi(record.args):
            payload = {"name": row.name, "payload": payload}
        return True, payload

    def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        """Write wait `record` completed with the oldest pending signal of its name, or as
        it is (waiting) when there is none; one transaction either way."""
        with self._write("taking a signal") as conn:
            found, payload = self._take_signal(conn, record)
            if found:
                record = StepRecord(
                    **{
                        **record.__dict__,
                        "status": COMPLETED,
                        "output": payload,
                        "finished_at": time.time(),
                    }
                )
            self._upsert_steps(conn, [record])
            return found, payload


def _multi(args: Any) -> bool:
    return isinstance(args, dict) and isinstance(args.get("names"), list)


def wait_names(name: str, args: Any) -> list[str]:
    """The signal names a signal wait's row takes: its own name, or a multi-name wait's
    names (kept in its arguments; its name is only their label)."""
    return [str(n) for n in args["names"]] if _multi(args) else [name]


def step_row(r: StepRecord) -> dict[str, Any]:
    """A step record as the parameters of the step upsert."""
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


def step_record(r: Row[Any]) -> StepRecord:
    """A journal row as a step record."""
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
