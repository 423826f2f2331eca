"""Raw floor: the least a durable step can cost on SQLite, with no engine at all.

Each step appends one journal row and commits it (WAL, synchronous=FULL, so every
commit is fsynced before the step returns). Resume reads the journal back in one
query and re-runs the workflow, skipping the steps it finds. Any engine that keeps a
per-step journal on SQLite pays at least this much.

    python -m bench.peer_raw_sqlite sequential|concurrent|resume [--quick] [--json] [--mode M]
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import NoReturn

from bench._harness import (
    Detail,
    Engine,
    Params,
    Stopwatch,
    child_main,
    crash_now,
    live_db_bytes,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, result TEXT);
CREATE TABLE IF NOT EXISTS journal (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, output TEXT NOT NULL,
    PRIMARY KEY (run_id, seq));
"""

# Set only in the crash phase of the resume scenario: 1-based step at which to die.
_crash_at: int | None = None
_executed = 0


def _connect(workdir: Path) -> sqlite3.Connection:
    """Open the journal DB with the strongest per-commit durability WAL offers."""
    conn = sqlite3.connect(workdir / "raw.sqlite", check_same_thread=False, timeout=30.0)
    # WAL: readers do not block the writer; FULL: fsync the WAL on every commit, so
    # a step is on disk before it returns (NORMAL would only fsync at checkpoints).
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SCHEMA)
    conn.commit()
    return conn


def _step(x: int) -> int:
    global _executed
    _executed += 1
    return x + 1


def _record(conn: sqlite3.Connection, run_id: str, seq: int, value: int) -> None:
    conn.execute(
        "INSERT INTO journal (run_id, seq, output) VALUES (?, ?, ?)",
        (run_id, seq, json.dumps(value)),
    )
    conn.commit()


def _start(conn: sqlite3.Connection, run_id: str) -> None:
    conn.execute("INSERT INTO runs (run_id, status) VALUES (?, 'PENDING')", (run_id,))
    conn.commit()


def _finish(conn: sqlite3.Connection, run_id: str, result: int) -> None:
    conn.execute(
        "UPDATE runs SET status = 'SUCCESS', result = ? WHERE run_id = ?",
        (json.dumps(result), run_id),
    )
    conn.commit()


def _workflow(conn: sqlite3.Connection, run_id: str, n: int, journal: dict[int, int]) -> int:
    """n chained steps; journaled steps are replayed from ``journal`` instead of run."""
    x = 0
    for seq in range(1, n + 1):
        if seq == _crash_at:
            crash_now()
        if seq in journal:
            x = journal[seq]
            continue
        x = _step(x)
        _record(conn, run_id, seq, x)
    _finish(conn, run_id, x)
    return x


def sequential(p: Params, workdir: Path) -> Detail:
    """One workflow of p.steps steps, after a short untimed warm-up workflow."""
    conn = _connect(workdir)
    _start(conn, "warmup")
    _workflow(conn, "warmup", p.warmup_steps, {})
    _start(conn, "seq")
    before = live_db_bytes(workdir)
    with Stopwatch() as sw:
        result = _workflow(conn, "seq", p.steps, {})
    conn.close()
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "result": result, "db_bytes_before": before}


async def _async_workflow(conn: sqlite3.Connection, run_id: str, n: int) -> int:
    x = 0
    for seq in range(1, n + 1):
        x = _step(x)
        _record(conn, run_id, seq, x)
        await asyncio.sleep(0)  # let the other workflows interleave between steps
    _finish(conn, run_id, x)
    return x


def _concurrent_asyncio(p: Params, workdir: Path, conn: sqlite3.Connection) -> list[int]:
    """All workflows as asyncio tasks over one connection: commits never contend."""

    async def main() -> list[int]:
        return await asyncio.gather(
            *(_async_workflow(conn, f"wf-{i}", p.steps_per_workflow) for i in range(p.workflows))
        )

    return asyncio.run(main())


def _concurrent_threads(p: Params, workdir: Path, conn: sqlite3.Connection) -> list[int]:
    """One thread and connection per workflow: commits contend on the SQLite lock."""
    results = [0] * p.workflows
    conns = [_connect(workdir) for _ in range(p.workflows)]

    def run(i: int) -> None:
        results[i] = _workflow(conns[i], f"wf-{i}", p.steps_per_workflow, {})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(p.workflows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return results


MODES = {
    "asyncio": (_concurrent_asyncio, "asyncio tasks, one shared connection"),
    "threads": (_concurrent_threads, "one thread+connection per workflow"),
}


def concurrent(p: Params, workdir: Path, mode: str | None = None) -> Detail:
    """p.workflows workflows at once; the journal rows still commit one by one."""
    name = mode or next(iter(MODES))
    run, label = MODES[name]
    conn = _connect(workdir)
    _start(conn, "warmup")
    _workflow(conn, "warmup", p.warmup_steps, {})
    for i in range(p.workflows):
        _start(conn, f"wf-{i}")
    with Stopwatch() as sw:
        results = run(p, workdir, conn)
    conn.close()
    assert results == [p.steps_per_workflow] * p.workflows, results
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "mode": label}


def resume_crash(p: Params, workdir: Path) -> NoReturn:
    """Run the workflow and die just before step p.crash_at starts."""
    global _crash_at
    _crash_at = p.crash_at
    conn = _connect(workdir)
    _start(conn, "resume")
    _workflow(conn, "resume", p.steps, {})
    raise AssertionError("workflow finished instead of crashing")


def resume_finish(p: Params, workdir: Path) -> Detail:
    """Find the pending run, load its journal in one query, re-run it to the end."""
    with Stopwatch() as total:
        with Stopwatch() as opened:
            conn = _connect(workdir)
        (run_id,) = conn.execute("SELECT run_id FROM runs WHERE status = 'PENDING'").fetchone()
        journal = {
            seq: json.loads(out)
            for seq, out in conn.execute(
                "SELECT seq, output FROM journal WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        }
        result = _workflow(conn, run_id, p.steps, journal)
    conn.close()
    return {
        "resume_s": total.wall_s,
        "open_s": opened.wall_s,
        "executed_steps": _executed,
        "result": result,
    }


ENGINE = Engine(
    name="peer_raw_sqlite",
    sequential=sequential,
    concurrent=concurrent,
    resume_crash=resume_crash,
    resume_finish=resume_finish,
    durability="sqlite3 WAL + synchronous=FULL, one INSERT+COMMIT per step",
    concurrent_modes=tuple(MODES),
)

if __name__ == "__main__":
    child_main(ENGINE)
