"""Run every engine's scenarios, each in its own process, and record the figures.

    python -m bench.run [--only peers|bridge|all] [--quick] [--repeat N] [--modes all|default]

Repetitions are interleaved (scenario by scenario, engine order rotated each time)
so every engine sees the same machine conditions; the table shows medians. Results
go to stdout and, unless ``--quick`` or ``--no-write``, into bench/RESULTS.md, one
section per group, so a bridge-only run does not erase the peers' figures. Ratios
only mean something within one run, so the raw SQLite floor is always measured too,
and shown in the bridge section as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import sqlite3
import sys
import time
from collections.abc import Sequence

from bench._harness import (
    FULL,
    QUICK,
    REPO_DIR,
    SCENARIOS,
    TABLE_HEADER,
    ChildRun,
    Result,
    busy_cpu_s,
    markdown_table,
    print_table,
    run_child,
    summarize,
    table_rows,
    with_best_concurrent,
    write_section,
)

# ---------------------------------------------------------------------------------------
# ENGINE REGISTRY. One entry per module under bench/ that calls _harness.child_main.
# "bridge" holds the project's own executors. bench.bridge_sql is listed already: the
# runner skips a module whose file does not exist yet and says so. Add further bridge
# backends to that list; peers belong in "peers".
# ---------------------------------------------------------------------------------------
ENGINES: dict[str, list[str]] = {
    "peers": ["bench.peer_raw_sqlite", "bench.peer_dbos", "bench.peer_langgraph"],
    "bridge": [
        "bench.bridge_sql",
        "bench.bridge_sql_normal",
        "bench.bridge_langgraph",
        "bench.bridge_langgraph_normal",
    ],
}
# Every figure is also shown as a multiple of this engine's figure in the same run.
FLOOR = "bench.peer_raw_sqlite"

VERSIONED_PACKAGES = (
    "dbos",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "SQLAlchemy",
    "durable-bridge",
)


def _available(modules: Sequence[str], notes: list[str]) -> list[str]:
    """Keep the modules that exist; note the ones that do not (yet)."""
    found = []
    for m in modules:
        if importlib.util.find_spec(m) is None:
            notes.append(f"skipped {m}: {m.replace('.', '/')}.py does not exist yet")
        else:
            found.append(m)
    return found


def _modes(module: str) -> list[str]:
    """Concurrent modes an engine offers, asked from a child (no engine import here)."""
    run = run_child(module, "modes", timeout_s=120)
    for payload in run.payloads:
        if "modes" in payload:
            return list(payload["modes"])
    return []


def _measure(module: str, scenario: str, extra: list[str], failures: list[str]) -> ChildRun:
    """Run one child; on failure keep its stderr and go on with the others."""
    label = f"{module} {scenario} {' '.join(extra)}".strip()
    print(f"  {label} ...", end="", flush=True)
    run = run_child(module, scenario, extra)
    if run.returncode != 0 or not run.results:
        failures.append(f"{label}: exit {run.returncode}\n{run.stderr_tail}")
        print(f" FAILED (exit {run.returncode})", flush=True)
        run.results = []
        return run
    shown = ", ".join(f"{r.scenario}={r.figure:.4g} {r.unit}" for r in run.results)
    print(f" {shown} ({run.wall_s:.1f} s)", flush=True)
    for r in run.results:
        r.detail["ru_maxrss_mb"] = round(run.ru_maxrss_mb, 1)
    return run


async def _await_loop(n: int) -> float:
    async def f(x: int) -> int:
        return x + 1

    x = 0
    t0 = time.perf_counter()
    for _ in range(n):
        x = await f(x)
    return (time.perf_counter() - t0) / n


def _cpu_probe() -> float:
    """ns per ``await`` of a trivial coroutine (best of 5): how fast the CPU is right now.

    The research anchors (shared/research/peer-benchmarks.md) measured 84 ns on this
    kind of machine; a higher figure here means every engine runs slower in proportion.
    """
    return min(asyncio.run(_await_loop(100_000)) for _ in range(5)) * 1e9


def _versions() -> str:
    parts = [f"python {platform.python_version()}", f"sqlite {sqlite3.sqlite_version}"]
    for pkg in VERSIONED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"{pkg} {importlib.metadata.version(pkg)}")
    return ", ".join(parts)


def _machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            model = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}"


def _section(
    group: str,
    rows: list[list[str]],
    durability: dict[str, str],
    *,
    command: str,
    started: dt.datetime,
    finished: dt.datetime,
    load: tuple[str, str],
    probe: tuple[float, float],
    foreign: str,
    args: argparse.Namespace,
    notes: list[str],
    failures: list[str],
) -> str:
    p = QUICK if args.quick else FULL
    lines = [
        f"## {group}",
        "",
        f"- command: `{command}`",
        f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} (local time)",
        f"- machine: {_machine()}; loadavg at start {load[0]}, at end {load[1]}",
        f"- CPU probe (ns per trivial await, best of 5; the research anchors' run had 84):"
        f" {probe[0]:.0f} at start, {probe[1]:.0f} at end",
        f"- CPU used outside the benchmark's processes (other users, daemons, kernel I/O"
        f" threads, which include our own fsyncs): {foreign}",
        f"- versions: {_versions()}",
        f"- sizes: sequential {p.steps} steps; concurrent {p.workflows} workflows x "
        f"{p.steps_per_workflow} steps; resume {p.steps} steps killed as step "
        f"{p.crash_at} starts; {args.repeat} interleaved repetition(s), medians shown",
        "",
        markdown_table(TABLE_HEADER, rows) if rows else "(no results)",
        "",
        "Durability setting per engine:",
        "",
        *(f"- `{e}`: {d}" for e, d in durability.items()),
    ]
    if notes:
        lines += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    if failures:
        lines += ["", "Failures:", ""]
        lines += [f"```\n{f.strip()}\n```" for f in failures]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when any child failed."""
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    ap.add_argument("--only", choices=["peers", "bridge", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repeat")
    ap.add_argument("--repeat", type=int, help="repetitions (default 3, or 1 with --quick)")
    ap.add_argument("--scenario", choices=SCENARIOS, action="append", help="limit scenarios")
    ap.add_argument(
        "--modes",
        choices=["all", "default"],
        help="concurrent: run every mode an engine offers and head with the best one (the"
        " default), or only each engine's default mode (the default with --quick)",
    )
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    args = ap.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.modes = args.modes or ("default" if args.quick else "all")
    given = list(sys.argv[1:] if argv is None else argv)
    python = os.path.relpath(sys.executable, REPO_DIR)
    if python.startswith(".."):
        python = sys.executable
    command = shlex.join([python, "-m", "bench.run", *given])

    groups = ["peers", "bridge"] if args.only == "all" else [args.only]
    notes: list[str] = []
    modules = {g: _available(ENGINES[g], notes) for g in groups}
    for n in notes:
        print(f"note: {n}")
    scenarios = args.scenario or list(SCENARIOS)
    order = [m for g in groups for m in modules[g]]
    if not order:
        print("nothing to run")
        return 0
    if FLOOR not in order:
        order.insert(0, FLOOR)
    # None runs the engine's default mode, reported as plain "concurrent".
    modes: dict[str, list[str | None]] = {
        m: (list(_modes(m)) or [None]) if args.modes == "all" else [None] for m in order
    }

    started = dt.datetime.now()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    probe_start = _cpu_probe()
    print(f"CPU probe: {probe_start:.0f} ns per await (anchors: 84)", flush=True)
    # CPU of our own children, to tell our load from other processes' (see below).
    own = 0.0
    busy0, own0, wall0 = busy_cpu_s(), time.process_time(), time.perf_counter()
    base = ["--quick"] if args.quick else []
    results: list[Result] = []
    failures: list[str] = []
    for rep in range(args.repeat):
        rotated = order[rep % len(order) :] + order[: rep % len(order)]
        print(f"repetition {rep + 1}/{args.repeat}: {', '.join(rotated)}", flush=True)
        for scenario in scenarios:
            for module in rotated:
                runs = (
                    [base]
                    if scenario != "concurrent"
                    else [base if m is None else [*base, "--mode", m] for m in modes[module]]
                )
                for extra in runs:
                    run = _measure(module, scenario, extra, failures)
                    results += run.results
                    own += run.cpu_s
    finished = dt.datetime.now()
    busy = busy_cpu_s() - busy0
    own += time.process_time() - own0
    wall = time.perf_counter() - wall0
    foreign = (
        f"{max(busy - own, 0.0):.0f} CPU-s of {busy:.0f} busy CPU-s over {wall:.0f} s wall"
        f" ({max(busy - own, 0.0) / wall:.0%} of one CPU, on {os.cpu_count()} CPUs)"
    )
    print(f"CPU outside the benchmark's processes: {foreign}")
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    probe_end = _cpu_probe()

    print()
    print_table(results)  # adds the best-of-modes headline itself
    for f in failures:
        print(f"\nFAILED: {f}")
    for n in notes:
        print(f"note: {n}")

    if args.quick or args.no_write:
        print("\nbench/RESULTS.md not written (--quick or --no-write)")
        return 1 if failures else 0

    summaries = with_best_concurrent(summarize(results))
    rows = table_rows(summaries)
    for group in groups:
        # The bridge section repeats the floor's rows: its ratios need them next to it.
        shown = {*ENGINES[group], FLOOR}
        names = {m.rsplit(".", 1)[1] for m in shown}
        group_rows = [r for r in rows if r[0] in names]
        own_rows = [r for r in rows if r[0] in {m.rsplit(".", 1)[1] for m in ENGINES[group]}]
        durability = {
            s.engine: s.details[0].get("durability", "")
            for s in summaries
            if s.engine in names and s.scenario == "sequential"
        }
        group_notes = [n for n in notes if any(m in n for m in ENGINES[group])]
        group_failures = [f for f in failures if any(f.startswith(m) for m in ENGINES[group])]
        if not own_rows and not group_failures:
            continue  # e.g. bench/bridge_sql.py not written yet: keep the old section
        body = _section(
            group,
            group_rows,
            durability,
            command=command,
            started=started,
            finished=finished,
            load=(load_start, load_end),
            probe=(probe_start, probe_end),
            foreign=foreign,
            args=args,
            notes=group_notes,
            failures=group_failures,
        )
        write_section(group, body)
    print("\nwrote bench/RESULTS.md")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
