"""The SQL outbox transport and its inbox, on SQLite and PostgreSQL: dedup by (source, id),
fan-out to subscriptions, leases and their fencing, retries and dead letters, publishing in a
caller's transaction, and a real SIGKILL of a consumer process mid-handler."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import func, select

import bridge
from bridge.bus import (
    Consumer,
    Event,
    LeaseLostError,
    ManualClock,
    SqlInbox,
    SqlOutbox,
    Transport,
    publish_in,
)
from bridge.bus import _outbox_schema as schema
from bridge.errors import WorkflowFailedError
from tests.bus_consumer_proc import LEASE_SECONDS, SUBSCRIPTION, ledger, ledger_meta
from tests.conftest import ROOT, fast_sql, wait_until


def _drop_bus_tables(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        ledger_meta.drop_all(conn, checkfirst=True)
        schema.metadata.drop_all(conn, checkfirst=True)
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bus.db"
        return
    url = request.getfixturevalue("pg_database")
    _drop_bus_tables(url)
    yield url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def outbox(bus_url: str, clock: ManualClock) -> AsyncIterator[SqlOutbox]:
    o = SqlOutbox(url=bus_url, max_deliveries=3, clock=clock)
    yield o
    await o.close()


def _event(i: int, type: str = "doc.uploaded") -> Event:
    return Event.new(type, {"n": i}, source="tests", id=f"e{i}", partitionkey=f"k{i % 3}")


def test_is_a_transport(outbox: SqlOutbox) -> None:
    assert isinstance(outbox, Transport)


async def test_publish_twice_stores_and_delivers_once(outbox: SqlOutbox) -> None:
    await outbox.subscribe("s")
    e, e2 = _event(1), _event(2)
    await outbox.publish(e)
    await outbox.publish(e)
    assert await outbox.publish_many([e, e2]) == 1
    with outbox._reader() as conn:
        assert conn.execute(select(func.count()).select_from(schema.events)).scalar() == 2
    claimed = await outbox.claim("s", max_messages=10)
    assert [d.event for d in claimed] == [e, e2]  # the envelope survives the row
    assert [d.attempt for d in claimed] == [1, 1]


async def test_each_subscription_gets_every_event_of_its_types(outbox: SqlOutbox) -> None:
    await outbox.subscribe("all")
    await outbox.subscribe("docs", ["doc.uploaded"])
    await outbox.subscribe("docs", ["doc.uploaded"])  # idempotent
    await asyncio.gather(
        outbox.publish(_event(1, "doc.uploaded")),
        outbox.publish(_event(2, "payment.received")),
        outbox.publish(_event(3, "doc.uploaded")),
    )
    assert [d.event.id for d in await outbox.claim("all")] == ["e1", "e2", "e3"]
    assert [d.event.id for d in await outbox.claim("docs")] == ["e1", "e3"]
    assert await outbox.backlog("docs") == 2


async def test_lease_expiry_redelivers_and_fences_the_old_token(
    outbox: SqlOutbox, clock: ManualClock
) -> None:
    await outbox.subscribe("s")
    await outbox.publish(_event(1))
    [first] = await outbox.claim("s", lease_seconds=5)
    assert await outbox.claim("s") == []
    clock.advance(6)
    [second] = await outbox.claim("s", lease_seconds=5)
    assert (second.attempt, second.event) == (2, first.event)
    with pytest.raises(LeaseLostError, match="e1"):
        await outbox.ack(first)
    with pytest.raises(LeaseLostError):
        await outbox.nack(first)
    await outbox.ack(second)
    with pytest.raises(LeaseLostError):
        await outbox.ack(second)  # acked already
    assert await outbox.backlog("s") == 0


async def test_nack_delays_then_dead_letters_after_max_deliveries(
    outbox: SqlOutbox, clock: ManualClock
) -> None:
    await outbox.subscribe("s")
    await outbox.publish(_event(1))
    for attempt in (1, 2):
        [d] = await outbox.claim("s")
        assert d.attempt == attempt
        await outbox.nack(d, delay=10, error="boom")
        assert await outbox.claim("s") == []  # not before the delay
        clock.advance(11)
    [d] = await outbox.claim("s")
    await outbox.nack(d, error="boom at last")
    assert await outbox.backlog("s") == 0
    [dead] = await outbox.dead_letters("s")
    assert (dead.event.id, dead.attempts, dead.error) == ("e1", 3, "boom at last")


async def test_a_message_that_kills_every_consumer_is_dead_lettered(
    outbox: SqlOutbox, clock: ManualClock
) -> None:
    await outbox.subscribe("s")
    await outbox.publish(_event(1))
    for _ in range(3):
        assert len(await outbox.claim("s", lease_seconds=1)) == 1  # ... and the consumer dies
        clock.advance(2)
    assert await outbox.claim("s") == []
    [dead] = await outbox.dead_letters()
    assert dead.attempts == 3 and "lease expired" in (dead.error or "")


async def test_a_late_ack_of_a_dead_lettered_event_withdraws_its_letter(
    outbox: SqlOutbox, clock: ManualClock
) -> None:
    """Found by the state machine: a holder stalls past the last lease, the event is
    buried, then the holder commits and acks. The event was handled, so no dead letter."""
    await outbox.subscribe("s")
    await outbox.publish(_event(1))
    await outbox.publish(_event(2))
    held = []
    for _ in range(3):
        held = await outbox.claim("s", lease_seconds=1)
        clock.advance(2)
    assert await outbox.claim("s") == []
    assert {d.event.id for d in await outbox.dead_letters("s")} == {"e1", "e2"}
    late_1, late_2 = held
    await outbox.ack(late_1)
    assert [d.event.id for d in await outbox.dead_letters("s")] == ["e2"]
    with pytest.raises(LeaseLostError):
        await outbox.ack(late_1)  # withdrawn once; a second ack has nothing to take back
    # Inside the handler's transaction a lost lease still rolls the handler back, so the
    # event stays dead and unhandled.
    async with outbox.transaction() as conn:
        with pytest.raises(LeaseLostError):
            outbox.ack_in(conn, late_2)
    assert [d.event.id for d in await outbox.dead_letters("s")] == ["e2"]


async def test_handled_but_unacked_is_not_dead_lettered_when_its_lease_runs_out(
    outbox: SqlOutbox, clock: ManualClock
) -> None:
    """Found by the state machine: a stale holder commits the work (inbox row) but its ack
    is refused; the rival holding the last delivery dies. The event was handled."""
    await outbox.subscribe("s")
    await outbox.publish(_event(1))
    [stale] = await outbox.claim("s", lease_seconds=1)
    for _ in range(2):
        clock.advance(2)
        assert len(await outbox.claim("s", lease_seconds=1)) == 1
    async with outbox.inbox().transaction() as tx:
        assert tx.record("s", stale.event)
    with pytest.raises(LeaseLostError):
        await outbox.ack(stale)
    clock.advance(2)
    assert await outbox.claim("s") == []
    assert await outbox.dead_letters("s") == []
    assert await outbox.backlog("s") == 0


async def test_publish_in_commits_with_the_callers_transaction(outbox: SqlOutbox) -> None:
    await outbox.subscribe("s")
    with outbox.engine.begin() as conn:
        ledger_meta.create_all(conn)
    with outbox.engine.connect() as conn:
        with conn.begin():
            conn.execute(ledger.insert().values(event_id="e1", pid=0))  # the state change
            assert publish_in(conn, _event(1))
        trans = conn.begin()
        conn.execute(ledger.insert().values(event_id="e2", pid=0))
        publish_in(conn, _event(2))
        trans.rollback()  # the state change failed: its event never existed
        with conn.begin():
            assert not publish_in(conn, _event(1))
    assert [d.event.id for d in await outbox.claim("s")] == ["e1"]
    assert _ledger_rows(outbox) == [("e1", 0)]


def _ledger_rows(outbox: SqlOutbox) -> list[tuple[str, int]]:
    with outbox._reader() as conn:
        rows = conn.execute(select(ledger.c.event_id, ledger.c.pid)).all()
    return [(r[0], r[1]) for r in rows]


async def test_consumer_handles_each_event_once_in_the_inbox_transaction(
    outbox: SqlOutbox, clock: ManualClock
) -> None:
    with outbox.engine.begin() as conn:
        ledger_meta.create_all(conn)
    failures = Counter[str]()

    async def handler(event: Event, conn: Any) -> None:
        conn.execute(ledger.insert().values(event_id=event.id, pid=0))
        if event.data["n"] % 7 == 0 and failures[event.id] < 1:
            failures[event.id] += 1
            raise RuntimeError("transient")  # its ledger row is rolled back with it

    consumer = Consumer(transport=outbox, subscription="s", handler=handler, batch_size=8)
    await consumer.subscribe()
    events = [_event(i) for i in range(40)]
    for e in events:
        await outbox.publish(e)
    # A stale claim (lease since expired) whose holder never acked: redelivered, and the
    # old holder's in-transaction ack would raise LeaseLostError.
    [stale] = await outbox.claim("s", max_messages=1, lease_seconds=1)
    clock.advance(2)
    for _ in range(20):
        await consumer.run_once()
        clock.advance(consumer.retry_max)
    assert await outbox.backlog("s") == 0
    handled = Counter(eid for eid, _ in _ledger_rows(outbox))
    assert handled == {e.id: 1 for e in events}
    assert consumer.stats.failed == len(failures) > 0
    inbox = outbox.inbox()
    assert await inbox.seen("s", stale.event)
    # The same events published again (another producer retry) are not delivered again.
    for e in events[:5]:
        await outbox.publish(e)
    assert await consumer.run_once() == 0


class _RivalOutbox(SqlOutbox):
    """Each claim is followed by the lease running out and a rival claiming the same rows,
    before the first claimant's handler gets to run."""

    rivals: list[Any]

    async def claim(self, subscription: str, **kw: Any) -> list[Any]:
        mine = await super().claim(subscription, **kw)
        self.clock.advance(kw["lease_seconds"] + 1)  # type: ignore[attr-defined]
        self.rivals = await super().claim(subscription, **kw)
        return mine


