"""DBOS 3.4 on a SQLite system database: the closest peer to an embedded executor.

Steps are ``@DBOS.step`` functions called from a ``@DBOS.workflow``. DBOS commits each
step's output row before the step returns, which is already its strongest (and
only) per-step durability: there is no knob to turn up. DBOS does not set a journal
mode on SQLite, so it runs on the SQLite defaults (rollback journal, synchronous=FULL);
we keep them, as a DBOS user would get them. Step outputs use DBOS's default
serializer; we do not configure one.

    python -m bench.peer_dbos sequential|concurrent|resume [--quick] [--json] [--mode M]
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NoReturn

from dbos import DBOS, DBOSConfig, SetWorkflowID

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
# get_result polls the DB for workflows this process did not start itself (recovery,
# queues); DBOS's default is 1 s, which would dominate a 2 s measurement.
_POLL_S = 0.01


@DBOS.step()
def step(x: int) -> int:
    """The trivial step: its output row is committed before it returns."""
    global _executed
    _executed += 1
    return x + 1


@DBOS.workflow()
def chain(n: int) -> int:
    """n steps in a row, each fed the previous result."""
    x = 0
    for seq in range(1, n + 1):
        if seq == _crash_at:
            crash_now()
        x = step(x)
    return x


@DBOS.step()
async def astep(x: int) -> int:
    """Async twin of ``step`` for the async concurrent mode."""
    global _executed
    _executed += 1
    return x + 1


@DBOS.workflow()
async def achain(n: int) -> int:
    """Async twin of ``chain``."""
    x = 0
    for _ in range(n):
        x = await astep(x)
    return x


def _launch(workdir: Path) -> None:
    config: DBOSConfig = {
        "name": "bench-dbos",
        "system_database_url": f"sqlite:///{workdir / 'dbos.sqlite'}",
        # Pinned so the resume process recovers the crashed run whatever the source hash.
        "application_version": "bench",
        "log_level": "ERROR",
    }
    DBOS(config=config)
    DBOS.launch()


def _warm_up(p: Params) -> None:
    with SetWorkflowID("warmup"):
        assert chain(p.warmup_steps) == p.warmup_steps


def sequential(p: Params, workdir: Path) -> Detail:
    """One workflow of p.steps steps, run in the calling thread."""
    _launch(workdir)
    _warm_up(p)
    before = live_db_bytes(workdir)
    with SetWorkflowID("seq"), Stopwatch() as sw:
        result = chain(p.steps)
    DBOS.destroy()
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "result": result, "db_bytes_before": before}


def _concurrent_start_workflow(p: Params) -> list[Any]:
    handles = [DBOS.start_workflow(chain, p.steps_per_workflow) for _ in range(p.workflows)]
    return [h.get_result(polling_interval_sec=_POLL_S) for h in handles]


def _concurrent_async(p: Params) -> list[Any]:
    async def main() -> list[Any]:
        handles = [
            await DBOS.start_workflow_async(achain, p.steps_per_workflow)
            for _ in range(p.workflows)
        ]
        return [await h.get_result(polling_interval_sec=_POLL_S) for h in handles]

    return asyncio.run(main())


def _concurrent_queue(p: Params) -> list[Any]:
    # The research anchor's setup: poll the queue every 100 ms instead of 1 s.
    q = DBOS.register_queue("bench", polling_interval_sec=0.1)
    handles = [q.enqueue(chain, p.steps_per_workflow) for _ in range(p.workflows)]
    return [h.get_result(polling_interval_sec=_POLL_S) for h in handles]


MODES = {
    "start_workflow": (_concurrent_start_workflow, "DBOS.start_workflow, executor threads"),
    "async": (_concurrent_async, "DBOS.start_workflow_async, async workflow+steps"),
    "queue": (_concurrent_queue, "queue (poll 0.1 s), executor threads"),
}


def concurrent(p: Params, workdir: Path, mode: str | None = None) -> Detail:
    """p.workflows workflows started at once, then waited for."""
    name = mode or next(iter(MODES))
    run, label = MODES[name]
    _launch(workdir)
    _warm_up(p)
    with Stopwatch() as sw:
        results = run(p)
    DBOS.destroy()
    assert results == [p.steps_per_workflow] * p.workflows, results
    return {"wall_s": sw.wall_s, "cpu_s": sw.cpu_s, "mode": label}


def resume_crash(p: Params, workdir: Path) -> NoReturn:
    """Run the workflow and die just before step p.crash_at starts."""
    global _crash_at
    _crash_at = p.crash_at
    _launch(workdir)
    with SetWorkflowID("resume"):
        chain(p.steps)
    raise AssertionError("workflow finished instead of crashing")


def resume_finish(p: Params, workdir: Path) -> Detail:
    """Launch DBOS on the same DB: launch() recovers the PENDING run by itself."""
    with Stopwatch() as total:
        with Stopwatch() as opened:
            _launch(workdir)
        result = DBOS.retrieve_workflow("resume").get_result(polling_interval_sec=_POLL_S)
    DBOS.destroy()
    return {
        "resume_s": total.wall_s,
        "open_s": opened.wall_s,
        "executed_steps": _executed,
        "result": result,
    }


ENGINE = Engine(
    name="peer_dbos",
    sequential=sequential,
    concurrent=concurrent,
    resume_crash=resume_crash,
    resume_finish=resume_finish,
    durability="@DBOS.step output committed before return (SQLite defaults: DELETE, FULL)",
    concurrent_modes=tuple(MODES),
)

if __name__ == "__main__":
    child_main(ENGINE)
