"""Queries: `ctx.set_query_handler(name, fn)` and `client.query(id, name, *args)`.

The same scenarios on every backend. On Temporal a query is Temporal's own (a dynamic query
handler of the workflow class, answered by a worker, which replays a run it does not cache);
on sql and langgraph it is answered from the live context when a worker of this process runs
the run, and otherwise by replaying the run's journal in the caller's process, which runs no
activity and writes nothing. Activities note each execution in a ledger, and the history is
compared before and after, so "a query never changes a run" is counted, not assumed.

Workflows live at module level because Temporal's sandbox re-imports this module.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.conftest import ROOT, settings_env, wait_for_status


@bridge.activity(name="t_query_add")
async def add(ledger_path: str, n: int) -> int:
    ledger.record(ledger_path, f"add {n}", "add")
    return n + 1


@bridge.activity(name="t_query_gate")
async def gate(path: str) -> None:
    """Holds its step open until the test creates `path`."""
    while not Path(path).exists():
        await asyncio.sleep(0.02)


@bridge.workflow(name="q_counting")
async def counting(ctx: bridge.Context, ledger_path: str, steps: int) -> dict[str, Any]:
    state: dict[str, Any] = {"done": 0, "stage": "counting"}
    ctx.set_query_handler("state", lambda: dict(state))
    ctx.set_query_handler("times", lambda k: state["done"] * k)
    ctx.set_query_handler("broken", lambda: 1 / 0)
    for n in range(steps):
        await ctx.run(add, ledger_path, n)
        state["done"] += 1
    state["stage"] = "waiting"
    state["note"] = await ctx.wait_for_signal("finish")
    state["stage"] = "finished"
    return state


@bridge.workflow(name="q_gated")
async def gated(ctx: bridge.Context, path: str) -> str:
    stage = {"at": "before the gate"}
    ctx.set_query_handler("where", lambda: stage["at"])
    stage["at"] = "in the gate"
    await ctx.run(gate, path)
    stage["at"] = "past the gate"
    return stage["at"]


async def test_query_answers_from_the_run_state_and_changes_nothing(
    client: bridge.Client, tmp_path: Path
) -> None:
    path = str(tmp_path / "ledger.db")
    id = f"query-{client.backend_name}"
    async with client.worker([counting]):
        handle = await client.start(counting, path, 3, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
        before = await client.history(id)
        assert await handle.query("state") == {"done": 3, "stage": "waiting"}
        assert await client.query(id, "times", 5) == 15
        # Asked again: the same answer, and still nothing taken or written.
        assert await handle.query("state") == {"done": 3, "stage": "waiting"}
        assert [e.to_dict() for e in await client.history(id)] == [e.to_dict() for e in before]
        assert (await client.describe(id)).status is bridge.Status.WAITING
        assert ledger.counts_by_activity(path)["add"] == 3

        await handle.signal("finish", "bye")
        assert (await handle.result(timeout=30))["stage"] == "finished"
        # A finished run answers too (Temporal and the journal replay it).
        assert await handle.query("state") == {
            "done": 3,
            "stage": "finished",
            "note": "bye",
        }
    assert ledger.counts_by_activity(path)["add"] == 3


async def test_unknown_query_names_the_run_the_name_and_the_known_ones(
    client: bridge.Client, tmp_path: Path
) -> None:
    id = f"query-unknown-{client.backend_name}"
    async with client.worker([counting]):
        await client.start(counting, str(tmp_path / "ledger.db"), 1, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
        with pytest.raises(bridge.NotRegisteredError) as caught:
            await client.query(id, "nope")
        text = str(caught.value)
        assert repr(id) in text and "'nope'" in text
        assert "broken, state, times" in text
        with pytest.raises(bridge.BridgeError, match="ZeroDivisionError"):
            await client.query(id, "broken")
        await client.signal(id, "finish", None)
        await client.result(id, timeout=30)


async def test_query_of_a_run_in_the_middle_of_a_step(
    client: bridge.Client, tmp_path: Path
) -> None:
    """A run a worker holds, its step under way: the state the code has reached."""
    door = tmp_path / "door"
    id = f"query-live-{client.backend_name}"
    async with client.worker([gated]):
        handle = await client.start(gated, str(door), id=id)
        await wait_for_status(client, id, bridge.Status.RUNNING)
        for _ in range(200):  # the run is RUNNING as soon as it is claimed
            if await handle.query("where") == "in the gate":
                break
            await asyncio.sleep(0.05)
        assert await handle.query("where") == "in the gate"
        door.touch()
        assert await handle.result(timeout=30) == "past the gate"
        assert await handle.query("where") == "past the gate"


async def test_query_without_a_worker_replays_the_journal_here(
    client: bridge.Client, tmp_path: Path
) -> None:
    """sql and langgraph: a parked run, with no worker anywhere, is answered by a replay in
    this process. (Temporal answers queries in its workers only.)"""
    if client.backend_name == "temporal":
        pytest.skip("Temporal answers a query in a worker, by design")
    path = str(tmp_path / "ledger.db")
    id = f"query-parked-{client.backend_name}"
    async with client.worker([counting]):
        await client.start(counting, path, 2, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
    before = [e.to_dict() for e in await client.history(id)]
    assert await client.query(id, "state") == {"done": 2, "stage": "waiting"}
    assert [e.to_dict() for e in await client.history(id)] == before
    assert ledger.counts_by_activity(path)["add"] == 2
    assert (await client.describe(id)).status is bridge.Status.WAITING


def test_cli_query_prints_the_answer_as_json(sql_settings: dict[str, Any], tmp_path: Path) -> None:
    """`bridge query ID NAME [ARGS_JSON]` in a process of its own, on a parked sql run."""
    path = str(tmp_path / "ledger.db")

    async def park() -> None:
        async with await bridge.connect(sql_settings) as client, client.worker([counting]):
            await client.start(counting, path, 2, id="cli-q")
            await wait_for_status(client, "cli-q", bridge.Status.WAITING)

    asyncio.run(park())
    env = settings_env(sql_settings)
    command = [sys.executable, "-m", "bridge.cli", "query", "cli-q"]
    module = ["--module", "tests.core.test_queries"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args, *module],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    answered = run("times", "[4]")
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout) == 8
    unknown = run("nope")
    assert unknown.returncode != 0
    assert "'nope'" in unknown.stderr and "broken, state, times" in unknown.stderr


def test_async_query_handlers_are_refused() -> None:
    """Queries read state; an `async def` handler could await, so it is refused at once."""

    class Probe(bridge.Context):
        workflow_id = "probe"  # type: ignore[assignment]
        attempt = 1  # type: ignore[assignment]
        run = sleep = wait_for_signal = now = uuid = random = patched = compensate = None  # type: ignore[assignment]

    async def handler() -> int:
        return 1

    ctx = Probe()
    with pytest.raises(bridge.ConfigError, match="plain function"):
        ctx.set_query_handler("q", handler)
    ctx.set_query_handler("q", lambda: 1)
    assert list(ctx.query_handlers) == ["q"]
    ctx.set_query_handler("q", None)
    assert ctx.query_handlers == {}
