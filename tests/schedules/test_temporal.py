"""Schedules on Temporal: native Temporal Schedules against the session's real dev server.

The server keeps its own time, so the simulated hour is a backfill of a past hour
(`ScheduleHandle.backfill`), and overlap is driven with triggers; each test's schedule id is
its own (uuid), so tests never see each other's schedules.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import bridge
from tests.schedules.sched_wfs import hold, tick

pytestmark = pytest.mark.timeout(90)
#: A cron that does not fire while a test runs (midnight, January 1st).
YEARLY = "0 0 1 1 *"


@pytest.fixture
async def client(temporal_settings: dict[str, Any]) -> AsyncIterator[bridge.Client]:
    c = await bridge.connect(temporal_settings)
    yield c
    await c.close()


def sid() -> str:
    return f"sched-{uuid.uuid4().hex[:10]}"


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_create_describe_pause_resume_trigger_delete(client: bridge.Client) -> None:
    id = sid()
    handle = await client.schedule(tick, "t", id=id, cron=YEARLY, catchup_window=3600)
    desc = await handle.describe()
    assert (desc.workflow, desc.cron, desc.args, desc.overlap) == (
        "tick",
        YEARLY,
        {"label": "t"},
        "skip",
    )
    assert desc.catchup_window == 3600 and not desc.paused and desc.backend == "temporal"
    assert desc.next_fire_at is not None and desc.next_fire_at.month == 1
    with pytest.raises(bridge.ScheduleAlreadyExistsError, match=id):
        await client.schedule(tick, "t", id=id, cron=YEARLY)

    await handle.pause("maintenance")
    desc = await handle.describe()
    assert desc.paused and desc.note == "maintenance" and desc.next_fire_at is None
    await handle.resume()
    assert not (await handle.describe()).paused

    async with client.worker([tick]):
        await handle.trigger()

        async def fired() -> bridge.ScheduleDescription | None:
            d = await handle.describe()
            return d if d.fired == 1 and d.recent else None

        desc = await until(fired, "the triggered run")
        run_id = desc.recent[0]
        assert run_id.startswith(f"{id}-")
        assert await client.result(run_id, timeout=30) == "t"

    async def listed() -> bool:
        return id in [d.id for d in await client.list_schedules()]

    await until(listed, "the schedule in list_schedules (visibility is eventually consistent)")
    await handle.delete()
    with pytest.raises(bridge.ScheduleNotFoundError, match=id):
        await handle.describe()
    for call in (client.pause_schedule, client.trigger_schedule, client.delete_schedule):
        with pytest.raises(bridge.ScheduleNotFoundError, match=id):
            await call(id)


async def test_invalid_cron_is_refused(client: bridge.Client) -> None:
    with pytest.raises(bridge.InvalidScheduleError):
        await client.schedule(tick, "t", id=sid(), cron="99 * * * *")


async def test_a_backfilled_hour_fires_twelve_runs_which_wait_for_a_worker(
    client: bridge.Client,
) -> None:
    """The server fires without any worker (catch-up after a worker restart is the runs
    waiting in the task queue); the worker started afterwards runs all of them."""
    id = sid()
    handle = await client.schedule(
        tick, "h", id=id, cron="*/5 * * * *", overlap="allow_all", paused=True
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    # Both ends are included (Temporal's server takes the start too): 00:00 to 00:55.
    await handle.backfill(start=start, end=start + timedelta(minutes=59, seconds=59))
    expected = [f"{id}-{start + timedelta(minutes=m):%Y-%m-%dT%H:%M:%SZ}" for m in range(0, 60, 5)]

    async def all_fired() -> bridge.ScheduleDescription | None:
        d = await handle.describe()
        return d if d.fired >= 12 else None

    desc = await until(all_fired, "12 backfilled fires")
    assert desc.fired == 12 and list(desc.recent) == expected[-10:]
    # No worker yet: the runs wait (Temporal lists no "running" runs under allow_all,
    # which it does not watch; the embedded engines list them).
    assert not (await client.describe(expected[0])).status.is_terminal
    async with client.worker([tick]):
        for run_id in expected:
            assert await client.result(run_id, timeout=30) == "h"
    assert (await handle.describe()).fired == 12
    await handle.delete()


@pytest.mark.parametrize(
    ("overlap", "skipped", "second"), [("skip", 1, False), ("buffer_one", 0, True)]
)
async def test_overlap_by_trigger(
    client: bridge.Client, overlap: str, skipped: int, second: bool
) -> None:
    id = sid()
    handle = await client.schedule(hold, "o", id=id, cron=YEARLY, overlap=overlap)  # type: ignore[arg-type]
    async with client.worker([hold]):
        await handle.trigger()

        async def one_running() -> bridge.ScheduleDescription | None:
            d = await handle.describe()
            return d if len(d.running) == 1 else None

        first = (await until(one_running, "the first run")).running[0]
        # A triggered run is named by the second it was triggered in: another second.
        await asyncio.sleep(1.1)
        await handle.trigger()

        async def decided() -> bridge.ScheduleDescription | None:
            d = await handle.describe()
            return d if d.skipped == skipped and d.buffered == second else None

        desc = await until(decided, f"the second trigger to be {overlap}ped")
        assert desc.fired == 1 and desc.running == (first,)
        await client.signal(first, "release")
        assert await client.result(first, timeout=30) == "o"
        if second:

            async def started() -> bridge.ScheduleDescription | None:
                d = await handle.describe()
                return d if d.fired == 2 and d.running and d.running[0] != first else None

            later = (await until(started, "the buffered run")).running[0]
            assert later != first
            await client.signal(later, "release")
            assert await client.result(later, timeout=30) == "o"
        else:
            await asyncio.sleep(1.0)
            assert (await handle.describe()).fired == 1
    await handle.delete()


@pytest.mark.parametrize(
    ("overlap", "first_status"),
    [("terminate_other", bridge.Status.FAILED), ("cancel_other", bridge.Status.CANCELLED)],
)
async def test_a_trigger_ends_the_open_run_under_terminate_or_cancel_other(
    client: bridge.Client, overlap: str, first_status: bridge.Status
) -> None:
    id = sid()
    handle = await client.schedule(hold, "o", id=id, cron=YEARLY, overlap=overlap)  # type: ignore[arg-type]
    async with client.worker([hold]):
        await handle.trigger()

        async def one_running() -> bridge.ScheduleDescription | None:
            d = await handle.describe()
            return d if len(d.running) == 1 else None

        first = (await until(one_running, "the first run")).running[0]
        await asyncio.sleep(1.1)  # a triggered run is named by its second
        await handle.trigger()

        async def replaced() -> bridge.ScheduleDescription | None:
            d = await handle.describe()
            return d if d.fired == 2 and d.running and d.running[0] != first else None

        later = (await until(replaced, f"the open run {overlap.split('_')[0]}ed")).running[0]
        assert (await client.describe(first)).status is first_status
        await client.signal(later, "release")
        assert await client.result(later, timeout=30) == "o"
    await handle.delete()


async def test_policies_and_time_zone_are_described(client: bridge.Client) -> None:
    id = sid()
    handle = await client.schedule(
        tick, "z", id=id, cron="0 9 * * *", overlap="buffer_all", timezone="America/New_York"
    )
    desc = await handle.describe()
    assert (desc.overlap, desc.timezone) == ("buffer_all", "America/New_York")
    assert desc.next_fire_at is not None
    nine = desc.next_fire_at.astimezone(ZoneInfo("America/New_York"))
    assert (nine.hour, nine.minute) == (9, 0)
    await handle.delete()