async def test_lost_lease_rolls_back_the_handlers_writes(bus_url: str) -> None:
    outbox = _RivalOutbox(url=bus_url, clock=ManualClock())
    with outbox.engine.begin() as conn:
        ledger_meta.create_all(conn)
    calls = []

    async def handler(event: Event, conn: Any) -> None:
        calls.append(event.id)
        conn.execute(ledger.insert().values(event_id=event.id, pid=1))

    consumer = Consumer(transport=outbox, subscription="s", handler=handler, lease_seconds=5)
    await consumer.subscribe()
    await outbox.publish(_event(1))
    assert await consumer.run_once() == 1
    assert calls == ["e1"]  # the handler ran, but its lease was gone at the ack:
    assert consumer.stats.lease_lost == 1 and consumer.stats.handled == 0
    assert _ledger_rows(outbox) == []  # so its writes were rolled back with the inbox row
    [rival] = outbox.rivals
    assert not await outbox.inbox().seen("s", rival.event)
    await outbox.ack(rival)
    await outbox.close()


async def test_separate_inbox_for_other_transports(tmp_path: Path) -> None:
    inbox = SqlInbox(url=f"sqlite:///{tmp_path}/inbox.db")
    e = _event(1)
    async with inbox.transaction() as tx:
        assert tx.record("c", e)
        assert not tx.record("c", e)
        assert tx.record("other", e)
        assert not tx.ack_in(None)  # type: ignore[arg-type]
    assert await inbox.seen("c", e)
    await inbox.close()


