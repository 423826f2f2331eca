"""Scale-out on PostgreSQL (issue 18 point 7): throughput with 1, 2 and 4 worker processes,
and one worker holding 10,000 runs parked on a signal.

(a) **scale**: for each worker count, a fresh database, the workers started (each its own
process, `python -m bench.scale_out --worker LEDGER`, settings from BRIDGE_* variables as
for `bridge worker`) and ready, then one client starts `--runs` runs of a `--steps`-step
chain (x -> x + 1 activities) one after the other. Timed from just before the first start
to the last completion (the largest `updated_at` of the completed runs, read from the
journal). Checked: every run COMPLETED with x + steps, every run has exactly `steps`
journaled steps, and the workers' ledgers (an in-memory count per (run, step) in each
worker, written out when it stops) hold every (run, step) exactly once: no step ran twice,
in one worker or across workers.

(b) **parked**: a fresh database, one worker; `--parked` runs started, each parks at once on
`ctx.wait_for_signal("go")`. Once the journal shows all of them WAITING, the worker's VmRSS
(/proc/<pid>/status) is read; then the client signals every run and the time from the first
signal to the last completion is taken. Checked: every run COMPLETED with its own result.

Each measurement runs in a database of its own (`CREATE DATABASE bench_scale_<random>`,
dropped afterwards). Besides wall time, it reports the CPU seconds of the workers, of the
PostgreSQL backends serving the measurement's database (by pid, from pg_stat_activity), and
how busy the whole machine was (/proc/stat), so a ceiling set by the machine's CPUs shows.

    .venv/bin/python -m bench.scale_out                    # the published run (~8 min)
    .venv/bin/python -m bench.scale_out --runs 200 --parked 1000 --repeat 1   # a quick look
    .venv/bin/python -m bench.scale_out --only scale --workers 1,2 --mode backlog
    .venv/bin/python -m bench.scale_out --json             # one JSON line per measurement

Scale options: `--workers 1,2,4`, `--runs 2000`, `--steps 5`, `--repeat 3` (interleaved,
medians), `--mode live,backlog` (see `measure_scale`), `--max-concurrency default,100` (the
workers' `sql.max_concurrency`: a worker claims up to that many runs at once, so with the
default 1000 the first workers to poll take a 2,000-run backlog between them). Parked:
`--parked 10000`. `--only scale|parked` runs one part. `BENCH_SCALE_PROFILE=PATH` runs each
worker under cProfile and writes its stats to PATH (meant for one worker: `--only parked`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get(
    "BENCH_PG_ADMIN", "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"
)
URL_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432"
READY = "worker ready"
TICK = os.sysconf("SC_CLK_TCK")
# A measurement that takes longer than this is reported as a failure, not waited for.
PHASE_TIMEOUT = 900.0


# -- the worker process ----------------------------------------------------------------
async def _worker(ledger: str) -> None:
    import bridge
    from bench import _scale_out_workflow as wl

    client = await bridge.connect()  # BRIDGE_* variables, as `bridge worker` reads them
    worker = client.worker([wl.chain, wl.parked])
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    print(READY, flush=True)
    try:
        await worker.run()
    finally:
        await client.close()
        rows = [[wf, idx, n] for (wf, idx), n in wl.EXECUTED.items()]
        Path(ledger).write_text(json.dumps({"pid": os.getpid(), "executed": rows}))


# -- measuring helpers -----------------------------------------------------------------
@contextmanager
def fresh_database() -> Iterator[tuple[str, str]]:
    """A new, empty database: (SQLAlchemy URL, libpq DSN); dropped afterwards."""
    import psycopg

    name = f"bench_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{URL_BASE}/{name}", ADMIN_DSN.replace("dbname=test", f"dbname={name}")
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of process `pid` in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    cols = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = cols[3] + cols[4]  # idle + iowait
    return sum(cols) - idle, sum(cols)


class Sampler:
    """CPU use over a measured window: the workers', the database's backends', the machine's."""

    def __init__(self, conn: Any, dbname: str, worker_pids: list[int]) -> None:
        self.conn, self.dbname, self.worker_pids = conn, dbname, worker_pids
        self.start_backends = self._backends()
        self.start_workers = {p: _proc_cpu_s(p) for p in worker_pids}
        self.start_machine = _machine_ticks()
        self.start_load = os.getloadavg()

    def _backends(self) -> dict[int, float]:
        pids = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,)
        ).fetchall()
        return {pid: _proc_cpu_s(pid) for (pid,) in pids}

    def stop(self) -> dict[str, Any]:
        backends = self._backends()
        busy0, total0 = self.start_machine
        busy1, total1 = _machine_ticks()
        ncpu = os.cpu_count() or 1
        return {
            "workers_cpu_s": round(
                sum(_proc_cpu_s(p) - self.start_workers[p] for p in self.worker_pids), 2
            ),
            "postgres_cpu_s": round(
                sum(cpu - self.start_backends.get(pid, 0.0) for pid, cpu in backends.items()), 2
            ),
            "machine_busy_cpus": round(ncpu * (busy1 - busy0) / max(1, total1 - total0), 2),
            "loadavg_start": self.start_load[0],
            "loadavg_end": os.getloadavg()[0],
        }


class Workers:
    """Worker subprocesses on one database; always killed at the end."""

    def __init__(self, url: str, work: Path, max_concurrency: int | None = None) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.env.update(BRIDGE_BACKEND="sql", BRIDGE_SQL_URL=url, PYTHONPATH=str(ROOT))
        if max_concurrency is not None:
            self.env["BRIDGE_SQL_MAX_CONCURRENCY"] = str(max_concurrency)
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ledgers: list[Path] = []
        self.logs: list[Path] = []

    def start(self, count: int) -> list[int]:
        for _ in range(count):
            n = len(self.procs)
            ledger, log = self.work / f"ledger{n}.json", self.work / f"worker{n}.log"
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.scale_out", "--worker", str(ledger)],
                        cwd=ROOT,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.ledgers.append(ledger)
            self.logs.append(log)
        deadline = time.monotonic() + 60
        for proc, log in zip(self.procs, self.logs, strict=True):
            while READY not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.02)
        return [p.pid for p in self.procs]

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM (graceful: each writes its ledger), then the ledgers."""
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=60)
        return [json.loads(path.read_text()) for path in self.ledgers]

    def errors(self) -> list[str]:
        """Log lines at WARNING or above (lease lost, database errors)."""
        return [
            line
            for log in self.logs
            for line in log.read_text(errors="replace").splitlines()
            if line and line != READY
        ]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _counts(conn: Any) -> Counter[str]:
    return Counter(
        dict(conn.execute("SELECT status, count(*) FROM bridge_workflows GROUP BY status"))
    )


