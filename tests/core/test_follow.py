"""`Client.follow`: a run's events as they are journaled, on every backend."""

from __future__ import annotations

import asyncio

import bridge
from bridge.history import EventType
from tests import wfs
from tests.conftest import wait_for_status


async def test_follow_yields_events_live_and_ends_with_the_run(
    client: bridge.Client, ledger_path: str
) -> None:
    id = f"follow-{client.backend_name}"
    seen: list[EventType] = []
    asked = asyncio.Event()

    async def follow() -> None:
        async for event in client.follow(id, poll=0.05):
            seen.append(event.type)
            if event.type is EventType.STEP_COMPLETED:
                asked.set()

    async with client.worker([wfs.approval]):
        await client.start(wfs.approval, ledger_path, None, id=id)
        following = asyncio.create_task(follow())
        # The first step's completion arrives while the run still waits for its signal.
        await asyncio.wait_for(asked.wait(), 30)
        await wait_for_status(client, id, bridge.Status.WAITING)
        assert not following.done()
        await client.signal(id, "approve", True)
        await asyncio.wait_for(following, 30)
    assert seen[0] is EventType.WORKFLOW_STARTED
    assert seen[-1] is EventType.WORKFLOW_COMPLETED
    assert seen.count(EventType.STEP_COMPLETED) == 2
    assert len(seen) == len(await client.history(id))  # each event once
