"""Continue-as-new keeps a long loop bounded (issue 17 point 5), on every engine.

A 10,000-iteration loop (one activity step per iteration) that continues as new every 500
iterations, run by one in-process worker per engine, each engine in a process of its own
(so its peak RSS is its own). Reported per engine: the total time, the time of the first and
of the last generation (bounded: the last is no slower than the first), the RSS after the
first generation and at the end and the peak RSS (bounded: no growth with iterations), the
neutral events of the last generation and, on Temporal, its native history events (bounded:
about 500 steps' worth, far from Temporal's ~51,200-event limit), and the time to replay the
last generation's history against the code (`bridge.testing.replay.replay_neutral`).

    .venv/bin/python -m bench.continue_as_new                  # every engine, a table
    .venv/bin/python -m bench.continue_as_new --engine sql     # one engine
    .venv/bin/python -m bench.continue_as_new --iterations 2000 --every 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ENGINES = ("sql", "langgraph", "temporal")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _settings(engine: str, work: Path, stack: ExitStack) -> dict[str, Any]:
    if engine == "sql":
        return {"backend": "sql", "sql": {"url": f"sqlite:///{work}/journal.db"}}
    if engine == "langgraph":
        return {"backend": "langgraph", "langgraph": {"url": f"sqlite:///{work}/lg.db"}}
    from backends.temporal._testing import TemporalTestEnvironment

    env = stack.enter_context(TemporalTestEnvironment())
    return env.settings(work)


async def measure(engine: str, iterations: int, every: int) -> dict[str, Any]:
    """One engine's figures (run in a process of its own)."""
    import bridge
    from bench._can_workflow import loop
    from bridge.history import EventType
    from bridge.testing.replay import replay_neutral

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        settings = _settings(engine, Path(tmp), stack)
        run_id = f"can-{engine}-{time.time_ns()}"
        async with await bridge.connect(settings) as client, client.worker([loop]):
            rss: list[float] = []
            t0 = time.perf_counter()
            await client.start(loop, 0, 0, iterations, every, id=run_id)
            while not (await client.describe(run_id)).status.is_terminal:
                rss.append(_rss_mb())
                await asyncio.sleep(0.2)
            total = time.perf_counter() - t0
            result = await client.result(run_id)
            # Each generation's duration from its own history, following `continued_from`
            # back from the last one (kept under <id>@<n>).
            spans: list[float] = []
            key: str | None = run_id
            while key is not None:
                events = await client.history(key)
                spans.append((events[-1].time - events[0].time).total_seconds())
                started = next(e for e in events if e.type is EventType.WORKFLOW_STARTED)
                previous = (started.details or {}).get("continued_from")
                key = previous if isinstance(previous, str) else None
            spans.reverse()
            history = await client.history(run_id)
            r0 = time.perf_counter()
            replayed = await replay_neutral(history, loop, source=run_id)
            replay_s = time.perf_counter() - r0
            native_events = None
            if engine == "temporal":
                native = json.loads(await client.backend.export_history(run_id))
                native_events = len(native.get("events", []))
        generations = spans
        early = rss[min(len(rss) - 1, max(1, len(rss) // 20))] if rss else float("nan")
    assert result == iterations, f"{engine}: the loop returned {result}, expected {iterations}"
    return {
        "engine": engine,
        "iterations": iterations,
        "every": every,
        "generations": len(generations),
        "total_s": round(total, 2),
        "first_generation_s": round(generations[0], 3),
        "last_generation_s": round(generations[-1], 3),
        "rss_at_5pct_mb": round(early, 1),
        "rss_end_mb": round(_rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "last_generation_events": len(history),
        "last_generation_native_events": native_events,
        "replay_last_generation_s": round(replay_s, 3),
        "replayed_steps": replayed,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| engine | total s | 1st gen s | last gen s | RSS at 5% / end / peak MB "
        "| last gen events (native) | replay last gen s |\n|---|---|---|---|---|---|---|\n"
    )
    return head + "".join(
        f"| {r['engine']} | {r['total_s']} | {r['first_generation_s']} | "
        f"{r['last_generation_s']} | {r['rss_at_5pct_mb']} / {r['rss_end_mb']} / "
        f"{r['peak_rss_mb']} | {r['last_generation_events']}"
        + (f" ({r['last_generation_native_events']})" if r["last_generation_native_events"] else "")
        + f" | {r['replay_last_generation_s']} |\n"
        for r in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, action="append")
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="One JSON row per engine.")
    args = parser.parse_args()
    engines = args.engine or list(ENGINES)
    if len(engines) == 1:
        row = asyncio.run(measure(engines[0], args.iterations, args.every))
        print(json.dumps(row) if args.json else _table([row]))
        return
    rows = []
    for engine in engines:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.continue_as_new",
                "--engine",
                engine,
                "--json",
                "--iterations",
                str(args.iterations),
                "--every",
                str(args.every),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"{engine} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps(rows) if args.json else _table(rows))


if __name__ == "__main__":
    main()