@pytest.mark.postgres
async def test_postgres_concurrent_claimers_take_disjoint_rows(pg_database: str) -> None:
    _drop_bus_tables(pg_database)
    a = SqlOutbox(url=pg_database)
    b = SqlOutbox(url=pg_database)
    try:
        await a.subscribe("s")
        await a.publish_many([_event(i) for i in range(20)])
        # Hold a's claim transaction open while b claims: SKIP LOCKED must skip a's rows.
        async with a.transaction() as conn:
            locked = conn.execute(
                select(schema.deliveries.c.event_seq)
                .order_by(schema.deliveries.c.event_seq)
                .limit(5)
                .with_for_update()
            ).all()
            got_b = await b.claim("s", max_messages=20)
        assert len(locked) == 5
        assert [d.event.id for d in got_b] == [f"e{i}" for i in range(5, 20)]
        got_a = await a.claim("s", max_messages=20)
        assert [d.event.id for d in got_a] == [f"e{i}" for i in range(5)]
    finally:
        await a.close()
        await b.close()


def _consumer_proc(url: str, started: Path, log: Path, *hang_on: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.bus_consumer_proc", url, str(started), *hang_on],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_sigkill_mid_handler_then_a_new_consumer_finishes_exactly_once(
    bus_url: str, tmp_path: Path
) -> None:
    n = 80
    outbox = SqlOutbox(url=bus_url)
    with outbox.engine.begin() as conn:
        ledger_meta.create_all(conn)
    await outbox.subscribe(SUBSCRIPTION)
    events = [_event(i) for i in range(n)]
    await outbox.publish_many(events)
    started, log = tmp_path / "started.txt", tmp_path / "consumers.log"
    hang_on = "e42"
    procs = [_consumer_proc(bus_url, started, log, hang_on)]
    try:
        rows: list[tuple[str, int]] = []

        def progress(at_least: int) -> bool:
            rows[:] = _ledger_rows(outbox)
            return len(rows) >= at_least

        def begun(event_id: str) -> bool:
            return started.exists() and f" {event_id}\n" in started.read_text()

        # The first consumer hangs inside the handler of e42, its batch uncommitted.
        wait_until(lambda: begun(hang_on), timeout=30, what="the first consumer to reach e42")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        first_pid = procs[0].pid
        assert progress(1) and hang_on not in {eid for eid, _ in rows}
        procs.append(_consumer_proc(bus_url, started, log))
        wait_until(lambda: progress(n), timeout=30 + LEASE_SECONDS, what="every event handled")
        time.sleep(0.2)  # a double handling would show up as an extra row
        progress(n)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert Counter(eid for eid, _ in rows) == {e.id: 1 for e in events}, log.read_text()
    assert await outbox.backlog(SUBSCRIPTION) == 0
    begun_by_first = {
        eid
        for pid, eid in (line.split() for line in started.read_text().splitlines())
        if int(pid) == first_pid
    }
    finished_by_second = {eid for eid, pid in rows if pid != first_pid}
    # The kill landed mid-handler: work the first process began was done by the second.
    assert begun_by_first & finished_by_second
    await outbox.close()


