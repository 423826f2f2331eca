"""Segments of a long run on the langgraph backend (issue 16 point 5).

A run's LangGraph thread ends a segment every `segment_steps` operations; the worker keeps
the segment's task writes in the bridge's rows and starts the next segment as a new
checkpoint, so LangGraph's per-step scan and what is written per step stay bounded. These
tests use segments of a few steps: a long run takes each step once and keeps its history
in order, a SIGKILL on either side of a segment's end loses nothing and repeats nothing,
waits work in a later segment, a changed step of an earlier segment is still a divergence,
`ctx.gather` branches replay in their order, and the bytes a step writes do not grow from
segment to segment. No timing is asserted (bench/RESULTS.md has the figures).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bridge
from backends.langgraph._worker import LangGraphWorker
from tests import ledger
from tests.conftest import ROOT, settings_env, wait_until

#: The segment length of the tests (small, so a short run has many segments).
SEGMENT = 5


@bridge.activity
async def seg_step(ledger_path: str, i: int, gate_at: int, gate: str) -> int:
    """Records each execution; step `gate_at` waits for the file `gate` first."""
    ledger.record(ledger_path, f"step{i}")
    if i == gate_at:
        while not Path(gate).exists():
            await asyncio.sleep(0.01)
    return i


@bridge.workflow
async def seg_chain(ctx: bridge.Context, ledger_path: str, n: int, gate_at: int, gate: str) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(seg_step, ledger_path, i, gate_at, gate)
    return total


@bridge.workflow
async def seg_waits(ctx: bridge.Context, ledger_path: str) -> list[Any]:
    """Waits in the third segment and later: a signal, a sleep, a second signal."""
    got: list[Any] = []
    for i in range(12):
        await ctx.run(seg_step, ledger_path, i, -1, "")
    got.append(await ctx.wait_for_signal("go"))
    await ctx.sleep(0.05)
    for i in range(12, 20):
        await ctx.run(seg_step, ledger_path, i, -1, "")
    got.append(await ctx.wait_for_signal("again"))
    await ctx.run(seg_step, ledger_path, 20, -1, "")
    return got


@bridge.workflow
async def seg_gather(ctx: bridge.Context, ledger_path: str) -> list[int]:
    """A loop alone, two loops side by side, a loop alone: the first segment ends in the
    first loop; once branches ran side by side the execution ends no segment (they would
    replay from the bridge's rows in another order), so the rest is one segment."""

    async def loop(first: int, n: int) -> int:
        total = 0
        for i in range(first, first + n):
            total += await ctx.run(seg_step, ledger_path, i, -1, "")
        return total

    for i in range(7):
        await ctx.run(seg_step, ledger_path, 100 + i, -1, "")
    both = await ctx.gather(loop(0, 8), loop(10, 8))
    return [*both, await loop(20, 12)]


#: The argument `seg_changes` passes at step 3 (a test changes it to change the code).
STEP_3_ARG = [3]


@bridge.workflow
async def seg_changes(ctx: bridge.Context, ledger_path: str) -> int:
    total = 0
    for i in range(12):
        total += await ctx.run(seg_step, ledger_path, STEP_3_ARG[0] if i == 3 else i, -1, "")
    await ctx.wait_for_signal("go")
    return total


def _db(settings: dict[str, Any]) -> str:
    return str(settings["langgraph"]["url"]).removeprefix("sqlite:///")


def _segment_inputs(db: str) -> int:
    """How many LangGraph runs (segments) the database's threads had."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        query = "SELECT count(*) FROM checkpoints WHERE json_extract(metadata, '$.source') = ?"
        return int(conn.execute(query, ("input",)).fetchone()[0])
    finally:
        conn.close()


def _steps(history: list[bridge.history.HistoryEvent]) -> list[int | None]:
    return [e.step for e in history if e.type is bridge.history.EventType.STEP_COMPLETED]


@pytest.fixture
def short_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LangGraphWorker, "segment_steps", SEGMENT)


async def test_a_run_of_many_segments_takes_each_step_once(
    langgraph_settings: dict[str, Any], tmp_path: Path, short_segments: None
) -> None:
    path = str(tmp_path / "ledger.db")
    n = 4 * SEGMENT + 3
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker([seg_chain]):
            result = await client.execute(seg_chain, path, n, -1, "", id="long", timeout=60)
        history = await client.history("long")
    assert result == sum(range(n))
    assert ledger.counts(path) == {f"step{i}": 1 for i in range(n)}
    assert _steps(history) == list(range(n))
    assert history[-1].type is bridge.history.EventType.WORKFLOW_COMPLETED
    assert _segment_inputs(_db(langgraph_settings)) == 5  # ended at 5, 10, 15, 20


async def test_a_gather_across_segments_takes_each_step_once(
    langgraph_settings: dict[str, Any], tmp_path: Path, short_segments: None
) -> None:
    path = str(tmp_path / "ledger.db")
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker([seg_gather]):
            result = await client.execute(seg_gather, path, id="gather", timeout=60)
        history = await client.history("gather")
    assert result == [sum(range(8)), sum(range(10, 18)), sum(range(20, 32))]
    keys = [*range(100, 107), *range(8), *range(10, 18), *range(20, 32)]
    assert ledger.counts(path) == {f"step{i}": 1 for i in keys}
    assert _steps(history) == list(range(len(keys)))
    assert _segment_inputs(_db(langgraph_settings)) == 2


async def test_waits_in_a_later_segment(
    langgraph_settings: dict[str, Any], tmp_path: Path, short_segments: None
) -> None:
    path = str(tmp_path / "ledger.db")
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker([seg_waits]):
            handle = await client.start(seg_waits, path, id="waits")
            await _wait_status(client, "waits", bridge.Status.WAITING)
            await handle.signal("go", 1)
            await _wait_steps(client, "waits", 20)
            await _wait_status(client, "waits", bridge.Status.WAITING)
            await handle.signal("again", 2)
            assert await handle.result(timeout=60) == [1, 2]
        history = await client.history("waits")
    assert ledger.counts(path) == {f"step{i}": 1 for i in range(21)}
    assert [e.step for e in history if e.step is not None] == sorted(
        e.step for e in history if e.step is not None
    )
    assert _segment_inputs(_db(langgraph_settings)) >= 4


async def test_a_change_to_an_earlier_segment_is_a_divergence(
    langgraph_settings: dict[str, Any], tmp_path: Path, short_segments: None
) -> None:
    """A step of an earlier segment replays from the bridge's rows, and is still checked
    against the call now made: changed arguments block the run (NonDeterminismError)."""
    path = str(tmp_path / "ledger.db")
    async with await bridge.connect(langgraph_settings) as client, client.worker([seg_changes]):
        handle = await client.start(seg_changes, path, id="changes")
        await _wait_status(client, "changes", bridge.Status.WAITING)
        assert _segment_inputs(_db(langgraph_settings)) == 3  # from 0, 5 and 10
        STEP_3_ARG[0] = 33
        try:
            await handle.signal("go")
            for _ in range(3000):
                if (await client.describe("changes")).blocked:
                    break
                await asyncio.sleep(0.01)
        finally:
            STEP_3_ARG[0] = 3
        desc = await client.describe("changes")
    assert desc.blocked
    assert "diverged from its journal at step 3" in str((desc.error or {}).get("message"))
    assert ledger.counts(path) == {f"step{i}": 1 for i in range(12)}


async def _wait_status(client: bridge.Client, id: str, status: bridge.Status) -> None:
    for _ in range(3000):
        if (await client.describe(id)).status is status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{id} never became {status}")


async def _wait_steps(client: bridge.Client, id: str, n: int) -> None:
    for _ in range(3000):
        if len(_steps(await client.history(id))) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{id} never took {n} steps")


# -- a SIGKILL at a segment's end ------------------------------------------------------------
#: Run in the worker process: short segments, and a kill at the chosen point.
_WORKER = """
import os, runpy, signal, sys
from backends.langgraph import _store, _worker
_worker.LangGraphWorker.segment_steps = {segment}
kill = {kill!r}
keep = _store.Store.keep_segment
def keep_segment(self, *args, **kwargs):
    if kill == "segment_ended":
        os.kill(os.getpid(), signal.SIGKILL)  # the segment's end is saved, its rows not kept
    kept = keep(self, *args, **kwargs)
    if kill == "segment_kept":
        os.kill(os.getpid(), signal.SIGKILL)  # rows kept, the next segment not begun
    return kept
_store.Store.keep_segment = keep_segment
sys.argv = ["worker", "tests.backends.langgraph.test_langgraph_segments"]
runpy.run_module("tests.worker_proc", run_name="__main__")
"""


def _worker(settings: dict[str, Any], tmp_path: Path, kill: str) -> subprocess.Popen[bytes]:
    with open(tmp_path / f"worker-{kill}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER.format(segment=SEGMENT, kill=kill)],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("kill", ["segment_ended", "segment_kept", "next_segment_step"])
async def test_sigkill_at_a_segment_end_loses_nothing(
    langgraph_settings: dict[str, Any], tmp_path: Path, kill: str
) -> None:
    """Killed as the first segment ends (before its rows are kept, after that, or inside the
    next segment's first step): the run finishes with every step taken once, except the
    step the kill interrupted, and its history in order."""
    path = str(tmp_path / "ledger.db")
    gate = str(tmp_path / "gate")
    n = 3 * SEGMENT
    # Step SEGMENT is the next segment's first: it waits for the gate, so the kill lands
    # inside it (`next_segment_step`); the other kills come before it starts.
    async with await bridge.connect(langgraph_settings) as client:
        await client.start(seg_chain, path, n, SEGMENT, gate, id="kill")
        first = _worker(langgraph_settings, tmp_path, kill)
        try:
            if kill == "next_segment_step":
                wait_until(lambda: ledger.counts(path).get(f"step{SEGMENT}"), what="step 5")
                first.send_signal(signal.SIGKILL)
            first.wait(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == -signal.SIGKILL
        Path(gate).touch()
        second = _worker(langgraph_settings, tmp_path, "none")
        try:
            result = await client.result("kill", timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        history = await client.history("kill")
    assert result == sum(range(n))
    counts = ledger.counts(path)
    # Only a step killed while it ran is run again; nothing kept before the kill is.
    again = {f"step{SEGMENT}": 2} if kill == "next_segment_step" else {}
    assert counts == {f"step{i}": 1 for i in range(n)} | again
    assert _steps(history) == list(range(n))


# -- what a step writes does not grow ---------------------------------------------------------
async def test_bytes_written_per_step_do_not_grow(
    langgraph_settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint bytes (checkpoints and task writes) of each segment, per step, are the
    same in the 10th segment as in the 1st: nothing a step writes carries the history."""
    monkeypatch.setattr(LangGraphWorker, "segment_steps", 20)
    path = str(tmp_path / "ledger.db")
    async with await bridge.connect(langgraph_settings) as client, client.worker([seg_chain]):
        await client.execute(seg_chain, path, 200, -1, "", id="bytes", timeout=120)
    conn = sqlite3.connect(f"file:{_db(langgraph_settings)}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT c.checkpoint_id, length(c.checkpoint) + length(c.metadata),"
            " (SELECT count(*) FROM writes w WHERE w.checkpoint_id = c.checkpoint_id"
            "  AND w.channel = '__return__'),"
            " (SELECT coalesce(sum(length(w.value)), 0) FROM writes w"
            "  WHERE w.checkpoint_id = c.checkpoint_id)"
            " FROM checkpoints c WHERE json_extract(c.metadata, '$.source') = 'input'"
            " ORDER BY c.checkpoint_id"
        ).fetchall()
    finally:
        conn.close()
    # One LangGraph run per segment, each with its own 20 steps' writes only: LangGraph's
    # pending writes (what it scans per task call) never hold the history.
    assert len(rows) == 10
    assert [r[2] for r in rows] == [20] * 10
    per_step = [(r[1] + r[3]) / 20 for r in rows]
    assert per_step[-1] <= 1.2 * per_step[0], per_step
