"""A transient storage error never ends a worker (issue 13, defect 1).

Another process holding SQLite's write lock longer than `busy_timeout_ms` (a backup, a long
query, a migration) makes every statement of the worker fail with "database is locked".
The worker logs it, backs off and carries on; once the lock is gone it finishes its runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

import bridge


@bridge.activity
async def doubled_after_lock(x: int) -> int:
    return 2 * x


@bridge.workflow(name="locked_out")
async def locked_out(ctx: bridge.Context, x: int) -> int:
    await ctx.sleep(0.3)  # the timer falls due while the lock is held
    return await ctx.run(doubled_after_lock, x)


def _hold_write_lock(
    path: Path, seconds: float, held: asyncio.Event, loop: asyncio.AbstractEventLoop
) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        loop.call_soon_threadsafe(held.set)
        time.sleep(seconds)
        db.execute("COMMIT")
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_the_worker_survives_a_database_locked_past_its_busy_timeout(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if backend == "langgraph":
        pytest.importorskip("langgraph")
    path = tmp_path / "journal.db"
    client = await bridge.connect(
        {
            "backend": backend,
            backend: {"url": f"sqlite:///{path}", "poll_interval": 0.02, "busy_timeout_ms": 50},
        }
    )
    caplog.set_level(logging.WARNING, logger="bridge")
    try:
        worker = client.worker([locked_out])
        async with worker:
            await client.start(locked_out, 21, id="locked")
            held = asyncio.Event()
            holder = asyncio.create_task(
                asyncio.to_thread(_hold_write_lock, path, 1.0, held, asyncio.get_running_loop())
            )
            await held.wait()
            await holder
            background = worker._background  # type: ignore[attr-defined]
            assert not background.done(), f"the worker ended: {background.exception()!r}"
            assert await client.result("locked", timeout=20) == 42
        assert any("locked" in r.getMessage() for r in caplog.records), "not logged"
    finally:
        await client.close()
