"""Schedules on the embedded engines (sql on SQLite and PostgreSQL, langgraph): the journal's
schedules table and the scheduler every journal worker runs (`bridge.journal.schedules`).

Time is simulated: the tests replace the scheduler's clock (`backend.schedules.clock`) with a
`FakeClock` they move forward, so "an hour" takes well under a second. The runs themselves
execute at real speed on real workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bridge
from tests.conftest import fast_sql
from tests.fixtures_langgraph import fast_langgraph
from tests.schedules.sched_wfs import hold, tick

#: An hour that starts on a round time: a "*/5" cron fires at :05, :10, ... :00 in it.
T0 = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
EVERY_5 = "*/5 * * * *"
pytestmark = pytest.mark.timeout(60)


class FakeClock:
    """The scheduler's clock, moved by the test."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sql", "langgraph", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
    if request.param == "sql":
        return {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/s.db")}
    if request.param == "langgraph":
        return {"backend": "langgraph", "langgraph": fast_langgraph(f"sqlite:///{tmp_path}/l.db")}
    url = request.getfixturevalue("pg_url")
    import sqlalchemy

    # The session's database keeps feature tables between tests; start without schedules.
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bridge_schedules")
    engine.dispose()
    return {"backend": "sql", "sql": fast_sql(url)}


@asynccontextmanager
async def connected(settings: dict[str, Any], clock: FakeClock) -> AsyncIterator[bridge.Client]:
    client = await bridge.connect(settings)
    client.backend.schedules.clock = clock  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def sid() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


def at(minutes: int) -> str:
    return (datetime.fromtimestamp(T0, UTC) + timedelta(minutes=minutes)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


async def fired(client: bridge.Client, id: str, n: int) -> bridge.ScheduleDescription:
    async def check() -> bridge.ScheduleDescription | None:
        d = await client.describe_schedule(id)
        return d if d.fired == n else None

    return await until(check, f"schedule {id} to have fired {n} times")


async def settled(client: bridge.Client, id: str, cursor_minutes: int) -> None:
    """Wait until the scheduler took every cron time up to `cursor_minutes` past T0."""
    want = datetime.fromtimestamp(T0, UTC) + timedelta(minutes=cursor_minutes)

    async def check() -> bool:
        d = await client.describe_schedule(id)
        return d.next_fire_at is not None and d.next_fire_at > want and not d.buffered

    await until(check, f"schedule {id} to pass minute {cursor_minutes}")


async def test_every_five_minutes_fires_twelve_times_in_a_simulated_hour(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([tick]):
        id = sid()
        handle = await client.schedule(tick, "t", id=id, cron=EVERY_5)
        for minute in range(1, 61):
            clock.advance(60)
            if minute % 5 == 0:
                await fired(client, id, minute // 5)
                # Done long before the next fire, as a real run would be five minutes on
                # (otherwise the default "skip" policy would rightly skip that fire).
                assert await client.result(f"{id}-{at(minute)}", timeout=10) == "t"
        desc = await handle.describe()
        assert desc.fired == 12 and desc.skipped == 0 and desc.missed == 0
        expected = [f"{id}-{at(m)}" for m in range(5, 61, 5)]
        for run_id in expected:
            assert await client.result(run_id, timeout=10) == "t"
        assert list(desc.recent) == expected[-10:]
        assert desc.last_fire_at == datetime.fromtimestamp(T0 + 3600, UTC)


async def _release(client: bridge.Client, run_id: str) -> None:
    await client.signal(run_id, "release")
    await client.result(run_id, timeout=10)


async def test_skip_drops_fires_while_the_last_run_is_open(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([hold]):
        id = sid()
        await client.schedule(hold, "h", id=id, cron=EVERY_5, overlap="skip")
        clock.advance(300)
        await fired(client, id, 1)
        for m in (10, 15):
            clock.advance(300)
            await settled(client, id, m)
        desc = await client.describe_schedule(id)
        assert (desc.fired, desc.skipped, desc.running) == (1, 2, (f"{id}-{at(5)}",))
        await _release(client, f"{id}-{at(5)}")
        clock.advance(300)
        desc = await fired(client, id, 2)
        assert desc.running == (f"{id}-{at(20)}",)


async def test_buffer_one_starts_one_fire_when_the_open_run_ends(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([hold]):
        id = sid()
        await client.schedule(hold, "h", id=id, cron=EVERY_5, overlap="buffer_one")
        clock.advance(300)
        await fired(client, id, 1)
        clock.advance(300)

        async def buffered() -> bool:
            return (await client.describe_schedule(id)).buffered

        await until(buffered, "a buffered fire")
        clock.advance(300)  # a second overlapping fire: dropped, one is buffered already
        await until(lambda: _skipped(client, id, 1), "the second overlapping fire to be dropped")
        await _release(client, f"{id}-{at(5)}")
        # No time passes: the buffered fire (minute 10) starts as soon as the run ended.
        desc = await fired(client, id, 2)
        assert desc.running == (f"{id}-{at(10)}",) and not desc.buffered
        assert desc.skipped == 1


async def _skipped(client: bridge.Client, id: str, n: int) -> bool:
    return (await client.describe_schedule(id)).skipped == n


async def test_buffer_all_starts_every_overlapping_fire_one_after_the_other(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([hold]):
        id = sid()
        await client.schedule(hold, "h", id=id, cron=EVERY_5, overlap="buffer_all")
        clock.advance(300)
        await fired(client, id, 1)
        for m in (10, 15):  # two fires while the first run is open: both kept
            clock.advance(300)
            await settled_past(client, id, m)
        desc = await client.describe_schedule(id)
        assert (desc.fired, desc.skipped, desc.buffered) == (1, 0, True)
        for n, m in ((2, 5), (3, 10)):  # each starts once the run before it ended
            await _release(client, f"{id}-{at(m)}")
            desc = await fired(client, id, n)
            assert desc.running == (f"{id}-{at(m + 5)}",)
        await _release(client, f"{id}-{at(15)}")
        desc = await client.describe_schedule(id)
        assert (desc.fired, desc.skipped, desc.buffered) == (3, 0, False)


async def test_cancel_other_cancels_the_open_run_then_starts_the_latest_fire(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([hold]):
        id = sid()
        await client.schedule(hold, "h", id=id, cron=EVERY_5, overlap="cancel_other")
        clock.advance(300)
        await fired(client, id, 1)
        clock.advance(300)  # the open run is asked to cancel; this fire waits for its end
        with pytest.raises(bridge.WorkflowCancelledError):
            await client.result(f"{id}-{at(5)}", timeout=10)
        desc = await fired(client, id, 2)
        assert desc.running == (f"{id}-{at(10)}",) and desc.skipped == 0


async def test_terminate_other_ends_the_open_run_and_starts_at_once(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([hold]):
        id = sid()
        await client.schedule(hold, "h", id=id, cron=EVERY_5, overlap="terminate_other")
        clock.advance(300)
        await fired(client, id, 1)
        clock.advance(300)
        desc = await fired(client, id, 2)
        assert desc.running == (f"{id}-{at(10)}",)
        first = await client.describe(f"{id}-{at(5)}")
        assert first.status is bridge.Status.FAILED
        assert first.error is not None and first.error["error_type"] == "TerminatedError"
        assert "terminate_other" in first.error["message"]
        await _release(client, f"{id}-{at(10)}")


async def test_a_cron_in_a_time_zone_follows_its_daylight_saving_time(
    settings: dict[str, Any],
) -> None:
    """9:00 in New York is 14:00 UTC before 10 March 2030 and 13:00 UTC after it."""
    clock = FakeClock(datetime(2030, 3, 9, 12, tzinfo=UTC).timestamp())
    async with connected(settings, clock) as client, client.worker([tick]):
        id = sid()
        handle = await client.schedule(
            tick, "ny", id=id, cron="0 9 * * *", timezone="America/New_York"
        )
        desc = await handle.describe()
        assert desc.timezone == "America/New_York"
        assert desc.next_fire_at == datetime(2030, 3, 9, 14, tzinfo=UTC)
        for day, fire in ((1, "2030-03-09T14:00:00Z"), (2, "2030-03-10T13:00:00Z")):
            clock.advance(86400)
            await fired(client, id, day)
            # ended before the next fire (else the default "skip" would rightly skip it)
            assert await client.result(f"{id}-{fire}", timeout=10) == "ny"
        desc = await handle.describe()
        assert desc.next_fire_at == datetime(2030, 3, 11, 13, tzinfo=UTC)


async def test_an_unknown_time_zone_is_refused_and_nothing_created(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client:
        with pytest.raises(bridge.InvalidScheduleError, match="Mars/Olympus"):
            await client.schedule(tick, "x", id="tz-bad", cron=EVERY_5, timezone="Mars/Olympus")
        assert [d.id for d in await client.list_schedules()] == []


async def settled_past(client: bridge.Client, id: str, cursor_minutes: int) -> None:
    """Wait until the scheduler took every cron time up to `cursor_minutes` past T0
    (whether or not a fire is buffered)."""
    want = datetime.fromtimestamp(T0, UTC) + timedelta(minutes=cursor_minutes)

    async def check() -> bool:
        d = await client.describe_schedule(id)
        return d.next_fire_at is not None and d.next_fire_at > want

    await until(check, f"schedule {id} to pass minute {cursor_minutes}")


async def test_allow_all_starts_every_fire(settings: dict[str, Any], clock: FakeClock) -> None:
    async with connected(settings, clock) as client, client.worker([hold]):
        id = sid()
        await client.schedule(hold, "h", id=id, cron=EVERY_5, overlap="allow_all")
        for n in (1, 2, 3):
            clock.advance(300)
            await fired(client, id, n)
        desc = await client.describe_schedule(id)
        assert desc.running == tuple(f"{id}-{at(m)}" for m in (5, 10, 15))
        assert desc.skipped == 0
        for m in (5, 10, 15):
            await _release(client, f"{id}-{at(m)}")


async def test_catch_up_after_a_worker_restart_is_bounded_by_the_window(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    bounded, unbounded = sid(), sid()
    async with connected(settings, clock) as client:
        await client.schedule(
            tick, "b", id=bounded, cron=EVERY_5, overlap="allow_all", catchup_window=600
        )
        await client.schedule(tick, "u", id=unbounded, cron=EVERY_5, overlap="allow_all")
        async with client.worker([tick]):
            clock.advance(300)
            await fired(client, bounded, 1)
            await fired(client, unbounded, 1)
    # No worker for 30 minutes: the fires of minutes 10 to 35 are missed for now.
    clock.advance(1800)
    async with connected(settings, clock) as client, client.worker([tick]):
        # Within 10 minutes of now (35): minutes 25, 30 and 35; 10, 15, 20 are missed.
        desc = await fired(client, bounded, 4)
        assert desc.missed == 3
        assert list(desc.recent) == [f"{bounded}-{at(m)}" for m in (5, 25, 30, 35)]
        # The default window (a year) takes every missed fire.
        desc = await fired(client, unbounded, 7)
        assert desc.missed == 0
        for m in range(5, 40, 5):
            assert await client.result(f"{unbounded}-{at(m)}", timeout=10) == "u"


async def test_two_workers_never_fire_the_same_time_twice(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    id = sid()
    async with (
        connected(settings, clock) as a,
        connected(settings, clock) as b,
        a.worker([tick]),
        b.worker([tick]),
    ):
        await a.schedule(tick, "x", id=id, cron=EVERY_5, overlap="allow_all")
        for n in range(1, 13):
            clock.advance(300)
            await fired(a, id, n)
        # And a whole hour in one jump, both workers looking at once.
        clock.advance(3600)
        desc = await fired(a, id, 24)
        await asyncio.sleep(0.2)  # time for a duplicate to show, were there one
        assert (await b.describe_schedule(id)).fired == 24
        runs = [r for r in await a.list(limit=1000) if r.id.startswith(id)]
        assert len(runs) == 24 == len({r.id for r in runs})
        assert desc.skipped == desc.missed == 0


async def test_pause_resume_trigger_delete(settings: dict[str, Any], clock: FakeClock) -> None:
    async with connected(settings, clock) as client, client.worker([tick]):
        id = sid()
        handle = await client.schedule(tick, "p", id=id, cron=EVERY_5, paused=True)
        assert (await handle.describe()).paused
        clock.advance(600)
        await asyncio.sleep(0.2)
        assert (await handle.describe()).fired == 0
        await handle.resume()
        # The times passed while paused are not caught up (Temporal's behaviour).
        clock.advance(60)
        await asyncio.sleep(0.2)
        assert (await handle.describe()).fired == 0
        clock.advance(240)  # minute 15
        await fired(client, id, 1)
        assert (await handle.describe()).recent == (f"{id}-{at(15)}",)
        # Ended before the trigger, which the "skip" policy would otherwise drop.
        assert await client.result(f"{id}-{at(15)}", timeout=10) == "p"

        await handle.pause("maintenance")
        desc = await handle.describe()
        assert desc.paused and desc.note == "maintenance" and desc.next_fire_at is None
        clock.advance(7)
        await handle.trigger()  # fires while paused, named by the second
        desc = await fired(client, id, 2)
        triggered = f"{id}-{datetime.fromtimestamp(clock.now, UTC):%Y-%m-%dT%H:%M:%SZ}"
        assert desc.recent[-1] == triggered
        assert await client.result(triggered, timeout=10) == "p"

        assert [d.id for d in await client.list_schedules()] == [id]
        await handle.delete()
        with pytest.raises(bridge.ScheduleNotFoundError, match=id):
            await handle.describe()
        assert await client.list_schedules() == []
        # Its runs go on; nothing fires any more.
        clock.advance(3600)
        await asyncio.sleep(0.2)
        assert len([r for r in await client.list(limit=100) if r.id.startswith(id)]) == 2


async def test_backfill_takes_a_past_hour_now(settings: dict[str, Any], clock: FakeClock) -> None:
    async with connected(settings, clock) as client, client.worker([tick]):
        id = sid()
        handle = await client.schedule(tick, "b", id=id, cron=EVERY_5, overlap="allow_all")
        start = datetime.fromtimestamp(T0, UTC) - timedelta(hours=2)
        # Both ends are included, as on Temporal: 00:00 to 00:55 of that hour.
        await handle.backfill(start=start, end=start + timedelta(minutes=59, seconds=59))
        desc = await handle.describe()
        assert desc.fired == 12
        first = f"{id}-{start:%Y-%m-%dT%H:%M:%SZ}"
        assert await client.result(first, timeout=10) == "b"


async def test_errors_name_the_schedule_and_the_fix(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client:
        id = sid()
        with pytest.raises(bridge.InvalidScheduleError, match="5 fields"):
            await client.schedule(tick, "x", id=id, cron="*/5 * * *")
        with pytest.raises(bridge.InvalidScheduleError, match="not valid"):
            await client.schedule(tick, "x", id=id, cron="99 * * * *")
        with pytest.raises(bridge.InvalidScheduleError, match="overlap"):
            await client.schedule(tick, "x", id=id, cron=EVERY_5, overlap="cancel")  # type: ignore[arg-type]
        with pytest.raises(bridge.InvalidScheduleError, match="catchup_window"):
            await client.schedule(tick, "x", id=id, cron=EVERY_5, catchup_window=1)
        with pytest.raises(bridge.NotRegisteredError, match="no_such_workflow"):
            await client.schedule("no_such_workflow", id=id, cron=EVERY_5)
        assert await client.list_schedules() == []
        await client.schedule(tick, "x", id=id, cron=EVERY_5)
        with pytest.raises(bridge.ScheduleAlreadyExistsError, match=id):
            await client.schedule(tick, "x", id=id, cron=EVERY_5)
        for call in (
            client.describe_schedule,
            client.pause_schedule,
            client.resume_schedule,
            client.trigger_schedule,
            client.delete_schedule,
        ):
            with pytest.raises(bridge.ScheduleNotFoundError, match="nope"):
                await call("nope")


async def test_bridge_schedule_sets_one_up_from_a_script(settings: dict[str, Any]) -> None:
    id = sid()
    desc = await bridge.schedule(tick, "m", id=id, cron="@hourly", config=settings)
    assert (desc.id, desc.cron, desc.args, desc.overlap) == (id, "@hourly", {"label": "m"}, "skip")
    assert desc.next_fire_at is not None and desc.next_fire_at.minute == 0
    async with await bridge.connect(settings) as client:
        assert [d.id for d in await client.list_schedules()] == [id]
        assert (await client.schedule_handle(id).describe()).fired == 0


async def test_an_unreadable_row_stops_neither_the_worker_nor_other_schedules(
    settings: dict[str, Any], clock: FakeClock
) -> None:
    async with connected(settings, clock) as client, client.worker([tick]):
        good, bad = sid(), sid()
        await client.schedule(tick, "g", id=good, cron=EVERY_5, overlap="allow_all")
        await client.schedule(tick, "b", id=bad, cron=EVERY_5, overlap="allow_all")
        store = client.backend.store  # type: ignore[attr-defined]
        table = store.schema.schedules
        with store._write("test") as conn:
            conn.execute(table.update().where(table.c.id == bad).values(spec='{"cron": 1}'))
        clock.advance(300)
        await fired(client, good, 1)
        clock.advance(300)
        await fired(client, good, 2)