def _wait_for(conn: Any, status: str, n: int, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        counts = _counts(conn)
        if counts[status] >= n:
            return
        if counts["FAILED"] or counts["CANCELLED"]:
            raise RuntimeError(f"{what}: runs ended badly: {dict(counts)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: timed out, {dict(counts)}")
        time.sleep(poll)


def _last_completion(conn: Any) -> float:
    (t,) = conn.execute(
        "SELECT max(updated_at) FROM bridge_workflows WHERE status = 'COMPLETED'"
    ).fetchone()
    return float(t)


def _check_results(conn: Any, prefix: str, n: int, expected: Any) -> None:
    rows = conn.execute(
        "SELECT id, status, result FROM bridge_workflows WHERE id LIKE %s", (prefix + "%",)
    ).fetchall()
    assert len(rows) == n, f"{len(rows)} runs in the journal, expected {n}"
    bad = [
        (id, status, result)
        for id, status, result in rows
        if status != "COMPLETED" or json.loads(result) != expected(int(id[len(prefix) :]))
    ]
    assert not bad, f"{len(bad)} runs without the right result, e.g. {bad[:3]}"


# -- (a) throughput with N workers -----------------------------------------------------
async def measure_scale(
    workers: int, runs: int, steps: int, mode: str, max_concurrency: int | None
) -> dict[str, Any]:
    """`mode` "live": the workers run while the client starts the runs, timed from the first
    start; "backlog": the workers are frozen (SIGSTOP) while the client starts every run,
    then released (SIGCONT), timed from the release: the workers' own rate, without the
    client's starts competing for the CPUs. `max_concurrency` is the workers'
    `sql.max_concurrency` (None: the default, 1000), the most runs one worker claims."""
    import psycopg

    import bridge
    from bench import _scale_out_workflow as wl

    with fresh_database() as (url, dsn), tempfile.TemporaryDirectory() as tmp:
        client = await bridge.connect({"backend": "sql", "sql": {"url": url}})
        procs = Workers(url, Path(tmp), max_concurrency)
        try:
            pids = procs.start(workers)
            with psycopg.connect(dsn, autocommit=True) as conn:
                dbname = dsn.split("dbname=")[1].split()[0]
                if mode == "backlog":
                    for pid in pids:
                        os.kill(pid, signal.SIGSTOP)
                else:
                    sampler = Sampler(conn, dbname, pids)
                t_first = time.time()
                for i in range(runs):
                    await client.start(wl.chain, i, steps, id=f"r{i}")
                t_started = time.time()
                done_by_last_start = _counts(conn)["COMPLETED"]
                t0 = t_first
                if mode == "backlog":
                    sampler = Sampler(conn, dbname, pids)
                    t0 = time.time()
                    for pid in pids:
                        os.kill(pid, signal.SIGCONT)
                _wait_for(conn, "COMPLETED", runs, f"{workers} worker(s)")
                t_end = _last_completion(conn)
                cpu = sampler.stop()
                _check_results(conn, "r", runs, lambda i: i + steps)
                per_run = conn.execute(
                    "SELECT workflow_id, count(*), max(attempt) FROM bridge_steps "
                    "GROUP BY workflow_id"
                ).fetchall()
                (claims,) = conn.execute("SELECT sum(executions) FROM bridge_workflows").fetchone()
            await client.close()
            ledgers = procs.stop()
            errors = procs.errors()
        finally:
            procs.kill()
    assert len(per_run) == runs and all(c == steps and a == 1 for _, c, a in per_run), (
        "journaled steps per run differ from the chain's",
        [r for r in per_run if r[1] != steps or r[2] != 1][:3],
    )
    executed: Counter[tuple[str, int]] = Counter()
    runs_per_worker = []
    for ledger in ledgers:
        mine = {wf for wf, _, _ in ledger["executed"]}
        runs_per_worker.append(len(mine))
        for wf, idx, n in ledger["executed"]:
            executed[(wf, idx)] += n
    twice = [k for k, n in executed.items() if n > 1]
    assert len(executed) == runs * steps, f"ledger has {len(executed)} (run, step) pairs"
    assert not twice, f"{len(twice)} steps ran more than once, e.g. {twice[:3]}"
    wall = t_end - t0
    return {
        "scenario": "scale",
        "mode": mode,
        "max_concurrency": max_concurrency,
        "workers": workers,
        "runs": runs,
        "steps": steps,
        "wall_s": round(wall, 3),
        "start_phase_s": round(t_started - t_first, 3),
        "runs_per_s": round(runs / wall, 1),
        "steps_per_s": round(runs * steps / wall, 1),
        "completed_by_last_start": done_by_last_start,
        "runs_per_worker": runs_per_worker,
        "extra_claims": int(claims) - runs,
        "steps_executed": sum(executed.values()),
        "steps_twice": len(twice),
        "worker_log_lines": len(errors),
        "worker_log_sample": errors[:5],
        **cpu,
    }


# -- (b) many runs parked on a signal in one worker ------------------------------------
async def measure_parked(parked: int) -> dict[str, Any]:
    import psycopg

    import bridge
    from bench import _scale_out_workflow as wl

    with fresh_database() as (url, dsn), tempfile.TemporaryDirectory() as tmp:
        client = await bridge.connect({"backend": "sql", "sql": {"url": url}})
        procs = Workers(url, Path(tmp))
        try:
            (pid,) = procs.start(1)
            time.sleep(0.5)
            rss_idle = _status_kb(pid, "VmRSS")
            with psycopg.connect(dsn, autocommit=True) as conn:
                t0 = time.time()
                for i in range(parked):
                    await client.start(wl.parked, i, id=f"p{i}")
                t_started = time.time()
                _wait_for(conn, "WAITING", parked, "parking", poll=0.2)
                t_parked = time.time()
                rss_parked = _status_kb(pid, "VmRSS")
                time.sleep(2.0)
                rss_parked_2s = _status_kb(pid, "VmRSS")
                hwm_parked = _status_kb(pid, "VmHWM")
                sampler = Sampler(conn, dsn.split("dbname=")[1].split()[0], [pid])
                t1 = time.time()
                for i in range(parked):
                    await client.signal(f"p{i}", "go", 1)
                t_signalled = time.time()
                _wait_for(conn, "COMPLETED", parked, "after the signals", poll=0.2)
                t_end = _last_completion(conn)
                cpu = sampler.stop()
                rss_done = _status_kb(pid, "VmRSS")
                hwm_done = _status_kb(pid, "VmHWM")
                _check_results(conn, "p", parked, lambda i: i + 1)
            await client.close()
            procs.stop()
            errors = procs.errors()
        finally:
            procs.kill()
    return {
        "scenario": "parked",
        "parked": parked,
        "start_phase_s": round(t_started - t0, 3),
        "all_parked_after_s": round(t_parked - t0, 3),
        "rss_idle_mb": round(rss_idle / 1024, 1),
        "rss_parked_mb": round(rss_parked / 1024, 1),
        "rss_parked_2s_mb": round(rss_parked_2s / 1024, 1),
        "peak_rss_while_parking_mb": round(hwm_parked / 1024, 1),
        "signal_phase_s": round(t_signalled - t1, 3),
        "signal_to_all_completed_s": round(t_end - t1, 3),
        "completed_per_s": round(parked / (t_end - t1), 1),
        "rss_done_mb": round(rss_done / 1024, 1),
        "peak_rss_mb": round(hwm_done / 1024, 1),
        "worker_log_lines": len(errors),
        "worker_log_sample": errors[:5],
        **cpu,
    }


# -- the parent: one measurement per process -------------------------------------------
def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale_out", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {args} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _tables(rows: list[dict[str, Any]]) -> str:
    out = []
    scale = [r for r in rows if r["scenario"] == "scale"]
    groups: dict[tuple[str, int | None, int], list[dict[str, Any]]] = {}
    for r in scale:
        groups.setdefault((r["mode"], r["max_concurrency"], r["workers"]), []).append(r)
    order = sorted(groups, key=lambda k: (k[1] is not None, k[1] or 0, k[0] != "live", k[2]))
    median_rate = {k: statistics.median(r["runs_per_s"] for r in groups[k]) for k in groups}
    if scale:
        out.append(
            "| timed from | max_concurrency | workers | runs/s median (min..max) | steps/s "
            "| x 1 worker | wall s | starts took s | completed when starts ended "
            "| runs per worker (median run) | worker CPU s | PG backends CPU s "
            "| machine busy CPUs | reps |\n"
            "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        )
        for key in order:
            mode, mc, workers = key
            reps = sorted(groups[key], key=lambda r: r["runs_per_s"])
            mid = reps[(len(reps) - 1) // 2]
            base = median_rate.get((mode, mc, 1))
            ratio = f"{median_rate[key] / base:.2f}" if base else "-"

            def med(field: str, reps: list[dict[str, Any]] = reps) -> float:
                return float(statistics.median(r[field] for r in reps))

            out.append(
                f"| {'first start' if mode == 'live' else 'release (backlog)'} | "
                f"{mc or '1000 (default)'} | {workers} | {median_rate[key]:,.0f} "
                f"({reps[0]['runs_per_s']:,.0f}..{reps[-1]['runs_per_s']:,.0f}) | "
                f"{median_rate[key] * mid['steps']:,.0f} | {ratio} | {med('wall_s'):.2f} | "
                f"{med('start_phase_s'):.2f} | {med('completed_by_last_start'):.0f} | "
                f"{'/'.join(map(str, mid['runs_per_worker']))} | {med('workers_cpu_s'):.2f} | "
                f"{med('postgres_cpu_s'):.2f} | {med('machine_busy_cpus'):.2f} of "
                f"{os.cpu_count()} | {len(reps)} |"
            )
        out.append("")
        out.append(
            f"checks over all {len(scale)} scale measurements: every run COMPLETED with "
            f"x + steps and {scale[0]['steps']} journaled steps (all first attempts); "
            f"steps executed (ledgers) {sum(r['steps_executed'] for r in scale):,} of "
            f"{sum(r['runs'] * r['steps'] for r in scale):,} expected, "
            f"{sum(r['steps_twice'] for r in scale)} executed twice; "
            f"{sum(r['extra_claims'] for r in scale)} runs claimed more than once; "
            f"{sum(r['worker_log_lines'] for r in scale)} worker log lines"
        )
    for r in rows:
        if r["scenario"] != "parked":
            continue
        out.append("")
        out.append(
            "| parked runs | starts s | all WAITING after s | RSS idle / parked / +2 s MB "
            "| signals sent s | first signal -> all completed s | completed/s "
            "| RSS after / peak MB | worker CPU s | PG CPU s |"
        )
        out.append("|---:|---:|---:|---|---:|---:|---:|---|---:|---:|")
        out.append(
            f"| {r['parked']:,} | {r['start_phase_s']:.1f} | {r['all_parked_after_s']:.1f} | "
            f"{r['rss_idle_mb']} / {r['rss_parked_mb']} / {r['rss_parked_2s_mb']} | "
            f"{r['signal_phase_s']:.1f} | {r['signal_to_all_completed_s']:.1f} | "
            f"{r['completed_per_s']:,.0f} | {r['rss_done_mb']} / {r['peak_rss_mb']} | "
            f"{r['workers_cpu_s']} | {r['postgres_cpu_s']} |"
        )
        out.append("")
        out.append(
            f"checks: {r['parked']:,} COMPLETED with x+1; {r['worker_log_lines']} worker log lines"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="LEDGER", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("scale", "parked"))
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument(
        "--mode", default="live,backlog", help="scale modes: live, backlog (default both)"
    )
    parser.add_argument(
        "--max-concurrency",
        default="default,100",
        help="the workers' sql.max_concurrency values to measure (default: default,100)",
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="scale repetitions (default 3)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--parked", type=int, default=10_000)
    parser.add_argument("--measure", choices=("scale", "parked"), help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="One JSON line per measurement.")
    args = parser.parse_args()
    if args.worker:
        profile = os.environ.get("BENCH_SCALE_PROFILE")  # a path: cProfile the worker
        if not profile:
            asyncio.run(_worker(args.worker))
            return
        import cProfile

        cProfile.runctx("asyncio.run(_worker(args.worker))", globals(), locals(), profile)
        return
    counts = [int(n) for n in args.workers.split(",")]
    modes = args.mode.split(",")
    limits = [None if v == "default" else int(v) for v in args.max_concurrency.split(",")]
    if args.measure == "scale":
        row = asyncio.run(measure_scale(counts[0], args.runs, args.steps, modes[0], limits[0]))
        print(json.dumps(row))
        return
    if args.measure == "parked":
        print(json.dumps(asyncio.run(measure_parked(args.parked))))
        return
    started = time.strftime("%Y-%m-%d %H:%M")
    rows = []
    if args.only in (None, "scale"):
        for rep in range(args.repeat):
            # Interleaved, the worker counts in a rotated order each repetition.
            rotated = counts[rep % len(counts) :] + counts[: rep % len(counts)]
            for limit in limits:
                for mode in modes:
                    for n in rotated:
                        mc = "default" if limit is None else str(limit)
                        argv = ["--measure", "scale", "--mode", mode, "--workers", str(n)]
                        argv += ["--max-concurrency", mc, "--runs", str(args.runs)]
                        rows.append(_child([*argv, "--steps", str(args.steps)]))
                        print(f"rep {rep + 1}: {mode}, mc={mc}, {n} worker(s)", file=sys.stderr)
    if args.only in (None, "parked"):
        rows.append(_child(["--measure", "parked", "--parked", str(args.parked)]))
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print(
        f"date: {started} to {time.strftime('%H:%M')}; {os.cpu_count()} CPUs; "
        f"loadavg at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(_tables(rows))


if __name__ == "__main__":
    main()
