"""Crash-resume: SIGKILL the worker at every step boundary of a 5-step workflow."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

import bridge
from bridge.testing import _workflows as wf
from bridge.testing.crash import KillPoint, crash_and_resume
from bridge.testing.hookspecs import TestEnvironment
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import times

__all__ = ["test_crash_resume_at_every_step_boundary"]


async def _crash_after(
    done: int, environment: TestEnvironment, ledger: Ledger, tmp_path: Path
) -> list[str]:
    """Kill after step `done` (1-based) on a store of its own; the problems found."""
    where = f"crash-resume after step {done} ({wf.FIVE[done - 1]!r})"
    workdir = tmp_path / f"crash-{done}"
    workdir.mkdir()
    path = str(ledger.path)
    report = await crash_and_resume(
        environment.settings(workdir),
        wf.five_steps,
        [path, 0, ""],
        kill_at=KillPoint.after_step(done - 1),  # journal indices count from 0
        ledger=path,
        modules=environment.worker_modules,
        reference=False,
        check=False,
        timeout=90,
        workdir=workdir,
    )
    problems = []
    if not report.killed:
        problems.append(f"{where}: the run finished before the kill point was reached")
    expected = [label.upper() for label in wf.FIVE]
    if report.status != "COMPLETED":
        problems.append(f"{where}: the run ended {report.status}, expected COMPLETED")
    elif report.result != expected:
        problems.append(f"{where}: result {report.result}, expected {expected}")
    ran = Counter(
        e.activity for e in ledger.entries() if e.key.startswith(f"{report.workflow_id}:")
    )
    for label in wf.FIVE:
        if ran[label] != 1:
            problems.append(f"{where}: step {label!r} ran {times(ran[label])}, expected 1")
    return problems


@pytest.mark.asyncio
@pytest.mark.requires("crash_resume")
async def test_crash_resume_at_every_step_boundary(
    bridge_client: bridge.Client,
    bridge_environment: TestEnvironment,
    bridge_ledger: Ledger,
    tmp_path: Path,
) -> None:
    """After step k (k = 1..4) the worker process is SIGKILLed while step k+1 waits to start;
    a new worker finishes the run with the same result, every step's side effect once.

    The four crashes run at once, each on a store (or task queue) of its own, so no worker
    touches another crash's run and the scenario takes the time of one crash, not four.
    """
    found = await asyncio.gather(
        *(
            _crash_after(done, bridge_environment, bridge_ledger, tmp_path)
            for done in range(1, len(wf.FIVE))
        ),
        return_exceptions=True,  # every crash runs to its end and kills its workers
    )
    problems = []
    for done, outcome in enumerate(found, start=1):
        if isinstance(outcome, BaseException):
            problems.append(f"crash-resume after step {done}: {type(outcome).__name__}: {outcome}")
        else:
            problems.extend(outcome)
    assert not problems, "\n".join(problems)
