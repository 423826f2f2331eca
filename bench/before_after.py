"""The embedded backends before and after a change, measured in one run.

    python -m bench.before_after --before REV [--repeat N] [--scenario S] [--write]

A refactor of the journal engine must not make a step slower, and figures from two runs on
this shared VM are not comparable (see bench/README.md). So both trees are measured in the
same run: REV is checked out as a detached git worktree under bench/.work/, and every
measurement runs the tree's own `bench.<engine>` module with that tree as the child's working
directory (`python -m` puts it first on sys.path, ahead of the editable install). The two
trees alternate within each repetition, and which goes first rotates, so both see the same
machine. The verdict compares medians: after / before, per step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench._harness import (
    REPO_DIR,
    SCENARIOS,
    Result,
    fmt,
    markdown_table,
    run_child,
    write_section,
)

ENGINES = ("bench.bridge_sql", "bench.bridge_langgraph")
WORK = REPO_DIR / "bench" / ".work"


def _worktree(rev: str) -> Path:
    """A clean checkout of `rev` beside the benchmark's scratch files, made once."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev],
        cwd=REPO_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = WORK / f"before-{sha}"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), sha],
            cwd=REPO_DIR,
            check=True,
            capture_output=True,
        )
    return path


def _per_step(r: Result) -> float:
    """ms per step for every scenario: lower is better, so one ratio reads the same way."""
    if r.unit == "steps/s":
        return 1000.0 / r.figure
    return r.figure


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.before_after", description=__doc__)
    ap.add_argument("--before", required=True, help="the git revision to compare against")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scenario", choices=SCENARIOS, action="append")
    ap.add_argument("--write", action="store_true", help="record the table in RESULTS.md")
    args = ap.parse_args(argv)
    scenarios = args.scenario or ["sequential", "concurrent"]
    trees = {"before": _worktree(args.before), "after": REPO_DIR}
    command = shlex.join(["python", "-m", "bench.before_after", *(argv or sys.argv[1:])])
    started = dt.datetime.now()
    figures: dict[tuple[str, str, str], list[float]] = {}
    # CPU per step (sequential only): no fsync in it, so it shows what the code costs even
    # when the disk's latency swings from one run to the next.
    cpu: dict[tuple[str, str, str], list[float]] = {}
    failures: list[str] = []
    for rep in range(args.repeat):
        order = list(trees) if rep % 2 == 0 else list(reversed(trees))
        for scenario in scenarios:
            for module in ENGINES:
                for label in order:
                    run = run_child(module, scenario, cwd=trees[label])
                    if run.returncode != 0 or not run.results:
                        failures.append(f"{label} {module} {scenario}:\n{run.stderr_tail}")
                        continue
                    for r in run.results:
                        if r.scenario != scenario:
                            continue
                        key = (module.rsplit(".", 1)[1], scenario, label)
                        figures.setdefault(key, []).append(_per_step(r))
                        if "cpu_ms_per_step" in r.detail:
                            cpu.setdefault(key, []).append(r.detail["cpu_ms_per_step"])
                        print(
                            f"{rep + 1} {label:6} {key[0]} {scenario}: {_per_step(r):.4f} ms/step",
                            flush=True,
                        )
    rows = []
    for module in ENGINES:
        engine = module.rsplit(".", 1)[1]
        for scenario in scenarios:
            before = figures.get((engine, scenario, "before"), [])
            after = figures.get((engine, scenario, "after"), [])
            if not before or not after:
                continue
            b, a = statistics.median(before), statistics.median(after)
            change = (a / b - 1) * 100
            cb = cpu.get((engine, scenario, "before"), [])
            ca = cpu.get((engine, scenario, "after"), [])
            cpu_change = "-"
            if cb and ca:
                mb, ma = statistics.median(cb), statistics.median(ca)
                cpu_change = f"{fmt(mb)} -> {fmt(ma)} ({(ma / mb - 1) * 100:+.1f}%)"
            rows.append(
                [
                    engine,
                    scenario,
                    fmt(b),
                    fmt(a),
                    f"{change:+.1f}%",
                    "met" if change <= 5.0 else "NOT met",
                    cpu_change,
                    str(len(after)),
                ]
            )
    header = [
        "engine",
        "scenario",
        "before ms/step",
        "after ms/step",
        "change",
        "<= +5%",
        "CPU ms/step before -> after",
        "runs",
    ]
    table = markdown_table(header, rows)
    print(table)
    for f in failures:
        print(f"FAILED: {f}")
    if args.write:
        body = "\n".join(
            [
                "## before/after: the journal-core refactor (issue 13)",
                "",
                f"- command: `{command}` (before = `{args.before}`, after = the working tree)",
                f"- date: {started:%Y-%m-%d %H:%M} to {dt.datetime.now():%H:%M} (local time);"
                f" loadavg at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                f"- {args.repeat} repetitions, trees alternating, medians; concurrent shown as"
                " ms per step (1000 / steps/s) so that lower is better everywhere",
                "",
                table,
                "",
            ]
        )
        write_section("before-after", body)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
