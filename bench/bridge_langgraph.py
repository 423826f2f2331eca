"""durable-bridge on LangGraph: bridge workflows on LangGraph's Functional API + SqliteSaver.

The same scenarios as the peers, through the public API (`bridge.connect` with
`backend="langgraph"`, a worker in the same process, `client.start` / `client.result`).
Each step is a LangGraph `@task` call whose result the backend commits before the workflow
sees it (SqliteSaver's WAL at synchronous=FULL, LangGraph's default), which plain
LangGraph does not do even with `durability="sync"`.

    python -m bench.bridge_langgraph                       # issue 4's comparison (below)
    python -m bench.bridge_langgraph sequential|concurrent|resume [--quick] [--json]

Without a scenario it runs issue 4's comparison: 1000 sequential trivial steps and the
resume of a 1000-step run killed at step 901, through the bridge on LangGraph (at FULL
and at NORMAL durability) and with the same `@entrypoint`/`@task` code written directly
against LangGraph (`peer_langgraph`: SqliteSaver, `durability="sync"`), plus the fsync
floor (`peer_raw_sqlite`), each measurement in its own process, interleaved, `--repeat`
times (default 5). It prints the medians and writes its own section of bench/RESULTS.md
(`<!-- BEGIN langgraph-backend -->`, appended the first time) unless `--no-write`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

# Imported up front: the figures exclude imports. `backends.langgraph` itself loads LangGraph
# lazily (on first use), so the backend's module is named, or the resume figure would count
# LangGraph's imports, which `peer_langgraph` makes before its timing starts.
import backends.langgraph._backend  # noqa: F401
import bridge
from bench._harness import (
    Detail,
    Engine,
    Params,
    Result,
    Stopwatch,
    child_main,
    crash_now,
    fmt,
    live_db_bytes,
    markdown_table,
    run_child,
    write_section,
)

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
        "backend": "langgraph",
        "langgraph": {"url": f"sqlite:///{workdir}/lg.sqlite", "durability": DURABILITY},
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
        "mode": "one worker, one LangGraph thread per run as asyncio tasks",
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
        # Recovery is the worker's normal loop: the dead worker's run is claimed at once,
        # its thread re-invoked with `invoke(None)`, and finished steps replayed.
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
    name="bridge_langgraph",
    sequential=sequential,
    concurrent=concurrent,
    resume_crash=resume_crash,
    resume_finish=resume_finish,
    durability=f"langgraph.durability={DURABILITY} (SqliteSaver, WAL, fsync per commit); "
    "each step committed before the workflow sees it",
)


# --------------------------------------------------------------------------- the comparison

_OURS = "bench.bridge_langgraph"
_OURS_NORMAL = "bench.bridge_langgraph_normal"
_RAW = "bench.peer_langgraph"
_FLOOR = "bench.peer_raw_sqlite"  # one INSERT + fsynced COMMIT per step: what FULL adds
_PLAN = {
    "sequential": (_OURS, _OURS_NORMAL, _RAW, _FLOOR),
    "resume": (_OURS, _OURS_NORMAL, _RAW),
}


def _measure(module: str, scenario: str, extra: list[str]) -> Result:
    run = run_child(module, scenario, extra)
    run.check()
    (result,) = [r for r in run.results if r.scenario == scenario]
    print(f"  {module} {scenario}: {result.figure:.4g} {result.unit}", flush=True)
    return result


def compare(argv: Sequence[str]) -> int:
    """Issue 4's comparison; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m bench.bridge_langgraph")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke sizes, writes nothing")
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = ap.parse_args(argv)
    extra = ["--quick"] if args.quick else []
    started = dt.datetime.now()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    figures: dict[tuple[str, str], list[Result]] = {}
    for rep in range(args.repeat):
        print(f"repetition {rep + 1}/{args.repeat}", flush=True)
        for scenario, modules in _PLAN.items():
            # Rotate the order each repetition, so no engine always runs first.
            shift = rep % len(modules)
            for module in modules[shift:] + modules[:shift]:
                result = _measure(module, scenario, extra)
                figures.setdefault((module, scenario), []).append(result)
    body = _report(figures, argv, started, load, quick=args.quick)
    print()
    print(body)
    if not (args.quick or args.no_write):
        write_section("langgraph-backend", body)
        print("\nwrote the langgraph-backend section of bench/RESULTS.md")
    return 0