# -- completion events from the SQL executor -------------------------------------------------


@bridge.workflow
async def bus_doubles(ctx: bridge.Context, x: int) -> dict[str, int]:
    return {"double": x * 2}


@bridge.workflow
async def bus_refuses(ctx: bridge.Context, x: int) -> int:
    raise ValueError(f"refused {x}")


async def test_sql_executor_publishes_completion_events_with_the_journal(bus_url: str) -> None:
    outbox = SqlOutbox(url=bus_url)
    await outbox.subscribe("endings", ["bridge.workflow.completed.v1", "bridge.workflow.failed.v1"])
    client = await bridge.connect({"backend": "sql", "sql": {**fast_sql(bus_url), "outbox": True}})
    run = uuid.uuid4().hex[:8]
    try:
        async with client.worker([bus_doubles, bus_refuses]):
            assert await client.execute(bus_doubles, 21, id=f"ok-{run}", timeout=20) == {
                "double": 42
            }
            with pytest.raises(WorkflowFailedError):
                await client.execute(bus_refuses, 7, id=f"no-{run}", timeout=20)
    finally:
        await client.close()
    ended = {d.event.subject: d.event for d in await outbox.claim("endings")}
    assert set(ended) == {f"ok-{run}", f"no-{run}"}
    ok, no = ended[f"ok-{run}"], ended[f"no-{run}"]
    assert (ok.id, ok.source, ok.type) == (
        f"ok-{run}/completed",
        "bridge.workflows",
        "bridge.workflow.completed.v1",
    )
    assert ok.data == {
        "workflow_id": f"ok-{run}",
        "workflow": bus_doubles.name,
        "engine": "sql",
        "result": {"double": 42},
    }
    assert (no.id, no.type) == (f"no-{run}/failed", "bridge.workflow.failed.v1")
    assert no.data["workflow"] == bus_refuses.name and "refused 7" in str(no.data["error"])
    await outbox.close()


@pytest.mark.parametrize("run", range(3))
async def test_publishing_while_a_consumer_drains_never_waits_out_the_busy_timeout(
    tmp_path: Path, run: int
) -> None:
    """Defect 6 of #13: a publisher and a consumer, each with an outbox object of its own on
    one SQLite file in one process. The consumer's inbox transaction holds the write lock
    across its handler's await; a publish then blocked the event loop in SQLite's busy
    handler, so the handler could not finish, and the publish failed with "database is
    locked" after the busy timeout (4 runs in 5)."""
    url = f"sqlite:///{tmp_path}/bus.db"
    publisher, consumer_outbox = SqlOutbox(url=url), SqlOutbox(url=url)
    handled: list[str] = []

    async def handler(event: Event, conn: Any) -> None:
        handled.append(event.id)
        await asyncio.sleep(0.01)

    consumer = Consumer(
        transport=consumer_outbox, subscription="drain", handler=handler, poll_interval=0.01
    )
    await consumer.subscribe()
    draining = asyncio.create_task(consumer.run())
    try:
        for i in range(300):
            await publisher.publish(_event(i))
        deadline = time.monotonic() + 60
        while len(handled) < 300 and not draining.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        consumer.stop()
        await draining
        await publisher.close()
        await consumer_outbox.close()
    assert sorted(handled, key=lambda id: int(id[1:])) == [f"e{i}" for i in range(300)]
    assert consumer.stats.failed == 0
