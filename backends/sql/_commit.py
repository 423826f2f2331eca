"""Group commit: journal writes that become ready together share one transaction.

A write is queued and flushed by a callback scheduled with `call_soon`, i.e. after every
coroutine that is ready in this loop iteration has run. One sequential workflow still gets
one commit per step; 200 concurrent workflows whose steps finish together get one commit for
all of them, which is where the throughput over one-commit-per-step engines comes from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from backends.sql._store import Store
from bridge.journal.context import StepRecord


class GroupCommitter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._records: list[StepRecord] = []
        self._finishes: list[dict[str, Any]] = []
        # Each waiter: its future, its finish's index (None for step writes) and the runs
        # its step records belong to.
        self._waiters: list[tuple[asyncio.Future[bool], int | None, set[str]]] = []
        self._scheduled = False

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def write(self, records: Sequence[StepRecord]) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._records.extend(records)
        self._waiters.append((fut, None, {r.workflow_id for r in records}))
        self._schedule()
        return fut

    def finish(self, **finish: Any) -> asyncio.Future[bool]:
        """Queue a run's ending; the future says whether the lease was still held."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((fut, len(self._finishes), set()))
        self._finishes.append(finish)
        self._schedule()
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        records, self._records = self._records, []
        finishes, self._finishes = self._finishes, []
        waiters, self._waiters = self._waiters, []
        try:
            held, clashed = self._store.write_batch(records, finishes)
        except BaseException as exc:
            for fut, _, _ in waiters:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for fut, index, runs in waiters:
            if fut.done():
                continue
            if runs & clashed:
                # Another worker decided this step first: stop this execution; the run
                # goes on from the journal, which holds the decided outcome.
                fut.cancel()
            else:
                fut.set_result(True if index is None else held[index])
