"""Shared plumbing for the benchmark: scenarios, child processes, timing, results.

Every measurement runs in its own interpreter (``python -m bench.<engine> <scenario>
--json``) so that engines never share memory, threads or global state, and so that
each child can report its own peak RSS. An engine module only supplies four
functions (see ``Engine``) and calls ``child_main``; everything else lives here so
that all engines are timed the same way.

Child protocol: the child prints one line ``BENCH_RESULT {json}`` on stdout, where the
JSON is ``{"results": [Result...]}``. Anything else on stdout or stderr is ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_ROOT = BENCH_DIR / ".work"
RESULTS_FILE = BENCH_DIR / "RESULTS.md"

RESULT_MARKER = "BENCH_RESULT "
# Exit code of a child that killed itself on purpose (resume scenario, crash phase).
CRASH_EXIT_CODE = 17
CHILD_TIMEOUT_S = 600.0

SCENARIOS = ("sequential", "concurrent", "resume")
# Internal phases of the resume scenario; not meant to be called by hand.
_PHASE_CRASH = "_resume_crash"
_PHASE_FINISH = "_resume_finish"

Detail = dict[str, Any]


@dataclass(frozen=True)
class Params:
    """Sizes of one benchmark run; ``FULL`` is the published shape, ``QUICK`` a smoke test."""

    steps: int  # sequential and resume: steps in the one workflow
    workflows: int  # concurrent: number of workflows started at once
    steps_per_workflow: int  # concurrent: steps in each of them
    warmup_steps: int  # untimed warm-up workflow run first in the same process

    @property
    def crash_at(self) -> int:
        """1-based step that is about to start when the crash phase kills itself.

        Steps ``1 .. crash_at - 1`` completed before the kill (900 of 1000 in FULL).
        """
        return self.steps * 9 // 10 + 1


FULL = Params(steps=1000, workflows=200, steps_per_workflow=10, warmup_steps=20)
QUICK = Params(steps=200, workflows=50, steps_per_workflow=10, warmup_steps=5)


@dataclass
class Result:
    """One reported figure, e.g. ``peer_dbos / sequential = 1.76 ms/step``."""

    engine: str
    scenario: str
    figure: float
    unit: str
    peak_rss_mb: float | None = None
    detail: Detail = field(default_factory=dict)

    def to_json(self) -> Detail:
        """Plain dict for the child-to-parent JSON line."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        """Inverse of ``to_json``."""
        return cls(**dict(data))


@dataclass
class Engine:
    """What an engine module provides. Each function runs inside the child process.

    - ``sequential(p, workdir)``: one workflow of ``p.steps`` steps after an untimed
      warm-up; returns ``{"wall_s": ..., "cpu_s": ..., "result": ...,
      "db_bytes_before": live_db_bytes(workdir)}``, timing only the workflow run (no
      imports, no DB setup). DB files must be named ``*.sqlite``.
    - ``concurrent(p, workdir, mode)``: ``p.workflows`` workflows of
      ``p.steps_per_workflow`` steps at once; returns ``{"wall_s": ..., "cpu_s": ...,
      "mode": "<how they were run>"}``. ``mode`` is one of ``concurrent_modes`` (None
      means the first, the engine's best honest setup).
    - ``resume_crash(p, workdir)``: starts a ``p.steps`` workflow and calls
      ``crash_now()`` when step ``p.crash_at`` is about to start. Never returns.
    - ``resume_finish(p, workdir)``: in a fresh process, resumes that workflow to the
      end; returns ``{"resume_s": ..., "executed_steps": ..., "result": ...}``, timing
      from after imports (store opening included) to completion.
    """

    name: str
    sequential: Callable[[Params, Path], Detail]
    concurrent: Callable[[Params, Path, str | None], Detail]
    resume_crash: Callable[[Params, Path], NoReturn]
    resume_finish: Callable[[Params, Path], Detail]
    # Which durability knob this engine runs with; shown in RESULTS.md.
    durability: str = ""
    # Ways to run the concurrent scenario; the first is the default and the headline.
    concurrent_modes: tuple[str, ...] = ("default",)


# --------------------------------------------------------------------------- in the child


def peak_rss_mb() -> float:
    """Peak resident set size (VmHWM) of this process, in MB, read from /proc."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM missing from /proc/self/status (not Linux?)")


