"""LangGraph 1.2 functional API on SqliteSaver: the other embedded peer.

Steps are ``@task`` calls inside one ``@entrypoint(checkpointer=SqliteSaver)``, invoked
with ``durability="sync"``, LangGraph's strongest setting. SqliteSaver switches the DB
to WAL and leaves synchronous at FULL. Even in "sync" mode, a task's result
(``put_writes``) is committed by a background thread, so the next task can start
before the previous result is on disk; the resume scenario counts the steps lost
that way (``lost_at_crash``).

LangGraph has no recovery daemon: resuming means ``invoke(None, config)`` on the
unfinished thread, which re-runs the entrypoint and replays finished tasks from
their stored writes.

    python -m bench.peer_langgraph sequential|concurrent|resume [--quick] [--json] [--mode M]
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.func import entrypoint, task
from langgraph.pregel import Pregel

from bench._harness import (
    Detail,
    Engine,
    Params,
    Stopwatch,
    child_main,
    crash_now,
    live_db_bytes,
)

# Set only in the crash phase of the resume scenario: 1-based step at which to die.
_crash_at: int | None = None
_executed = 0


@task
def step(x: int) -> int:
    """The trivial step; its result becomes a pending write of the thread's checkpoint."""
    global _executed
    _executed += 1
    return x + 1


@task
async def astep(x: int) -> int:
    """Async twin of ``step``."""
    global _executed
    _executed += 1
    return x + 1


def _chain_body(n: int) -> int:
    x = 0
    for seq in range(1, n + 1):
        if seq == _crash_at:
            crash_now()
        x = step(x).result()
    return x


async def _achain_body(n: int) -> int:
    x = 0
    for _ in range(n):
        x = await astep(x)
    return x


def _build(saver: SqliteSaver) -> Pregel:
    """The entrypoint binds its checkpointer at decoration time, so build it per saver."""

    @entrypoint(checkpointer=saver)
    def chain(n: int) -> int:
        return _chain_body(n)

    return chain


def _abuild(saver: AsyncSqliteSaver) -> Pregel:
    @entrypoint(checkpointer=saver)
    async def chain(n: int) -> int:
        return await _achain_body(n)

    return chain


def _cfg(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _saver(workdir: Path) -> SqliteSaver:
    # check_same_thread=False is safe: SqliteSaver serializes its cursor with a lock.
    saver = SqliteSaver(sqlite3.connect(workdir / "lg.sqlite", check_same_thread=False))
    saver.setup()
    return saver


def sequential(p: Params, workdir: Path) -> Detail:
    """One entrypoint run of p.steps tasks on one thread_id."""
    chain = _build(_saver(workdir))
    assert chain.invoke(p.warmup_steps, _cfg("warmup"), durability="sync") == p.warmup_steps
    before = live_db_bytes(workdir)
    with Stopwatch() as sw:
        result = chain.invoke(p.steps, _cfg("seq"), durability="sync")
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "result": result, "db_bytes_before": before}


def _concurrent_threads(p: Params, workdir: Path, workers: int) -> list[Any]:
    chain = _build(_saver(workdir))
    chain.invoke(p.warmup_steps, _cfg("warmup"), durability="sync")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(chain.invoke, p.steps_per_workflow, _cfg(f"wf-{i}"), durability="sync")
            for i in range(p.workflows)
        ]
        return [f.result() for f in futures]


def _concurrent_async(p: Params, workdir: Path) -> list[Any]:
    async def main() -> list[Any]:
        async with AsyncSqliteSaver.from_conn_string(str(workdir / "lg.sqlite")) as saver:
            chain = _abuild(saver)
            await chain.ainvoke(p.warmup_steps, _cfg("warmup"), durability="sync")
            return await asyncio.gather(
                *(
                    chain.ainvoke(p.steps_per_workflow, _cfg(f"wf-{i}"), durability="sync")
                    for i in range(p.workflows)
                )
            )

    return asyncio.run(main())


def concurrent(p: Params, workdir: Path, mode: str | None = None) -> Detail:
    """p.workflows thread_ids invoked at once on one shared saver."""
    name = mode or next(iter(MODES))
    run, label = MODES[name]
    with Stopwatch() as sw:
        results = run(p, workdir)
    assert results == [p.steps_per_workflow] * p.workflows, results
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "mode": label}


MODES = {
    "threads": (
        lambda p, w: _concurrent_threads(p, w, p.workflows),
        "sync invoke, one pool thread per workflow, shared SqliteSaver",
    ),
    "threads8": (
        lambda p, w: _concurrent_threads(p, w, 8),
        "sync invoke, 8 pool threads, shared SqliteSaver",
    ),
    "async": (_concurrent_async, "ainvoke + asyncio.gather, async tasks, AsyncSqliteSaver"),
}


def resume_crash(p: Params, workdir: Path) -> NoReturn:
    """Run the entrypoint and die just before task p.crash_at starts."""
    global _crash_at
    _crash_at = p.crash_at
    chain = _build(_saver(workdir))
    chain.invoke(p.steps, _cfg("resume"), durability="sync")
    raise AssertionError("workflow finished instead of crashing")


def resume_finish(p: Params, workdir: Path) -> Detail:
    """invoke(None) on the unfinished thread: the body re-runs, finished tasks replay."""
    with Stopwatch() as total:
        with Stopwatch() as opened:
            chain = _build(_saver(workdir))
        assert chain.get_state(_cfg("resume")).next, "thread is not unfinished"
        result = chain.invoke(None, _cfg("resume"), durability="sync")
    return {
        "resume_s": total.wall_s,
        "open_s": opened.wall_s,
        "executed_steps": _executed,
        "result": result,
    }


ENGINE = Engine(
    name="peer_langgraph",
    sequential=sequential,
    concurrent=concurrent,
    resume_crash=resume_crash,
    resume_finish=resume_finish,
    durability='@entrypoint/@task, SqliteSaver (WAL, FULL), durability="sync"',
    concurrent_modes=tuple(MODES),
)

if __name__ == "__main__":
    child_main(ENGINE)
