"""Signed webhooks: a good request publishes one event or wakes a real run; a bad, missing,
stale or replayed signature gets 401 and changes nothing, also after a restart; an error
reply tells the outside nothing of the inside.

Event routes are driven with Starlette's TestClient. Signal routes reach a real run on the
sql backend, whose client belongs to the test's event loop, so they are driven in that loop
through httpx's ASGI transport (TestClient would run the app on a loop of its own thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason='pip install "durable-bridge[webhooks]"')

import httpx
import sqlalchemy
from starlette.testclient import TestClient

import bridge
from bridge.bus import Event, MemoryTransport
from bridge.bus.webhooks import (
    SIGNATURE_HEADER,
    EventRoute,
    SignalRoute,
    _SeenSignatures,
    seen_signatures,
    sign,
    webhook_app,
)
from bridge.errors import ConfigError
from tests.conftest import fast_sql

SECRET = "whsec_test_0123456789"


def post(body: bytes, signature: str | None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return {"content": body, "headers": headers}


def forged(body: bytes) -> str:
    return sign(body, "not-the-secret")


# Well past the 300 s tolerance: a 301 s offset let a loaded machine's second between
# signing and checking bring the future one back inside it.
def stale(body: bytes) -> str:
    return sign(body, SECRET, timestamp=int(time.time()) - 330)


def future(body: bytes) -> str:
    return sign(body, SECRET, timestamp=int(time.time()) + 330)


def tampered(body: bytes) -> str:
    return sign(body + b" ", SECRET)  # signed a different body


def malformed(body: bytes) -> str:
    return "v1=" + sign(body, SECRET).split("v1=")[1]  # no timestamp


BAD_SIGNATURES = {
    "missing": lambda body: None,
    "empty": lambda body: "",
    "forged": forged,
    "tampered": tampered,
    "stale": stale,
    "future": future,
    "malformed": malformed,
}


@pytest.fixture
def replay_url(tmp_path: Path) -> str:
    """The database that keeps accepted signatures (one per test)."""
    return f"sqlite:///{tmp_path}/webhooks.db"


# -- events ---------------------------------------------------------------------------------
@pytest.fixture
def bus() -> MemoryTransport:
    transport = MemoryTransport()
    asyncio.run(transport.subscribe("all"))
    return transport


def published(bus: MemoryTransport) -> list[Event]:
    deliveries = asyncio.run(bus.claim("all", max_messages=100))
    return [d.event for d in deliveries]


@pytest.fixture
def events_app(bus: MemoryTransport, replay_url: str) -> TestClient:
    app = webhook_app(
        secret=SECRET,
        transport=bus,
        replay_url=replay_url,
        routes=[
            EventRoute(
                path="/hooks/payments",
                type="payment.received",
                source="psp",
                id_from=lambda body: body["payment_id"],
                subject_from=lambda body: body["debtor"],
            ),
            EventRoute(path="/hooks/livekit", type="call.completed", source="livekit"),
            EventRoute(path="/events"),
        ],
    )
    return TestClient(app)


def test_a_signed_request_publishes_exactly_one_event(
    events_app: TestClient, bus: MemoryTransport
) -> None:
    body = json.dumps({"payment_id": "pay_1", "debtor": "d-7", "cents": 1200}).encode()
    response = events_app.post("/hooks/payments", **post(body, sign(body, SECRET)))

    assert response.status_code == 202, response.text
    assert response.json() == {
        "published": {"source": "psp", "id": "pay_1", "type": "payment.received"}
    }
    [event] = published(bus)
    assert (event.source, event.id, event.type, event.subject) == (
        "psp",
        "pay_1",
        "payment.received",
        "d-7",
    )
    assert event.data == {"payment_id": "pay_1", "debtor": "d-7", "cents": 1200}


def test_default_event_id_is_the_body_digest(events_app: TestClient, bus: MemoryTransport) -> None:
    body = json.dumps({"room": "r-1", "transcript": "hello"}).encode()
    # The sender retries the same notification with a fresh signature: one event. Both
    # timestamps come from one clock reading: read twice, a second boundary between the
    # reads made the two signatures identical, and the retry was refused as a replay.
    now = int(time.time())
    first = events_app.post("/hooks/livekit", **post(body, sign(body, SECRET, timestamp=now)))
    again = events_app.post("/hooks/livekit", **post(body, sign(body, SECRET, timestamp=now - 1)))
    assert (first.status_code, again.status_code) == (202, 202)
    [event] = published(bus)
    assert event.id == hashlib.sha256(body).hexdigest()


def test_a_cloudevent_body_is_published_as_it_is(
    events_app: TestClient, bus: MemoryTransport
) -> None:
    sent = Event.new("doc.uploaded", {"doc": "a.pdf"}, source="storage", traceparent="00-ab-cd-01")
    body = json.dumps(sent.to_dict()).encode()
    response = events_app.post("/events", **post(body, sign(body, SECRET)))
    assert response.status_code == 202, response.text
    assert published(bus) == [sent]


@pytest.mark.parametrize("bad", sorted(BAD_SIGNATURES))
def test_a_bad_signature_is_401_and_publishes_nothing(
    events_app: TestClient, bus: MemoryTransport, bad: str
) -> None:
    body = json.dumps({"payment_id": "pay_2", "debtor": "d-8"}).encode()
    response = events_app.post("/hooks/payments", **post(body, BAD_SIGNATURES[bad](body)))
    assert response.status_code == 401
    assert "error" in response.json()
    assert published(bus) == []


def test_a_replayed_request_inside_the_window_is_401(
    events_app: TestClient, bus: MemoryTransport
) -> None:
    body = json.dumps({"payment_id": "pay_3", "debtor": "d-9"}).encode()
    request = post(body, sign(body, SECRET))
    assert events_app.post("/hooks/payments", **request).status_code == 202
    replay = events_app.post("/hooks/payments", **request)
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]
    assert len(published(bus)) == 1


def test_secret_rotation_accepts_old_and_new(bus: MemoryTransport, replay_url: str) -> None:
    app = TestClient(
        webhook_app(
            secret=["new-secret", "old-secret"],
            transport=bus,
            replay_url=replay_url,
            routes=[EventRoute(path="/e", type="t")],
        )
    )
    a, b = b'{"n": 1}', b'{"n": 2}'
    assert app.post("/e", **post(a, sign(a, "old-secret"))).status_code == 202
    both = f"{sign(b, 'other')},v1={sign(b, 'new-secret').split('v1=')[1]}"
    assert app.post("/e", **post(b, both)).status_code == 202
    assert [e.data for e in published(bus)] == [{"n": 1}, {"n": 2}]


def test_an_unreadable_body_is_400_and_can_be_fixed(
    events_app: TestClient, bus: MemoryTransport
) -> None:
    body = b'{"debtor": "d-1"}'  # no payment_id
    request = post(body, sign(body, SECRET))
    response = events_app.post("/hooks/payments", **request)
    assert response.status_code == 400
    assert "payment_id" in response.json()["error"]
    not_json = b"{nope"
    assert (
        events_app.post("/hooks/payments", **post(not_json, sign(not_json, SECRET))).status_code
        == 400
    )
    assert published(bus) == []


def test_oversized_body_is_413(bus: MemoryTransport, replay_url: str) -> None:
    app = TestClient(
        webhook_app(
            secret=SECRET,
            transport=bus,
            replay_url=replay_url,
            routes=[EventRoute(path="/e", type="t")],
            max_body_bytes=64,
        )
    )
    body = json.dumps({"pad": "x" * 100}).encode()
    assert app.post("/e", **post(body, sign(body, SECRET))).status_code == 413
    # Streamed without a Content-Length: refused once the limit is passed.
    streamed = app.post(
        "/e",
        content=iter([body[:50], body[50:]]),
        headers={SIGNATURE_HEADER: sign(body, SECRET)},
    )
    assert streamed.status_code == 413
    assert published(bus) == []


def test_routes_need_what_they_use() -> None:  # refused before any database is opened
    with pytest.raises(ConfigError, match="'/e' publishes events: pass transport="):
        webhook_app(secret=SECRET, routes=[EventRoute(path="/e", type="t")])
    with pytest.raises(ConfigError, match="'/s' sends signals: pass client="):
        webhook_app(
            secret=SECRET,
            routes=[SignalRoute(path="/s", signal="x", workflow_id_from=lambda b: b["id"])],
        )
    with pytest.raises(ConfigError, match="secret"):
        webhook_app(secret="", routes=[])


# -- signals to a real run ------------------------------------------------------------------
@bridge.workflow
async def debtor_call(ctx: bridge.Context, debtor_id: str) -> dict[str, Any]:
    """The seeds' debtor workflow, up to the call-completed webhook."""
    call = await ctx.wait_for_signal("call_completed", timeout=120)
    return {"debtor": debtor_id, "call": call}


