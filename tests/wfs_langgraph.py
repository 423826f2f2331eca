"""Workflows of the LangGraph backend's own tests, importable by worker subprocesses."""

from __future__ import annotations

import os
import signal
import sqlite3

import bridge
from tests.wfs import side_effect


@bridge.workflow
async def kill_after(ctx: bridge.Context, ledger_path: str, k: int, kill_flag: str) -> list[str]:
    """Five ledgered steps; SIGKILLs its own worker as soon as step `k`'s result is back in
    the workflow, while `kill_flag` exists: the moment LangGraph alone can lose step k."""
    done = []
    for i in range(1, 6):
        done.append(await ctx.run(side_effect, ledger_path, f"step{i}", ""))
        if i == k and os.path.exists(kill_flag):
            os.kill(os.getpid(), signal.SIGKILL)
    return done


#: What `sees_its_steps` found on disk right after each step returned (for the test).
SEEN_ON_DISK: list[int] = []


@bridge.activity
async def plus_one(x: int) -> int:
    return x + 1


def task_results_on_disk(db_path: str) -> int:
    """Step results in LangGraph's `writes` table, read through a connection of its own."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM writes WHERE channel = '__return__'").fetchone()[
            0
        ]
    finally:
        conn.close()


@bridge.workflow
async def sees_its_steps(ctx: bridge.Context, db_path: str, n: int) -> int:
    """Counts, from workflow code, the step results already committed (a test probe: real
    workflow code would not read the database)."""
    x = 0
    for _ in range(n):
        x = await ctx.run(plus_one, x)
        SEEN_ON_DISK.append(task_results_on_disk(db_path))
    return x