def crash_now() -> NoReturn:
    """Die like a hard crash: no atexit, no finally, no flush of engine buffers."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


class Stopwatch:
    """Wall and CPU time of a ``with`` block (CPU covers every thread of the process)."""

    def __enter__(self) -> Stopwatch:
        self._w0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._w0
        self.cpu_s = time.process_time() - self._c0


def live_db_bytes(workdir: Path) -> int:
    """Bytes in live pages of every SQLite DB under ``workdir``: the storage cost.

    Read through a separate connection, so content still in the WAL counts; file
    sizes would not do, since a WAL file holds whole page images and is reused.
    """
    total = 0
    for f in workdir.rglob("*.sqlite"):
        conn = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        finally:
            conn.close()
        total += (pages - free) * page_size
    return total


def fresh_workdir(engine: str, scenario: str) -> Path:
    """A new empty directory under bench/.work/ (gitignored) for one measurement."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{engine}-{scenario}-", dir=WORK_ROOT))


def _emit(results: Sequence[Result], as_json: bool) -> None:
    if as_json:
        payload = json.dumps({"results": [r.to_json() for r in results]})
        print(RESULT_MARKER + payload, flush=True)
    else:
        print_table(results)


def _run_sequential(engine: Engine, p: Params, workdir: Path) -> list[Result]:
    out = engine.sequential(p, workdir)
    if out.get("result") != p.steps:
        raise AssertionError(f"{engine.name}: sequential returned {out.get('result')!r}")
    # Engines report the size before the timed run, so warm-up and schema do not count.
    grown = live_db_bytes(workdir) - out.get("db_bytes_before", 0)
    out["bytes_per_step"] = round(grown / p.steps)
    out["cpu_ms_per_step"] = round(out["cpu_s"] * 1000 / p.steps, 4)
    out["n"] = p.steps
    figure = out["wall_s"] * 1000 / p.steps
    return [Result(engine.name, "sequential", figure, "ms/step", peak_rss_mb(), out)]


def _run_concurrent(engine: Engine, p: Params, workdir: Path, mode: str | None) -> list[Result]:
    out = engine.concurrent(p, workdir, mode)
    total = p.workflows * p.steps_per_workflow
    out["total_steps"] = total
    out["n"] = f"{p.workflows}x{p.steps_per_workflow}"
    out["cpu_ms_per_step"] = round(out["cpu_s"] * 1000 / total, 4)
    figure = total / out["wall_s"]
    scenario = "concurrent" if mode is None else f"concurrent:{mode}"
    return [Result(engine.name, scenario, figure, "steps/s", peak_rss_mb(), out)]


def _run_resume(engine: Engine, p: Params, workdir: Path, module: str, quick: bool) -> list[Result]:
    """Orchestrate the two phases in two fresh processes sharing ``workdir``."""
    common = ["--workdir", str(workdir)] + (["--quick"] if quick else [])
    crash = run_child(module, _PHASE_CRASH, common)
    if crash.returncode != CRASH_EXIT_CODE:
        raise RuntimeError(
            f"{module}: crash phase exited {crash.returncode}, expected {CRASH_EXIT_CODE}\n"
            f"{crash.stderr_tail}"
        )
    finish = run_child(module, _PHASE_FINISH, [*common, "--t0", repr(time.time())])
    finish.check()
    (phase,) = finish.results
    out = dict(phase.detail)
    expected_new = p.steps - p.crash_at + 1
    if out.get("result") != p.steps:
        raise AssertionError(f"{engine.name}: resume returned {out.get('result')!r}")
    # Steps that had completed before the kill but were not durable, so ran again.
    out["lost_at_crash"] = out["executed_steps"] - expected_new
    out["process_wall_s"] = round(finish.wall_s, 4)
    out["crash_phase_rss_mb"] = round(crash.ru_maxrss_mb, 1)
    out["n"] = p.steps
    out["crash_at"] = p.crash_at
    rss = phase.peak_rss_mb
    return [
        Result(engine.name, "resume", out["resume_s"] * 1000, "ms", rss, out),
        Result(engine.name, "resume_process", finish.wall_s, "s", rss, out),
    ]


def _run_resume_finish(engine: Engine, p: Params, workdir: Path, t0: float) -> list[Result]:
    startup_s = time.time() - t0 if t0 else None
    out = engine.resume_finish(p, workdir)
    out["startup_s"] = round(startup_s, 4) if startup_s is not None else None
    return [Result(engine.name, _PHASE_FINISH, out["resume_s"], "s", peak_rss_mb(), out)]