@pytest.fixture
async def sql_client(sql_settings: dict[str, Any]) -> AsyncIterator[bridge.Client]:
    client = await bridge.connect(sql_settings)
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def livekit_app(client: bridge.Client, replay_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The call-completed webhook, signalling `debtor-<room>`, as an HTTP client; its
    lifespan runs as a server would run it (httpx's transport does not)."""
    app = webhook_app(
        secret=SECRET,
        client=client,
        replay_url=replay_url,
        routes=[
            SignalRoute(
                path="/hooks/livekit",
                signal="call_completed",
                workflow_id_from=lambda body: f"debtor-{body['room']}",
                payload_from=lambda body: {"transcript": body["transcript"]},
            )
        ],
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hooks") as http,
    ):
        yield http


@pytest.fixture
async def signal_app(
    sql_client: bridge.Client, replay_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with livekit_app(sql_client, replay_url) as http:
        yield http


async def wait_status(handle: bridge.WorkflowHandle, status: bridge.Status) -> None:
    for _ in range(500):
        if (await handle.describe()).status is status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {handle.id} never reached {status}")


async def test_a_signed_webhook_wakes_the_waiting_run_and_a_bad_one_does_not(
    sql_client: bridge.Client, signal_app: httpx.AsyncClient
) -> None:
    async with sql_client.worker([debtor_call]):
        handle = await sql_client.start(debtor_call, "d-1", id="debtor-room-1")
        await wait_status(handle, bridge.Status.WAITING)

        forged_body = json.dumps({"room": "room-1", "transcript": "forged"}).encode()
        for name, make in BAD_SIGNATURES.items():
            response = await signal_app.post(
                "/hooks/livekit", **post(forged_body, make(forged_body))
            )
            assert response.status_code == 401, name
        await asyncio.sleep(0.3)  # a signal that got through would have woken the run by now
        assert (await handle.describe()).status is bridge.Status.WAITING

        body = json.dumps({"room": "room-1", "transcript": "will pay friday"}).encode()
        request = post(body, sign(body, SECRET))
        response = await signal_app.post("/hooks/livekit", **request)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "signalled": {"workflow_id": "debtor-room-1", "signal": "call_completed"}
        }
        assert await handle.result(timeout=20) == {
            "debtor": "d-1",
            "call": {"transcript": "will pay friday"},
        }
        replay = await signal_app.post("/hooks/livekit", **request)
        assert replay.status_code == 401


async def test_a_webhook_for_an_unknown_or_finished_run(
    sql_client: bridge.Client, signal_app: httpx.AsyncClient
) -> None:
    async with sql_client.worker([debtor_call]):
        body = json.dumps({"room": "nobody", "transcript": "x"}).encode()
        response = await signal_app.post("/hooks/livekit", **post(body, sign(body, SECRET)))
        assert response.status_code == 404
        assert response.json() == {"error": "no such workflow"}

        handle = await sql_client.start(debtor_call, "d-2", id="debtor-room-2")
        await wait_status(handle, bridge.Status.WAITING)
        body = json.dumps({"room": "room-2", "transcript": "done"}).encode()
        assert (
            await signal_app.post("/hooks/livekit", **post(body, sign(body, SECRET)))
        ).status_code == 202
        await handle.result(timeout=20)
        late = json.dumps({"room": "room-2", "transcript": "late"}).encode()
        response = await signal_app.post("/hooks/livekit", **post(late, sign(late, SECRET)))
        assert response.status_code == 409, response.text
        assert response.json() == {"error": "the workflow has already finished"}


@bridge.workflow
async def two_calls(ctx: bridge.Context, debtor_id: str) -> list[Any]:
    """Takes a second call_completed signal if one comes within a second (a replay would)."""
    first = await ctx.wait_for_signal("call_completed", timeout=120)
    second = await ctx.wait_for_signal("call_completed", timeout=1.0)
    return [first, second]


async def test_a_replay_after_the_app_is_recreated_is_refused(
    sql_client: bridge.Client, replay_url: str
) -> None:
    """Defect 5 of #13: the seen signatures lived in the app's memory, so a restarted app
    took the same signed request again and the run got the signal twice."""
    body = json.dumps({"room": "room-3", "transcript": "will pay monday"}).encode()
    request = post(body, sign(body, SECRET))
    async with sql_client.worker([two_calls]):
        handle = await sql_client.start(two_calls, "d-3", id="debtor-room-3")
        await wait_status(handle, bridge.Status.WAITING)
        async with livekit_app(sql_client, replay_url) as before_restart:
            assert (await before_restart.post("/hooks/livekit", **request)).status_code == 202
        async with livekit_app(sql_client, replay_url) as after_restart:
            replay = await after_restart.post("/hooks/livekit", **request)
        assert replay.status_code == 401, replay.text
        assert "replay" in replay.json()["error"]
        assert await handle.result(timeout=20) == [{"transcript": "will pay monday"}, None]


def test_seen_signatures_are_kept_for_their_window_then_pruned(replay_url: str) -> None:
    seen = _SeenSignatures(replay_url)
    try:
        assert seen.claim("aa", expires_at=100.0, now=10.0)
        assert not seen.claim("aa", expires_at=100.0, now=50.0)  # inside its window
        assert seen.claim("bb", expires_at=300.0, now=200.0)  # "aa" is past its window now
        with seen.engine.connect() as conn:
            kept = conn.execute(sqlalchemy.select(seen_signatures.c.signature)).scalars().all()
        assert kept == ["bb"]
        seen.forget("bb")  # a request that failed after verification may be sent again
        assert seen.claim("bb", expires_at=300.0, now=200.0)
    finally:
        seen.engine.dispose()


@pytest.mark.postgres
async def test_an_unknown_run_gets_a_bare_404_and_the_log_a_masked_reason(
    pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 3 of #13: the 404 carried the journal's URL, password included, to the sender.
    The server here trusts every local connection, so any password opens it."""
    url = pg_database.replace("://postgres@", "://postgres:S3cret@")
    assert "S3cret" in url
    client = await bridge.connect({"backend": "sql", "sql": fast_sql(url)})
    try:
        body = json.dumps({"room": "nobody", "transcript": "x"}).encode()
        with caplog.at_level(logging.INFO, logger="bridge.bus.webhooks"):
            async with livekit_app(client, url) as app:
                response = await app.post("/hooks/livekit", **post(body, sign(body, SECRET)))
    finally:
        await client.close()
    assert response.status_code == 404
    assert response.json() == {"error": "no such workflow"}
    [record] = [r for r in caplog.records if r.name == "bridge.bus.webhooks"]
    assert "'debtor-nobody'" in record.getMessage()
    assert "postgres:***@" in record.getMessage()
    assert "S3cret" not in caplog.text
