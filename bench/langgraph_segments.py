"""Cost per step against the run's length on the langgraph backend (issue 16 point 5).

    python -m bench.langgraph_segments                  # 1k/2k/4k/10k steps, writes RESULTS.md
    python -m bench.langgraph_segments --sizes 1000,4000 --no-write

One sequential workflow of N trivial steps (`bench.bridge_langgraph.chain`, after an
untimed 20-step warm-up run in the same process), each measurement in its own process, on:

- `langgraph`: the backend as shipped, whose run's LangGraph thread ends a segment every
  `SEGMENT_STEPS` operations (`backends/langgraph/_graph.py`);
- `langgraph, one segment`: the same with segments turned off (one LangGraph run holds the
  whole history, as before issue 16 point 5), up to 4,000 steps: it is quadratic;
- `sql`: the embedded SQL executor, beside it.

The figure is the wall time per step; CPU time per step (`process_time`) is less sensitive
to the shared machine's load. The goal: the 10,000-step run costs at most 2x the 1,000-step
run per step. Unless `--no-write`, the table goes into its own section of bench/RESULTS.md
(`<!-- BEGIN langgraph-segments -->`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._harness import REPO_DIR, WORK_ROOT, markdown_table, write_section

#: engine label -> (backend, segment_steps or None for the shipped value, largest size)
ENGINES: dict[str, tuple[str, int | None, int]] = {
    "langgraph": ("langgraph", None, 10**9),
    "langgraph, one segment": ("langgraph", 10**9, 4000),
    "sql": ("sql", None, 10**9),
}
_MARK = "SEGMENTS_RESULT "


async def _child(backend: str, segment_steps: int | None, n: int, workdir: Path) -> dict[str, Any]:
    import bridge
    from bench.bridge_langgraph import chain

    if backend == "langgraph":
        from backends.langgraph._worker import LangGraphWorker

        if segment_steps is not None:
            LangGraphWorker.segment_steps = segment_steps
        settings: dict[str, Any] = {
            "backend": "langgraph",
            "langgraph": {"url": f"sqlite:///{workdir}/lg.sqlite", "durability": "FULL"},
        }
    else:
        import backends.sql  # noqa: F401  (imported before the timing)

        settings = {
            "backend": "sql",
            "sql": {"url": f"sqlite:///{workdir}/sql.sqlite", "durability": "FULL"},
        }
    client = await bridge.connect(settings)
    async with client.worker([chain]):
        await client.execute(chain, 20, id="warmup")
        wall, cpu = time.perf_counter(), time.process_time()
        result = await client.execute(chain, n, id="seq", timeout=3600)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.close()
    assert result == n, result
    return {"wall_s": wall, "cpu_s": cpu}


def _measure(label: str, n: int) -> dict[str, Any]:
    backend, segment_steps, _ = ENGINES[label]
    WORK_ROOT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="segments-", dir=WORK_ROOT))
    try:
        argv = [sys.executable, "-m", "bench.langgraph_segments", "--child", backend]
        argv += [str(segment_steps or 0), str(n), str(workdir)]
        out = subprocess.run(argv, cwd=REPO_DIR, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [x for x in out.stdout.splitlines() if x.startswith(_MARK)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{label} {n}: exit {out.returncode}\n{out.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix(_MARK))
    print(
        f"  {label:24} {n:>6} steps: {figures['wall_s']:7.2f} s, "
        f"{figures['wall_s'] / n * 1000:.3f} ms/step, "
        f"{figures['cpu_s'] / n * 1000:.3f} CPU ms/step",
        flush=True,
    )
    return figures


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.langgraph_segments")
    ap.add_argument("--sizes", default="1000,2000,4000,10000")
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    ap.add_argument("--child", nargs=4, metavar=("BACKEND", "SEGMENT", "N", "DIR"))
    args = ap.parse_args(argv)
    if args.child:
        backend, segment, n, workdir = args.child
        figures = asyncio.run(_child(backend, int(segment) or None, int(n), Path(workdir)))
        print(_MARK + json.dumps(figures), flush=True)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    started = dt.datetime.now(dt.UTC)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows: list[list[str]] = []
    ratios: list[str] = []
    for label, (_, _, largest) in ENGINES.items():
        per_step: dict[int, tuple[float, float]] = {}
        for n in sizes:
            if n > largest:
                continue
            f = _measure(label, n)
            per_step[n] = (f["wall_s"] / n * 1000, f["cpu_s"] / n * 1000)
        first = min(per_step)
        for n, (wall, cpu) in per_step.items():
            rows.append(
                [
                    label,
                    f"{n:,}",
                    f"{wall * n / 1000:.2f}",
                    f"{wall:.3f}",
                    f"{cpu:.3f}",
                    f"{wall / per_step[first][0]:.2f}x",
                    f"{cpu / per_step[first][1]:.2f}x",
                ]
            )
        last = max(per_step)
        if last != first:
            ratios.append(
                f"{label}: {last:,} steps / {first:,} steps per step = "
                f"**{per_step[last][0] / per_step[first][0]:.2f}x** wall, "
                f"{per_step[last][1] / per_step[first][1]:.2f}x CPU"
            )
    header = ["engine", "steps", "wall s", "ms/step", "CPU ms/step", "vs first", "CPU vs first"]
    body = "\n".join(
        [
            "## LangGraph backend: cost per step against the run's length (segments)",
            "",
            f"- command: `{shlex.join(['python', '-m', 'bench.langgraph_segments', *argv])}`",
            f"- date: {started:%Y-%m-%d %H:%M} UTC; loadavg at start {load}; "
            f"{os.cpu_count()} CPUs (shared with other work: compare within this table)",
            "- one sequential workflow of N trivial steps per process, after a 20-step "
            "warm-up; durability FULL (an fsynced commit per step) on both backends; "
            "one measurement each",
            "",
            markdown_table(header, rows),
            "",
            *[f"- {r}" for r in ratios],
            "- goal: the 10,000-step run at most 2x the 1,000-step run per step.",
            "- the one-segment rows are the backend with segments turned off, as it was "
            "before issue 16 point 5: LangGraph scans every task write of the checkpoint "
            "and every task future of the invocation on each task call, so its cost per "
            "step grows with the run. With segments the residual growth is the replay of "
            "the run so far, from the bridge's rows, at each segment end.",
            "- `chain` is one branch. A run whose execution ran `ctx.gather` branches ends "
            'no segment after that (docs/architecture.md, "Segments"), so it keeps the '
            "one-segment cost from its first gather on.",
        ]
    )
    print()
    print(body)
    if not args.no_write:
        write_section("langgraph-segments", body)
        print("\nwrote the langgraph-segments section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