def child_main(engine: Engine, argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.<engine> <scenario> [--json] [--quick]``."""
    ap = argparse.ArgumentParser(prog=f"python -m bench.{engine.name}")
    ap.add_argument("scenario", choices=[*SCENARIOS, "modes", _PHASE_CRASH, _PHASE_FINISH])
    ap.add_argument("--json", action="store_true", help="print one BENCH_RESULT line")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes")
    ap.add_argument("--workdir", type=Path, help="reuse this directory (resume phases)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--mode",
        choices=engine.concurrent_modes,
        help="concurrent: run this mode, reported as 'concurrent:MODE'",
    )
    ap.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    p = QUICK if args.quick else FULL
    if args.scenario == "modes":  # lets the runner list modes without importing engines
        print(RESULT_MARKER + json.dumps({"modes": list(engine.concurrent_modes)}), flush=True)
        return
    if args.scenario == _PHASE_CRASH:
        engine.resume_crash(p, args.workdir)
        raise AssertionError("resume_crash returned instead of crashing")
    if args.scenario == _PHASE_FINISH:
        _emit(_run_resume_finish(engine, p, args.workdir, args.t0), as_json=True)
        return

    workdir = fresh_workdir(engine.name, args.scenario)
    module = f"bench.{engine.name}"
    if args.scenario == "sequential":
        results = _run_sequential(engine, p, workdir)
    elif args.scenario == "concurrent":
        results = _run_concurrent(engine, p, workdir, args.mode)
    else:
        results = _run_resume(engine, p, workdir, module, args.quick)
    for r in results:
        r.detail["durability"] = engine.durability
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    _emit(results, args.json)


# --------------------------------------------------------------------------- in the parent


@dataclass
class ChildRun:
    """One finished child process: exit code, parsed results, wall time, kernel RSS."""

    module: str
    scenario: str
    returncode: int
    wall_s: float
    ru_maxrss_mb: float
    cpu_s: float  # user+sys of the child and its reaped descendants
    results: list[Result]
    stderr_tail: str
    payloads: list[Detail] = field(default_factory=list)

    def check(self) -> None:
        """Raise with the child's stderr when it failed or printed no result."""
        if self.returncode != 0 or not self.results:
            raise RuntimeError(
                f"{self.module} {self.scenario}: exit {self.returncode}, "
                f"{len(self.results)} results\n{self.stderr_tail}"
            )


def run_child(
    module: str,
    scenario: str,
    extra: Sequence[str] = (),
    timeout_s: float = CHILD_TIMEOUT_S,
    cwd: Path = REPO_DIR,
) -> ChildRun:
    """Run ``python -m module scenario --json`` and reap it with wait4.

    wait4 gives this child's own rusage, so ``ru_maxrss`` is its peak RSS (or that of
    its largest reaped descendant), independent of other children of this process.
    Output goes to temp files because wait4 and ``communicate`` cannot be combined.
    ``cwd`` is the source tree the child imports (``-m`` puts it first on sys.path), so
    another checkout of the project can be measured with this one's interpreter.
    """
    cmd = [sys.executable, "-m", module, scenario, "--json", *extra]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        timer = threading.Timer(timeout_s, _kill_pid, args=(proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall_s = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    payloads = [
        json.loads(line[len(RESULT_MARKER) :])
        for line in stdout.splitlines()
        if line.startswith(RESULT_MARKER)
    ]
    results = [Result.from_json(r) for pl in payloads for r in pl.get("results", [])]
    return ChildRun(
        module=module,
        scenario=scenario,
        returncode=proc.returncode,
        wall_s=wall_s,
        ru_maxrss_mb=usage.ru_maxrss / 1024,
        cpu_s=usage.ru_utime + usage.ru_stime,
        results=results,
        stderr_tail="\n".join(stderr.splitlines()[-30:]),
        payloads=payloads,
    )


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes).

    With the CPU time of our own children, this tells how much of a run's machine time
    went to other people's processes, which would skew the figures.
    """
    with open("/proc/stat", encoding="ascii") as fh:
        fields = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- reporting


@dataclass
class Summary:
    """All repetitions of one (engine, scenario): median and spread."""

    engine: str
    scenario: str
    unit: str
    figures: list[float]
    rss: list[float]
    details: list[Detail]

    @property
    def median(self) -> float:
        """Median over repetitions (robust to one noisy run on a shared machine)."""
        return statistics.median(self.figures)


def summarize(results: Iterable[Result]) -> list[Summary]:
    """Group results by (engine, scenario), keeping first-seen order."""
    groups: dict[tuple[str, str], Summary] = {}
    for r in results:
        key = (r.engine, r.scenario)
        s = groups.setdefault(key, Summary(r.engine, r.scenario, r.unit, [], [], []))
        s.figures.append(r.figure)
        if r.peak_rss_mb is not None:
            s.rss.append(r.peak_rss_mb)
        s.details.append(r.detail)
    return list(groups.values())


def with_best_concurrent(summaries: Sequence[Summary]) -> list[Summary]:
    """Add a headline ``concurrent`` row per engine: its best ``concurrent:MODE`` row.

    Each engine is given its best honest figure among the ways of running it that were
    measured; every mode stays in the table, so the choice is visible.
    """
    out: list[Summary] = []
    done: set[str] = set()
    for s in summaries:
        if s.scenario.startswith("concurrent:") and s.engine not in done:
            modes = [m for m in summaries if m.engine == s.engine and m.scenario != s.scenario]
            modes = [s, *(m for m in modes if m.scenario.startswith("concurrent:"))]
            best = max(modes, key=lambda m: m.median)
            details = [{**d, "best_of": len(modes)} for d in best.details]
            out.append(Summary(s.engine, "concurrent", best.unit, best.figures, best.rss, details))
            done.add(s.engine)
        out.append(s)
    return out


def fmt(x: float) -> str:
    """Three significant digits, thousands separators for big numbers."""
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def table_rows(
    summaries: Sequence[Summary], floor_engine: str = "peer_raw_sqlite"
) -> list[list[str]]:
    """Rows of the results table; ``x raw`` compares with the raw floor of the same run."""
    floor = {s.scenario: s.median for s in summaries if s.engine == floor_engine}
    rows = []
    for s in summaries:
        # "concurrent:threads" is compared with the floor's headline "concurrent".
        base = floor.get(s.scenario.split(":")[0])
        if base and s.unit == "steps/s":
            ratio = f"{base / s.median:.1f}"  # higher throughput is better: invert
        elif base:
            ratio = f"{s.median / base:.1f}"
        else:
            ratio = "-"
        spread = f"{fmt(min(s.figures))}..{fmt(max(s.figures))}" if len(s.figures) > 1 else "-"
        rss = f"{max(s.rss):.0f}" if s.rss else "-"
        rows.append(
            [
                s.engine,
                s.scenario,
                fmt(s.median),
                s.unit,
                spread,
                ratio,
                rss,
                str(len(s.figures)),
                _note(s),
            ]
        )
    return rows


TABLE_HEADER = [
    "engine",
    "scenario",
    "median",
    "unit",
    "min..max",
    "x raw",
    "peak RSS MB",
    "runs",
    "notes",
]


def _note(s: Summary) -> str:
    d = s.details[0]
    parts = []
    if s.scenario == "sequential":
        cpu = statistics.median(x["cpu_ms_per_step"] for x in s.details)
        bps = statistics.median(x["bytes_per_step"] for x in s.details)
        parts.append(f"CPU {cpu:.3f} ms/step, {bps:,.0f} B/step")
    elif s.scenario.startswith("concurrent"):
        best = f"best of {d['best_of']} modes: " if "best_of" in d else "mode: "
        parts.append(f"{d.get('n')}, {best}{d.get('mode')}")
    elif s.scenario == "resume":
        lost = ",".join(str(x["lost_at_crash"]) for x in s.details)
        opened = statistics.median(x.get("open_s", 0.0) for x in s.details) * 1000
        parts.append(f"lost at crash: {lost}; open {opened:.0f} ms")
    elif s.scenario == "resume_process":
        start = [x["startup_s"] for x in s.details if x.get("startup_s") is not None]
        if start:
            parts.append(f"interpreter+imports {statistics.median(start):.2f} s")
    return "; ".join(parts)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table, numbers right-aligned."""
    align = ["---:" if h in {"median", "x raw", "peak RSS MB", "runs"} else "---" for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def print_table(results: Sequence[Result]) -> None:
    """Plain-text table on stdout, for a person watching a run."""
    rows = [TABLE_HEADER, *table_rows(with_best_concurrent(summarize(results)))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def replace_section(text: str, name: str, body: str) -> str:
    """Swap the ``<!-- BEGIN name -->..<!-- END name -->`` block, or append it."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    return text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"


def write_section(name: str, body: str, path: Path = RESULTS_FILE) -> None:
    """Update one section of bench/RESULTS.md, leaving the other sections alone."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = (
            "# Benchmark results\n\n"
            "Written by `python -m bench.run`; see bench/README.md for what is measured.\n"
            "Each section is replaced by the run that produced it.\n"
        )
    path.write_text(replace_section(text, name, body), encoding="utf-8")