def _median(results: list[Result], key: str | None = None) -> float:
    return statistics.median(r.figure if key is None else r.detail[key] for r in results)


def _spread(results: list[Result]) -> str:
    figures = [r.figure for r in results]
    return f"{fmt(statistics.median(figures))} ({fmt(min(figures))}..{fmt(max(figures))})"


def _report(
    figures: dict[tuple[str, str], list[Result]],
    argv: Sequence[str],
    started: dt.datetime,
    load: str,
    *,
    quick: bool,
) -> str:
    rows = []
    for module in _PLAN["sequential"]:
        seq = figures[(module, "sequential")]
        res = figures.get((module, "resume"))
        rows.append(
            [
                module.rsplit(".", 1)[1],
                _spread(seq),
                f"{_median(seq, 'cpu_ms_per_step'):.3f}",
                f"{statistics.median(r.detail['bytes_per_step'] for r in seq):,.0f}",
                _spread(res) if res else "-",
                ",".join(str(r.detail["lost_at_crash"]) for r in res) if res else "-",
            ]
        )

    def ratio(module: str, scenario: str) -> str:
        ours = _median(figures[(module, scenario)])
        return f"{ours / _median(figures[(_RAW, scenario)]):.2f}x"

    sizes = (
        "quick sizes"
        if quick
        else "1000 sequential steps; resume of a 1000-step run killed as step 901 starts"
    )
    header = ["engine", "ms/step", "CPU ms/step", "B/step", "resume ms", "lost at crash"]
    return "\n".join(
        [
            "## LangGraph backend",
            "",
            f"- command: `{shlex.join(['python', '-m', 'bench.bridge_langgraph', *argv])}`",
            f"- date: {started:%Y-%m-%d %H:%M} (local time); loadavg at start {load}; "
            f"{os.cpu_count()} CPUs",
            f"- {sizes}; each figure from its own process (resume: timed after imports, "
            f"store opening included); {len(figures[(_OURS, 'sequential')])} interleaved "
            f"repetitions; median (min..max)",
            "",
            markdown_table(header, rows),
            "",
            "- per step, bridge on LangGraph / raw LangGraph: "
            f"FULL **{ratio(_OURS, 'sequential')}**, "
            f"NORMAL **{ratio(_OURS_NORMAL, 'sequential')}** (goal: at most 1.15x)",
            "- resume, bridge on LangGraph / raw LangGraph: "
            f"FULL **{ratio(_OURS, 'resume')}**, "
            f"NORMAL **{ratio(_OURS_NORMAL, 'resume')}** (goal: at most 1.0x)",
            "- `bridge_langgraph`: a bridge workflow on the langgraph backend at its default "
            '`langgraph.durability = "FULL"`: async `@entrypoint`/`@task` on the durable '
            "SqliteSaver (`backends/langgraph/_saver.py`), each step's task write committed "
            "and fsynced before the workflow continues, so nothing is lost at the crash.",
            '- `bridge_langgraph_normal`: the same at `"NORMAL"`: still committed before '
            "the workflow continues (a killed process loses nothing), fsynced at WAL "
            "checkpoints only.",
            "- `peer_langgraph`: the same chain written directly against LangGraph (sync "
            '`@entrypoint`/`@task`, SqliteSaver, `durability="sync"`): task writes are '
            "committed by a background thread while the workflow goes on, so a crash loses "
            "the last few (langchain-ai/langgraph#8039) and their fsyncs cost it no wait.",
            "- `peer_raw_sqlite`: one INSERT and one fsynced COMMIT per step, no engine: the "
            "price of FULL's wait, which raw LangGraph does not pay on its critical path.",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        child_main(ENGINE)
    else:
        raise SystemExit(compare(sys.argv[1:]))
