"""The LangGraph backend's own acceptance points: the gaps it closes in LangGraph.

The shared behaviour tests (tests/core/test_behaviour.py) and the crash test run on it through
`langgraph_settings`; these are the checks only this backend needs.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import backends.langgraph
import bridge
from bridge.workflow import WorkflowDefinition
from tests import ledger
from tests.conftest import PG_URL, ROOT, postgres_available, settings_env
from tests.core.test_public_api import ENGINES, PICKLERS, _offending, _py_files
from tests.fixtures_langgraph import fast_langgraph
from tests.journal.test_crash import crash_after_step_3
from tests.wfs_langgraph import SEEN_ON_DISK, kill_after, sees_its_steps

LANGGRAPH_ALL = ["LangGraphBackend", "LangGraphWorker", "Store", "open_store"]
FIVE = ["step1", "step2", "step3", "step4", "step5"]


def _db_path(settings: dict[str, Any]) -> str:
    return settings["langgraph"]["url"].removeprefix("sqlite:///")


# -- public names and import rules ----------------------------------------------------------
def test_langgraph_all_is_pinned() -> None:
    assert sorted(backends.langgraph.__all__) == LANGGRAPH_ALL
    for name in LANGGRAPH_ALL:
        assert getattr(backends.langgraph, name, None) is not None, name


def test_langgraph_backend_imports_no_other_backend_adapter_or_pickler() -> None:
    files = _py_files("backends", "langgraph")
    assert any(p.name == "_graph.py" for p in files)
    others = tuple(
        f"backends.{p.name}"
        for p in (ROOT / "backends").iterdir()
        if p.is_dir() and p.name not in ("langgraph", "__pycache__")
    )
    assert _offending(files, (*others, "adapters", *PICKLERS)) == []
    langgraph_own = ("langgraph", "langchain_core", "psycopg")  # LangGraph and its parts
    assert _offending(files, tuple(e for e in ENGINES if e not in langgraph_own)) == []


def test_the_checkpointer_never_pickles(langgraph_settings: dict[str, Any]) -> None:
    from backends.langgraph import open_store
    from bridge.config import load_settings

    store = open_store(load_settings(langgraph_settings).langgraph)
    try:
        serde = store.saver.serde
        assert serde.pickle_fallback is False  # type: ignore[attr-defined]
        with pytest.raises(Exception):  # noqa: B017 - whatever msgpack raises, never pickle
            serde.dumps_typed(object())
    finally:
        store.close()


# -- a finished step is on disk before the workflow goes on (langchain-ai/langgraph#8039) ---
async def test_each_step_result_is_committed_before_the_workflow_sees_it(
    langgraph_settings: dict[str, Any],
) -> None:
    SEEN_ON_DISK.clear()
    async with await bridge.connect(langgraph_settings) as client, client.worker([sees_its_steps]):
        result = await client.execute(
            sees_its_steps, _db_path(langgraph_settings), 10, id="disk-1", timeout=30
        )
    assert result == 10
    assert list(range(1, 11)) == SEEN_ON_DISK


class Zygote:
    """Workers forked from one warm process (tests/worker_zygote.py): a new worker per kill
    costs a fork instead of seconds of imports."""

    def __init__(self, settings: dict[str, Any], tmp_path: Path, *modules: str) -> None:
        self.tmp_path = tmp_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_zygote", *modules],
            cwd=ROOT,
            env=settings_env(settings),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.exits: dict[int, int] = {}
        self._forked: queue.Queue[int] = queue.Queue()
        self._changed = threading.Condition()
        self._count = 0
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, *rest = line.split()
            if kind == "forked":
                self._forked.put(int(rest[0]))
            elif kind == "exit":
                with self._changed:
                    self.exits[int(rest[0])] = int(rest[1])
                    self._changed.notify_all()

    def fork(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{self.tmp_path / f'worker-{self._count}.log'}\n")
        self.proc.stdin.flush()
        self._count += 1
        return self._forked.get(timeout=30)

    def wait_for_an_exit(self, pids: list[int], timeout: float) -> tuple[int, int]:
        """(pid, exit code) of the first of `pids` to end."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: any(p in self.exits for p in pids), timeout=timeout
            )
            if not done:
                raise AssertionError(f"none of the workers {pids} ended within {timeout}s")
            pid = next(p for p in pids if p in self.exits)
            return pid, self.exits[pid]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


