"""W3C trace context on the bus: events published inside a span carry it (`traceparent`,
the CloudEvents distributed-tracing extension) on every transport, a consumer handles an
event inside the trace it carries, a completion event carries its run's trace, and events
written before (without the extension) are consumed as before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import bridge
from bridge.bus.consumer import Consumer
from bridge.bus.envelope import Event, traced
from bridge.bus.memory import MemoryTransport
from bridge.bus.outbox import SqlOutbox
from tests.conftest import fast_sql

pytestmark = pytest.mark.timeout(60)

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"


@contextlib.contextmanager
def in_span() -> Iterator[None]:
    """A current span with known ids; no tracer provider needed (the ids are what travels)."""
    context = SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        yield


def test_traced_adds_the_current_context_once() -> None:
    event = Event.new("t.happened", {"n": 1}, source="tests")
    assert traced(event) is event  # no span here: nothing to carry
    with in_span():
        carried = traced(event)
    assert carried.extensions["traceparent"] == TRACEPARENT
    assert carried.trace_headers == {"traceparent": TRACEPARENT}
    assert carried.key == event.key and carried.data == event.data
    # An event that already carries a trace (a completion event: its run's) keeps it.
    own = Event.new("t.happened", source="tests", traceparent=f"00-{1:032x}-{2:016x}-01")
    with in_span():
        assert traced(own) is own
    # The extension travels in the structured JSON every transport stores.
    assert Event.from_dict(carried.to_dict()).trace_headers == {"traceparent": TRACEPARENT}


def test_an_old_envelope_without_trace_context_reads_as_before() -> None:
    old = {"specversion": "1.0", "id": "e-1", "source": "old", "type": "t.x", "data": 3}
    event = Event.from_dict(old)
    assert event.trace_headers == {} and dict(event.extensions) == {}


async def test_a_consumer_handles_each_event_in_the_trace_it_carries() -> None:
    transport = MemoryTransport()
    seen: dict[str, int] = {}

    async def handler(event: Event, _conn: Any) -> None:
        seen[event.id] = trace.get_current_span().get_span_context().trace_id

    consumer = Consumer(transport=transport, subscription="s", handler=handler)
    await consumer.subscribe()
    with in_span():
        await transport.publish(Event.new("t.x", source="tests", id="traced"))
    await transport.publish(Event.new("t.x", source="tests", id="untraced"))
    # An event of an older release, stored without the extension.
    await transport.publish(Event.from_dict({"id": "old", "source": "tests", "type": "t.x"}))
    await consumer.run_once()
    assert seen["traced"] == TRACE_ID
    assert seen["untraced"] != TRACE_ID and seen["old"] != TRACE_ID
    assert consumer.stats.handled == 3


async def test_the_sql_outbox_keeps_each_publishers_trace(tmp_path: Path) -> None:
    outbox = SqlOutbox(url=f"sqlite:///{tmp_path}/bus.db")
    try:
        await outbox.subscribe("s")

        async def traced_publish() -> None:
            with in_span():
                await outbox.publish(Event.new("t.x", source="tests", id="traced"))

        # Published together, they share one group commit: each keeps its own context.
        await asyncio.gather(
            traced_publish(), outbox.publish(Event.new("t.x", source="tests", id="untraced"))
        )
        got = {d.event.id: d.event for d in await outbox.claim("s")}
        assert got["traced"].trace_headers == {"traceparent": TRACEPARENT}
        assert got["untraced"].trace_headers == {}
    finally:
        await outbox.close()


@bridge.workflow(name="trace_context.echo")
async def echo(ctx: bridge.Context, x: int) -> int:
    return x


async def test_a_completion_event_carries_its_runs_trace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/journal.db"
    settings = {"backend": "sql", "sql": {**fast_sql(url), "outbox": True}}
    async with await bridge.connect(settings) as client:
        with in_span():
            await client.start(echo, 7, id="echo-1")
        async with client.worker([echo]):
            assert await client.result("echo-1", timeout=20) == 7
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            body = conn.execute(sa.text("SELECT body FROM bridge_bus_events")).scalar_one()
    finally:
        engine.dispose()
    carried = Event.from_dict(json.loads(body))
    assert carried.id == "echo-1/completed"
    # The run's trace is the start span's, a child of the caller's span: same trace id.
    assert carried.trace_headers["traceparent"].split("-")[1] == f"{TRACE_ID:032x}"


def _nats_at_4222() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=0.5).close()
    except OSError:
        return False
    return True


async def test_nats_carries_the_trace_in_the_envelope_and_the_headers() -> None:
    nats = pytest.importorskip("nats", reason="nats-py is not installed")
    if not _nats_at_4222():
        pytest.skip("no NATS server at 127.0.0.1:4222")
    from bridge.bus.nats import NatsTransport

    tag = uuid.uuid4().hex[:12]
    transport = NatsTransport(
        servers="nats://127.0.0.1:4222", stream=f"TR{tag}", subject_prefix=f"tr{tag}"
    )
    try:
        await transport.connect()
        await transport.subscribe("s")
        with in_span():
            await transport.publish(Event.new("t.x", source="tests", id="traced"))
        got = []
        for _ in range(100):
            got += await transport.claim("s")
            if got:
                break
            await asyncio.sleep(0.02)
        assert [d.event.trace_headers for d in got] == [{"traceparent": TRACEPARENT}]
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            stored = await nc.jetstream().get_last_msg(f"TR{tag}", f"tr{tag}.t.x")
            assert (stored.headers or {}).get("traceparent") == TRACEPARENT
        finally:
            await nc.close()
    finally:
        await transport.close()
        nc = await nats.connect("nats://127.0.0.1:4222")
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(f"TR{tag}")
        await nc.close()


def test_a_webhook_continues_the_senders_trace(tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason='pip install "durable-bridge[webhooks]"')
    from starlette.testclient import TestClient

    from bridge.bus.webhooks import SIGNATURE_HEADER, EventRoute, sign, webhook_app

    bus = MemoryTransport()
    asyncio.run(bus.subscribe("all"))
    app = webhook_app(
        secret="whsec_trace",
        transport=bus,
        replay_url=f"sqlite:///{tmp_path}/replay.db",
        routes=[EventRoute(path="/e", type="t.hooked")],
    )
    body = b'{"n": 1}'
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(body, "whsec_trace"),
        "traceparent": TRACEPARENT,
    }
    assert TestClient(app).post("/e", content=body, headers=headers).status_code == 202
    (delivery,) = asyncio.run(bus.claim("all"))
    assert delivery.event.trace_headers == {"traceparent": TRACEPARENT}
