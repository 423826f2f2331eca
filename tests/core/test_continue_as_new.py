"""`ctx.continue_as_new`, on every backend: a run's history ends and the same id goes on.

A counter continues every 5 iterations up to 23: the result is the last generation's, the
current history holds that generation only (at most 5 iterations' steps, so replay time and
memory stay bounded), its `workflow_started` event names where the previous generation is
kept (`continued_from`, which `history` accepts), and each earlier generation ends with a
`continued_as_new` event carrying the next input. Signals sent while a generation ends are
taken by the next. Workflows live at module level for Temporal's sandbox.
"""

from __future__ import annotations

import pytest

import bridge
from bridge.history import EventType, HistoryEvent

EVERY = 5


@bridge.activity(name="can_add_one")
async def add_one(n: int) -> int:
    return n + 1


@bridge.workflow(name="can_counter")
async def counter(ctx: bridge.Context, total: int, done: int = 0) -> int:
    while done < total:
        done = await ctx.run(add_one, done)
        if done % EVERY == 0 and done < total:
            ctx.continue_as_new(total, done)
    return done


@bridge.workflow(name="can_signals")
async def collect_signals(
    ctx: bridge.Context, want: int, got: list[str] | None = None
) -> list[str]:
    got = [*(got or []), await ctx.wait_for_signal("msg")]
    if len(got) < want:
        ctx.continue_as_new(want, got)
    return got


def _completed(events: list[HistoryEvent]) -> list[HistoryEvent]:
    return [e for e in events if e.type is EventType.STEP_COMPLETED]


async def test_a_counter_continues_every_five_iterations(client: bridge.Client) -> None:
    id = f"can-counter-{client.backend_name}"
    async with client.worker([counter]):
        handle = await client.start(counter, 23, id=id)
        assert await handle.result(timeout=120) == 23
    assert (await client.describe(id)).status is bridge.Status.COMPLETED

    # The current history is the last generation's: iterations 21..23 only.
    current = await client.history(id)
    assert [e.result for e in _completed(current)] == [21, 22, 23]
    assert current[0].type is EventType.WORKFLOW_STARTED
    assert current[0].args == {"total": 23, "done": 20}
    assert current[-1].type is EventType.WORKFLOW_COMPLETED and current[-1].result == 23

    # Walk the chain back: four earlier generations, each of 5 iterations, each ending by
    # continuing with the next one's input.
    previous = current[0].details.get("continued_from")
    chain: list[list[HistoryEvent]] = []
    while previous is not None:
        events = await client.history(previous)
        chain.append(events)
        previous = events[0].details.get("continued_from")
    chain.reverse()
    assert len(chain) == 4
    for n, events in enumerate(chain):
        assert [e.result for e in _completed(events)] == list(range(5 * n + 1, 5 * n + 6))
        assert len(_completed(events)) <= EVERY
        last = events[-1]
        assert last.type is EventType.WORKFLOW_CONTINUED_AS_NEW
        assert last.args == {"total": 23, "done": 5 * (n + 1)}
    # An earlier generation is not a run of its own in the list.
    assert [d.id for d in await client.list(limit=100) if d.name == "can_counter"] == [id]
    # A retried start with the starter's arguments attaches to the chain (its first
    # generation's input), another input is a conflict.
    again = await client.start(counter, 23, id=id)
    assert not again.created
    with pytest.raises(bridge.WorkflowIdConflictError):
        await client.start(counter, 24, id=id)


async def test_signals_sent_around_a_continuation_are_not_lost(client: bridge.Client) -> None:
    id = f"can-signals-{client.backend_name}"
    async with client.worker([collect_signals]):
        handle = await client.start(collect_signals, 4, id=id)
        # Sent back to back: most arrive while a generation is ending or just after.
        for text in ("a", "b", "c", "d"):
            await handle.signal("msg", text)
        assert await handle.result(timeout=120) == ["a", "b", "c", "d"]
    current = await client.history(id)
    assert [e.result for e in current if e.type is EventType.SIGNAL_RECEIVED] == ["d"]
