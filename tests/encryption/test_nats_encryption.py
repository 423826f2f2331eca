"""Payload encryption on the NATS JetStream bus: message bodies are sealed in the stream."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

pytest.importorskip("nats", reason='nats-py is not installed (pip install "durable-bridge[nats]")')

from bridge.bus.envelope import Event
from bridge.bus.nats import NatsTransport
from bridge.encryption import PREFIX, Keyring, generate_key
from bridge.errors import PayloadKeyError
from tests.bus.test_nats import eventually, make_transport, nats_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-XYZ"
K1 = Keyring({"k1": base64.b64decode(generate_key())}, "k1")
WRONG = Keyring({"k1": base64.b64decode(generate_key())}, "k1")


async def test_nats_bodies_are_sealed(
    make_transport: Callable[..., NatsTransport],  # noqa: F811 (the fixture)
) -> None:
    sealed = make_transport(codec=K1)
    await sealed.connect()
    await sealed.subscribe("enc", ["enc.secret"])
    event = Event.new("enc.secret", {"secret": SECRET}, source="test")
    await sealed.publish(event)
    # What the stream stores, read past the transport.
    _, js = await sealed._ready()
    raw = await js.get_msg(sealed.stream, seq=1)
    assert raw.data is not None and raw.data.startswith(PREFIX.encode())
    assert SECRET.encode() not in raw.data
    # A consumer with another key under the same id fails clearly, without dead-lettering.
    wrong = make_transport(codec=WRONG)  # the same stream and subjects
    await wrong.connect()
    with pytest.raises(PayloadKeyError, match="'k1'"):
        await wrong.claim("enc", lease_seconds=1.0)
    # The right key reads it (redelivered once the wrong consumer's lease ran out).
    got = await eventually(lambda: sealed.claim("enc", lease_seconds=1.0), timeout=5.0)
    assert [d.event for d in got] == [event]
    await sealed.ack(got[0])
    assert await sealed.dead_letters() == []
