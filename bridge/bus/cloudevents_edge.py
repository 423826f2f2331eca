"""Conversion between the bridge's `Event` and the `cloudevents` SDK, at transport edges.

Inside the bridge every event is an `Event`; only where one leaves or enters over HTTP,
Kafka or structured JSON does it become the SDK's `CloudEvent` (`cloudevents.core.v1`).
Needs the optional `cloudevents` package (`pip install "durable-bridge[bus]"`).

Event data is JSON. In the binary bindings (HTTP headers + body, Kafka headers + value) the
body is the data's JSON text, encoded here rather than by the SDK, whose binary writer only
serializes dicts (a list or a number would become its Python repr).
"""

from __future__ import annotations

import json
import re
from datetime import UTC
from typing import TYPE_CHECKING, Any

from bridge.bus.envelope import Event, EventError
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from cloudevents.core.base import BaseCloudEvent
    from cloudevents.core.bindings.http import HTTPMessage
    from cloudevents.core.bindings.kafka import KafkaMessage

__all__ = [
    "from_cloudevent",
    "from_http",
    "from_json",
    "from_kafka",
    "to_cloudevent",
    "to_http",
    "to_json",
    "to_kafka",
]

_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-\.]+\+)?json(;.*)?$")
_CORE = ("id", "source", "type", "specversion", "subject", "time", "datacontenttype")


def _sdk() -> Any:
    try:
        from cloudevents.core.v1 import event
    except ImportError:
        raise BridgeError(
            "converting events to CloudEvents needs the cloudevents SDK: pip install "
            '"durable-bridge[bus]"'
        ) from None
    return event


def _attributes(event: Event) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": event.specversion,
        "time": event.time,
        "datacontenttype": event.datacontenttype,
    }
    if event.subject is not None:
        attrs["subject"] = event.subject
    attrs.update(event.extensions)
    return attrs


def _body(event: Event) -> bytes:
    if isinstance(event.data, str) and not _JSON_TYPE.match(event.datacontenttype):
        return event.data.encode()  # text/plain and the like travel as they are
    return json.dumps(event.data, separators=(",", ":")).encode()


def to_cloudevent(event: Event) -> BaseCloudEvent:
    """The SDK's CloudEvent for `event` (data as JSON values)."""
    return _sdk().CloudEvent(_attributes(event), event.data)


def from_cloudevent(ce: BaseCloudEvent) -> Event:
    """An `Event` from any SDK CloudEvent; binary (bytes) data is refused."""
    attrs = dict(ce.get_attributes())
    data = ce.get_data()
    if isinstance(data, (bytes, bytearray)):
        raise EventError(
            f"CloudEvent {attrs.get('id')!r} carries binary data; bridge events carry JSON "
            "data (send it as JSON, or base64 it into a JSON string)"
        )
    time = attrs.get("time")
    if time is not None:
        if time.tzinfo is None:
            raise EventError(f"CloudEvent {attrs.get('id')!r}: time {time} has no timezone")
        attrs["time"] = time.astimezone(UTC)
    extensions = {k: str(v) for k, v in attrs.items() if k not in _CORE and v is not None}
    core = {k: v for k, v in attrs.items() if k in _CORE and v is not None}
    core.setdefault("datacontenttype", "application/json")
    try:
        return Event(**core, data=data, extensions=extensions)
    except TypeError as exc:
        raise EventError(f"CloudEvent is not a valid bridge event: {exc}") from None


def _binary_cloudevent(event: Event) -> BaseCloudEvent:
    return _sdk().CloudEvent(_attributes(event), _body(event))


# -- structured JSON ---------------------------------------------------------------------------


def to_json(event: Event) -> bytes:
    """Structured-mode JSON (`application/cloudevents+json`)."""
    from cloudevents.core.formats.json import JSONFormat

    return JSONFormat().write(to_cloudevent(event))


def from_json(raw: str | bytes) -> Event:
    from cloudevents.core.formats.json import JSONFormat

    _sdk()
    return from_cloudevent(JSONFormat().read(None, raw))


# -- HTTP ------------------------------------------------------------------------------------


def to_http(event: Event, *, binary: bool = True) -> HTTPMessage:
    """An HTTP message: binary mode (ce-* headers + data body) or structured mode."""
    from cloudevents.core.bindings import http

    if binary:
        return http.to_binary_event(_binary_cloudevent(event))
    return http.to_structured_event(to_cloudevent(event))


def from_http(headers: dict[str, str], body: bytes) -> Event:
    """Parse an HTTP request in either mode (told apart by the ce-* headers)."""
    from cloudevents.core.bindings import http

    _sdk()
    return from_cloudevent(http.from_http_event(http.HTTPMessage(headers=headers, body=body)))


# -- Kafka ---------------------------------------------------------------------------------


def to_kafka(event: Event, *, binary: bool = True) -> KafkaMessage:
    """A Kafka record; its key is the `partitionkey` extension (None without one)."""
    from cloudevents.core.bindings import kafka

    if binary:
        return kafka.to_binary_event(_binary_cloudevent(event))
    return kafka.to_structured_event(to_cloudevent(event))


def from_kafka(headers: dict[str, bytes], value: bytes, key: str | bytes | None = None) -> Event:
    """Parse a Kafka record in either mode (told apart by the ce_* headers)."""
    from cloudevents.core.bindings import kafka

    _sdk()
    message = kafka.KafkaMessage(headers=headers, key=key, value=value)
    return from_cloudevent(kafka.from_kafka_event(message))
