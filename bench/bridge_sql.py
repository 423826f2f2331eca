"""durable-bridge's embedded SQL executor, at its strongest per-step setting.

The same three scenarios as the peers, through the public API: `bridge.connect`, a worker
in the same process, `client.start` / `client.result`. Every step is a journaled activity
whose row is committed (WAL, synchronous=FULL) before the workflow sees its result.

    python -m bench.bridge_sql sequential|concurrent|resume [--quick] [--json]
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NoReturn

import backends.sql  # noqa: F401  (imported up front: the figures exclude imports)
import bridge
from bench._harness import Detail, Engine, Params, Stopwatch, child_main, crash_now, live_db_bytes

DURABILITY = "FULL"

# Set only in the crash phase of the resume scenario: 1-based step at which to die.
_crash_at: int | None = None
_executed = 0


@bridge.activity
async def inc(x: int) -> int:
    global _executed
    _executed += 1
    return x + 1


@bridge.workflow
async def chain(ctx: bridge.Context, n: int) -> int:
    x = 0
    for seq in range(1, n + 1):
        if seq == _crash_at:
            crash_now()
        x = await ctx.run(inc, x)
    return x


def _settings(workdir: Path) -> dict[str, Any]:
    return {
        "backend": "sql",
        "sql": {"url": f"sqlite:///{workdir}/bridge.sqlite", "durability": DURABILITY},
    }


async def _sequential(p: Params, workdir: Path) -> Detail:
    client = await bridge.connect(_settings(workdir))
    async with client.worker([chain]):
        await client.execute(chain, p.warmup_steps, id="warmup")
        before = live_db_bytes(workdir)
        with Stopwatch() as sw:
            result = await client.execute(chain, p.steps, id="seq")
    await client.close()
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "result": result, "db_bytes_before": before}


def sequential(p: Params, workdir: Path) -> Detail:
    """One workflow of p.steps steps, after a short untimed warm-up workflow."""
    return asyncio.run(_sequential(p, workdir))


async def _concurrent(p: Params, workdir: Path) -> Detail:
    client = await bridge.connect(_settings(workdir))
    async with client.worker([chain]):
        await client.execute(chain, p.warmup_steps, id="warmup")
    ids = [f"wf-{i}" for i in range(p.workflows)]
    for id in ids:
        await client.start(chain, p.steps_per_workflow, id=id)
    with Stopwatch() as sw:
        async with client.worker([chain]):
            results = await asyncio.gather(*(client.result(id) for id in ids))
    await client.close()
    assert results == [p.steps_per_workflow] * p.workflows, results
    return {
        "wall_s": sw.wall_s,
        "cpu_s": sw.cpu_s,
        "mode": "one worker, runs as asyncio tasks, group commit",
    }


def concurrent(p: Params, workdir: Path, mode: str | None = None) -> Detail:
    """p.workflows workflows started first, then one worker runs them all."""
    return asyncio.run(_concurrent(p, workdir))


async def _crash(p: Params, workdir: Path) -> None:
    client = await bridge.connect(_settings(workdir))
    async with client.worker([chain]):
        await client.execute(chain, p.steps, id="resume")


def resume_crash(p: Params, workdir: Path) -> NoReturn:
    """Run the workflow and die just before step p.crash_at starts."""
    global _crash_at
    _crash_at = p.crash_at
    asyncio.run(_crash(p, workdir))
    raise AssertionError("workflow finished instead of crashing")


async def _finish(p: Params, workdir: Path) -> Detail:
    with Stopwatch() as total:
        with Stopwatch() as opened:
            client = await bridge.connect(_settings(workdir))
        # Recovery is the worker's normal loop: the dead worker's run is claimed at once.
        async with client.worker([chain]):
            result = await client.result("resume")
    await client.close()
    return {
        "resume_s": total.wall_s,
        "open_s": opened.wall_s,
        "executed_steps": _executed,
        "result": result,
    }


def resume_finish(p: Params, workdir: Path) -> Detail:
    """A fresh process: a worker recovers the run, replays 900 steps, runs the rest."""
    return asyncio.run(_finish(p, workdir))


ENGINE = Engine(
    name="bridge_sql",
    sequential=sequential,
    concurrent=concurrent,
    resume_crash=resume_crash,
    resume_finish=resume_finish,
    durability=f"sql.durability={DURABILITY} (WAL, fsync per commit; group commit)",
)

if __name__ == "__main__":
    child_main(ENGINE)
