"""`Context.is_replaying`: True while workflow code re-executes what the journal holds.

The run takes a step, waits for a signal, takes another step. The worker that began it is
stopped while the run waits; the signal is sent; a new worker resumes it, which on every
backend re-executes the code before the wait (sql and langgraph re-run the workflow from
its journal, Temporal replays its history on a worker that never saw it). Workflow code
notes `ctx.is_replaying` around each step in a ledger, so both values are observed: all
False in the first execution, True up to the wait in the second, False after it.

The workflow lives at module level because Temporal's sandbox re-imports this module; the
ledger is a file (bridge.testing.ledger, passed through the sandbox), so what the
sandboxed code notes reaches the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import bridge
from tests import ledger
from tests.conftest import wait_for_status


@bridge.activity(name="t_is_replaying_noop")
async def noop(n: int) -> int:
    return n


def _note(ledger_path: str, ctx: bridge.Context, where: str) -> bool:
    replaying = ctx.is_replaying
    ledger.record(ledger_path, f"{where}={replaying}")
    return replaying


@bridge.workflow(name="ir_observes_replay")
async def observes_replay(ctx: bridge.Context, ledger_path: str) -> list[bool]:
    seen = [_note(ledger_path, ctx, "before step 0")]
    await ctx.run(noop, 0)
    seen.append(_note(ledger_path, ctx, "after step 0"))
    await ctx.wait_for_signal("go")
    seen.append(_note(ledger_path, ctx, "after the signal"))
    await ctx.run(noop, 2)
    seen.append(_note(ledger_path, ctx, "after step 2"))
    return seen


async def test_is_replaying_is_true_only_before_the_journal_runs_out(
    client: bridge.Client, tmp_path: Path
) -> None:
    path = str(tmp_path / "seen.db")
    id = f"is-replaying-{client.backend_name}"
    async with client.worker([observes_replay]):
        handle = await client.start(observes_replay, path, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
    # No worker holds the run now: the one that resumes it has to re-execute its start.
    await handle.signal("go", True)
    async with client.worker([observes_replay]):
        result = await handle.result(timeout=30)
    assert result == [True, True, False, False]
    assert [e.key for e in ledger.entries(path)] == [
        # The first execution: nothing journaled yet, all live.
        "before step 0=False",
        "after step 0=False",
        # The resumed one: step 0 and the wait are journaled, so the code before the wait
        # runs again as a replay; past the wait it runs for the first time.
        "before step 0=True",
        "after step 0=True",
        "after the signal=False",
        "after step 2=False",
    ]


def test_is_replaying_defaults_to_false_for_a_context_that_never_replays() -> None:
    """A backend written before the property existed keeps working, and counts as live."""
    assert bridge.Context.is_replaying.fget is not None
    assert "is_replaying" not in bridge.Context.__abstractmethods__


@bridge.workflow(name="ir_observes_answers")
async def observes_answers(ctx: bridge.Context, ledger_path: str) -> list[bool]:
    """The last journaled step before a wait: answered from the journal on the resumed
    execution although `is_replaying` is already False after it."""
    await ctx.wait_for_signal("go")
    await ctx.run(noop, 1)
    first = ctx.last_step_replayed()
    ledger.record(ledger_path, f"step 1 replayed={first}")
    await ctx.wait_for_signal("again")
    await ctx.run(noop, 3)
    second = ctx.last_step_replayed()
    ledger.record(ledger_path, f"step 3 replayed={second}")
    return [first, second]


async def test_last_step_replayed_follows_where_the_answer_came_from(
    client: bridge.Client, tmp_path: Path
) -> None:
    path = str(tmp_path / "answers.db")
    id = f"last-step-{client.backend_name}"
    async with client.worker([observes_answers]):
        handle = await client.start(observes_answers, path, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING)
        await handle.signal("go", True)
        await wait_until_entries(path, 1)
        await wait_for_status(client, id, bridge.Status.WAITING)
    await handle.signal("again", True)
    async with client.worker([observes_answers]):
        assert await handle.result(timeout=30) == [True, False]
    assert [e.key for e in ledger.entries(path)] == [
        "step 1 replayed=False",  # executed in the first execution
        "step 1 replayed=True",  # answered from the journal when the run resumed
        "step 3 replayed=False",
    ]


async def wait_until_entries(path: str, n: int) -> None:
    for _ in range(300):
        if len(ledger.entries(path)) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} ledger entries in {path}")
