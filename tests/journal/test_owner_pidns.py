"""Two workers on one hostname in separate PID namespaces never take each other's live runs.

Containers with host networking share a hostname but number their processes separately;
a dead-owner check that looks another container's pid up in its own namespace declares a
live worker dead and runs its steps a second time (issue 13, defect 2).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.testing import ledger
from tests.conftest import ROOT, fast_sql, settings_env
from tests.journal.owner_wfs import STEPS, slow_steps

RUNS = 5  # 5 runs x 10 steps: 50 steps
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


def _unshare_refused() -> str | None:
    """None when this process may make PID namespaces, else why not."""
    if os.geteuid() != 0:
        return "needs root: `unshare --pid` and /proc/sys/kernel/ns_last_pid"
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare` cannot run here: {exc}"
    if done.returncode != 0:
        return f"`unshare --pid` is not permitted here: {done.stderr.decode().strip()}"
    return None


def _start_in_namespace(settings: dict[str, Any], log: Path, floor: int) -> subprocess.Popen[bytes]:
    """A worker process as the first one after pid `floor` of a new PID namespace."""
    command = [sys.executable, "-m", "tests.worker_proc", "tests.journal.owner_wfs"]
    launch = [sys.executable, "-m", "tests.journal.pidns_launch", str(floor), *command]
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*UNSHARE, *launch],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(logs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while not all(p.exists() and b"worker ready" in p.read_bytes() for p in logs):
        for log, proc in zip(logs, procs, strict=True):
            assert proc.poll() is None, f"worker exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="PID namespaces are Linux's")
@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_workers_in_two_pid_namespaces_run_each_step_once(
    backend: str, tmp_path: Path
) -> None:
    reason = _unshare_refused()
    if reason:
        pytest.skip(reason)
    ledger_path = str(tmp_path / "ledger.db")
    # Three runs per worker at most, so both hold runs at once; a 10 s lease, so only a
    # wrongful dead-owner verdict (checked every second) can hand a live run over.
    journal = {**fast_sql(f"sqlite:///{tmp_path}/journal.db"), "lease_seconds": 10.0}
    settings = {"backend": backend, backend: {**journal, "max_concurrency": 3}}
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    procs = [
        _start_in_namespace(settings, log, floor)
        for log, floor in zip(logs, (1000, 2000), strict=True)
    ]
    client = None
    try:
        client = await bridge.connect(settings)
        _wait_ready(logs, procs)
        ids = [f"pidns-{i}" for i in range(RUNS)]
        for id in ids:
            await client.start(slow_steps, ledger_path, id=id)
        results = await asyncio.gather(*(client.result(id, timeout=120) for id in ids))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if client is not None:
            await client.close()

    assert results == [[f"step{i}" for i in range(1, STEPS + 1)]] * RUNS
    calls = ledger.entries(ledger_path)
    twice = {k: n for k, n in Counter(e.key for e in calls).items() if n > 1}
    assert not twice, f"{len(twice)} of {RUNS * STEPS} steps ran twice: {sorted(twice)}"
    assert len(calls) == RUNS * STEPS
    # Both workers ran steps, each in a PID namespace of its own (not the test's).
    namespaces = {e.activity.split(":")[0] for e in calls}
    assert len(namespaces) == 2, namespaces
    assert str(os.stat("/proc/self/ns/pid").st_ino) not in namespaces