async def _kill_loop(settings: dict[str, Any], tmp_path: Path, ledger_path: str, reps: int) -> None:
    """`reps` runs, each killing the worker that runs it right after step k (k = 1..4 in
    turn). Two workers are up at all times (a new one replaces the dead one), so the
    survivor recovers the run: it must not repeat step k, or any other finished step."""
    zygote = Zygote(settings, tmp_path, "tests.wfs_langgraph")
    client = await bridge.connect(settings)
    try:
        alive = [zygote.fork(), zygote.fork()]
        for i in range(reps):
            k, id = 1 + i % 4, f"kill-{i}"
            flag = tmp_path / f"kill-flag-{i}"
            flag.touch()
            await client.start(kill_after, ledger_path, k, str(flag), id=id)
            dead, code = await asyncio.to_thread(zygote.wait_for_an_exit, alive, 60)
            assert code == -signal.SIGKILL, f"{id}: worker {dead} exited with {code}"
            flag.unlink()
            alive = [p for p in alive if p != dead] + [zygote.fork()]
            assert await client.result(id, timeout=60) == FIVE
            calls = ledger.counts(ledger_path)
            assert [calls[f"step{j}|{id}:{j - 1}"] for j in range(1, 6)] == [1] * 5, (id, k)
    finally:
        zygote.close()
        await client.close()


@pytest.mark.timeout(600)
async def test_sigkill_right_after_step_k_never_runs_step_k_again(
    langgraph_settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    await _kill_loop(langgraph_settings, tmp_path, ledger_path, reps=20)


# -- PostgresSaver ---------------------------------------------------------------------------
@pytest.fixture
def langgraph_pg_settings() -> Iterator[dict[str, Any]]:
    """A fresh PostgreSQL schema per test: PostgresSaver's tables have fixed names."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import sqlalchemy

    schema = f"bridge_lg_test_{os.urandom(4).hex()}"
    engine = sqlalchemy.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    try:
        yield {"backend": "langgraph", "langgraph": fast_langgraph(url)}
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_crash_resume_on_postgres_saver(
    langgraph_pg_settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    await crash_after_step_3(langgraph_pg_settings, tmp_path, ledger_path)
    await _kill_loop(langgraph_pg_settings, tmp_path, ledger_path, reps=4)


# -- LangGraph is the runtime: the journal lives in its checkpoints --------------------------
@bridge.activity
async def double(x: int) -> int:
    return 2 * x


@bridge.workflow
async def doubles(ctx: bridge.Context, xs: list[int]) -> list[int]:
    return [await ctx.run(double, x) for x in xs]


async def test_steps_are_langgraph_task_writes_of_the_workflows_thread(
    langgraph_settings: dict[str, Any],
) -> None:
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker([doubles]):
            assert await client.execute(doubles, [1, 2, 3], id="lg-1", timeout=30) == [2, 4, 6]
        backend = client.backend
        state = await backend.program.aget_state({"configurable": {"thread_id": "lg-1"}})  # type: ignore[attr-defined]
    assert state.next == ()
    assert state.values == {"status": "COMPLETED", "result": [2, 4, 6], "error": None}
    conn = sqlite3.connect(_db_path(langgraph_settings))
    try:
        writes = conn.execute(
            "SELECT count(*) FROM writes WHERE thread_id = 'lg-1' AND channel = '__return__'"
        ).fetchone()[0]
        own_rows = conn.execute("SELECT count(*) FROM bridge_lg_steps").fetchone()[0]
    finally:
        conn.close()
    assert writes == 3  # one task write per step, in LangGraph's own table
    assert own_rows == 0  # nothing duplicated in the bridge's tables


async def test_a_thread_langgraph_finished_but_the_bridge_did_not_record_is_recovered(
    langgraph_settings: dict[str, Any],
) -> None:
    """A crash between LangGraph's final checkpoint and the bridge's runs row: the next
    worker reads the thread's output instead of running anything again."""
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker([doubles]):
            await client.execute(doubles, [5], id="lg-2", timeout=30)
        conn = sqlite3.connect(_db_path(langgraph_settings))
        with conn:
            conn.execute(
                "UPDATE bridge_lg_runs SET status = 'RUNNING', result = NULL, "
                "lease_owner = 'elsewhere:1:dead', lease_expires_at = 0 WHERE id = 'lg-2'"
            )
        conn.close()
        assert (await client.describe("lg-2")).status is bridge.Status.RUNNING
        async with client.worker([doubles]):
            assert await client.result("lg-2", timeout=30) == [10]
        steps = bridge.history.step_sequence(await client.history("lg-2"))
    assert steps == ["double"]


# -- divergence LangGraph alone would miss ---------------------------------------------------
@bridge.activity
async def fetch(url: str) -> str:
    return f"body of {url}"


async def _fetch_a(ctx: bridge.Context) -> str:
    page = await ctx.run(fetch, "https://a.example")
    await ctx.wait_for_signal("go")
    return page


async def _fetch_b(ctx: bridge.Context) -> str:
    page = await ctx.run(fetch, "https://b.example")  # same step, other arguments
    await ctx.wait_for_signal("go")
    return page


FETCH_A = WorkflowDefinition(_fetch_a, name="fetcher")
FETCH_B = WorkflowDefinition(_fetch_b, name="fetcher")


@pytest.mark.parametrize("backend_name", ["sql", "langgraph"])
async def test_changed_step_arguments_raise_non_determinism(client: bridge.Client) -> None:
    """LangGraph matches task writes by position only and would hand back the page of
    a.example; both backends stop the run instead."""
    async with client.worker([FETCH_A]):
        handle = await client.start(FETCH_A, id="args-1")
        for _ in range(500):
            if (await handle.describe()).status is bridge.Status.WAITING:
                break
            await asyncio.sleep(0.02)
    async with client.worker([FETCH_B]):
        await client.signal("args-1", "go")
        with pytest.raises(bridge.WorkflowBlockedError):
            await client.result("args-1", timeout=20)
    message = ((await client.describe("args-1")).error or {})["message"]
    assert "step 0" in message and "a.example" in message and "b.example" in message


# -- bad input: locked and corrupt checkpoint databases --------------------------------------
def _locked_settings(tmp_path: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path}/lg.db"
    return {"backend": "langgraph", "langgraph": {**fast_langgraph(url), "busy_timeout_ms": 200}}


async def test_a_locked_database_is_a_clear_error_and_nothing_is_lost(tmp_path: Path) -> None:
    settings = _locked_settings(tmp_path)
    async with await bridge.connect(settings) as client:
        async with client.worker([doubles]):
            assert await client.execute(doubles, [1], id="before", timeout=30) == [2]
        holder = sqlite3.connect(_db_path(settings), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(bridge.StorageError, match="locked by another process"):
                await client.start(doubles, [2], id="during")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        with pytest.raises(bridge.WorkflowNotFoundError):
            await client.describe("during")
        async with client.worker([doubles]):
            assert await client.execute(doubles, [3], id="after", timeout=30) == [6]
        assert await client.result("before", timeout=5) == [2]
        assert bridge.history.step_sequence(await client.history("before")) == ["double"]


GATE: dict[str, asyncio.Event] = {}
GATED_CALLS: list[str] = []


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=1))
async def gated(label: str) -> str:
    GATED_CALLS.append(label)
    if label == "two" and "two" in GATE:
        await GATE["two"].wait()
    return label


