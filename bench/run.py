"""Run every engine's scenarios, each in its own process, and record the figures.

    python -m bench.run [--only peers|bridge|all] [--quick] [--repeat N] [--all-modes]

Repetitions are interleaved (scenario by scenario, engine order rotated each time)
so every engine sees the same machine conditions; the table shows medians. Results
go to stdout and, unless ``--quick`` or ``--no-write``, into bench/RESULTS.md, one
section per group, so a bridge-only run does not erase the peers' figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import sqlite3
import sys
from collections.abc import Sequence

from bench._harness import (
    FULL,
    QUICK,
    SCENARIOS,
    TABLE_HEADER,
    ChildRun,
    Result,
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
    "bridge": ["bench.bridge_sql"],
}

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


def _measure(module: str, scenario: str, extra: list[str], failures: list[str]) -> list[Result]:
    label = f"{module} {scenario} {' '.join(extra)}".strip()
    print(f"  {label} ...", end="", flush=True)
    run: ChildRun = run_child(module, scenario, extra)
    if run.returncode != 0 or not run.results:
        failures.append(f"{label}: exit {run.returncode}\n{run.stderr_tail}")
        print(f" FAILED (exit {run.returncode})", flush=True)
        return []
    shown = ", ".join(f"{r.scenario}={r.figure:.4g} {r.unit}" for r in run.results)
    print(f" {shown} ({run.wall_s:.1f} s)", flush=True)
    for r in run.results:
        r.detail["ru_maxrss_mb"] = round(run.ru_maxrss_mb, 1)
    return run.results


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
    command = shlex.join(["python", "-m", "bench.run", *given])

    groups = ["peers", "bridge"] if args.only == "all" else [args.only]
    notes: list[str] = []
    modules = {g: _available(ENGINES[g], notes) for g in groups}
    for n in notes:
        print(f"note: {n}")
    scenarios = args.scenario or list(SCENARIOS)
    order = [m for g in groups for m in modules[g]]
    if not order:
        print("nothing to run")
        return 1
    # None runs the engine's default mode, reported as plain "concurrent".
    modes: dict[str, list[str | None]] = {
        m: (list(_modes(m)) or [None]) if args.modes == "all" else [None] for m in order
    }

    started = dt.datetime.now()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    base = ["--quick"] if args.quick else []
    results: list[Result] = []
    failures: list[str] = []
    for rep in range(args.repeat):
        rotated = order[rep % len(order) :] + order[: rep % len(order)]
        print(f"repetition {rep + 1}/{args.repeat}: {', '.join(rotated)}", flush=True)
        for scenario in scenarios:
            for module in rotated:
                if scenario != "concurrent":
                    results += _measure(module, scenario, base, failures)
                    continue
                for mode in modes[module]:
                    extra = base if mode is None else [*base, "--mode", mode]
                    results += _measure(module, scenario, extra, failures)
    finished = dt.datetime.now()
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())

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
        names = {m.rsplit(".", 1)[1] for m in ENGINES[group]}
        group_rows = [r for r in rows if r[0] in names]
        durability = {
            s.engine: s.details[0].get("durability", "")
            for s in summaries
            if s.engine in names and s.scenario == "sequential"
        }
        group_notes = [n for n in notes if any(m in n for m in ENGINES[group])]
        group_failures = [f for f in failures if any(f.startswith(m) for m in ENGINES[group])]
        if not group_rows and not group_notes and not group_failures:
            continue
        body = _section(
            group,
            group_rows,
            durability,
            command=command,
            started=started,
            finished=finished,
            load=(load_start, load_end),
            args=args,
            notes=group_notes,
            failures=group_failures,
        )
        write_section(group, body)
    print("\nwrote bench/RESULTS.md")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