@bridge.workflow
async def three_gated(ctx: bridge.Context) -> list[str]:
    return [await ctx.run(gated, x) for x in ("one", "two", "three")]


async def test_a_lock_mid_run_hands_the_run_back_and_loses_no_finished_step(
    tmp_path: Path,
) -> None:
    """Step two's result cannot be written: the workflow must not go on as if it had been.
    Once the lock is gone the run resumes; step one is not run again, step two is (its
    result never reached the disk), step three runs once."""
    settings = _locked_settings(tmp_path)
    settings["langgraph"]["lease_seconds"] = 1.0
    GATED_CALLS.clear()
    GATE["two"] = asyncio.Event()
    async with await bridge.connect(settings) as client, client.worker([three_gated]):
        handle = await client.start(three_gated, id="lock-1")
        for _ in range(500):
            if "two" in GATED_CALLS:
                break
            await asyncio.sleep(0.01)
        holder = sqlite3.connect(_db_path(settings), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            GATE["two"].set()
            await asyncio.sleep(0.8)  # the write waits out its busy timeout and fails
            assert GATED_CALLS == ["one", "two"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await handle.result(timeout=30) == ["one", "two", "three"]
    assert GATED_CALLS == ["one", "two", "two", "three"]
    del GATE["two"]


async def test_a_corrupt_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    settings = _locked_settings(tmp_path)
    path = Path(_db_path(settings))
    garbage = b"this is not a checkpoint database\n" * 200
    path.write_bytes(garbage)
    started = time.monotonic()
    with pytest.raises(bridge.StorageError, match="corrupt or not a SQLite database"):
        await bridge.connect(settings)
    assert time.monotonic() - started < 5
    assert path.read_bytes() == garbage


# -- cancelling a run that waits ---------------------------------------------------------
UNDONE: list[int] = []


@bridge.activity
async def unbook(x: int) -> None:
    UNDONE.append(x)


@bridge.activity(compensate=unbook)
async def book(x: int) -> int:
    return x


@bridge.workflow
async def books_then_waits(ctx: bridge.Context) -> str:
    await ctx.run(book, 7)
    try:
        await ctx.wait_for_signal("confirm")
    except asyncio.CancelledError:
        await ctx.compensate()
        raise
    return "confirmed"


async def test_cancelling_a_waiting_run_answers_its_wait(
    langgraph_settings: dict[str, Any],
) -> None:
    """The wait raises CancelledError, so the workflow compensates and ends CANCELLED."""
    UNDONE.clear()
    async with await bridge.connect(langgraph_settings) as client:
        async with client.worker([books_then_waits]):
            handle = await client.start(books_then_waits, id="cancel-1")
            for _ in range(500):
                if (await handle.describe()).status is bridge.Status.WAITING:
                    break
                await asyncio.sleep(0.02)
            await handle.cancel()
            with pytest.raises(bridge.WorkflowCancelledError):
                await handle.result(timeout=20)
        types = [e.type for e in await client.history("cancel-1")]
    assert UNDONE == [7]
    assert bridge.EventType.COMPENSATION_COMPLETED in types
    assert types[-1] is bridge.EventType.WORKFLOW_CANCELLED
