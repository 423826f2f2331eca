"""The event envelope and its conversion to and from the cloudevents SDK at transport
edges (structured JSON, HTTP binary/structured, Kafka binary/structured)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.bus import Event, EventError

DATA: list[Any] = [
    {"doc": "a.pdf", "pages": 3, "tags": ["x", "é"]},
    [1, 2, {"k": None}],
    42,
    "plain text",
    "123",  # a string that looks like JSON must stay a string
    None,
]


def _event(data: Any = None, **kw: Any) -> Event:
    return Event(
        id="evt-1",
        source="/bridge/tests",
        type="doc.uploaded",
        data=data,
        subject=kw.pop("subject", "doc-7"),
        time=datetime(2025, 5, 17, 12, 30, 1, 250000, tzinfo=UTC),
        extensions=kw.pop("extensions", {"partitionkey": "debtor-9", "traceparent": "00-ab-cd-01"}),
        **kw,
    )


# -- the envelope itself -----------------------------------------------------------------------


def test_dict_round_trip_and_key() -> None:
    e = _event({"n": 1})
    assert Event.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    assert e.key == ("/bridge/tests", "evt-1")
    assert e.to_dict()["partitionkey"] == "debtor-9"


def test_new_encodes_typed_data_and_sets_defaults() -> None:
    e = Event.new("t", datetime(2025, 1, 1, tzinfo=UTC), source="s", partitionkey="k")
    assert e.data == "2025-01-01T00:00:00Z" and e.extensions == {"partitionkey": "k"}
    assert e.time.tzinfo is not None and e.specversion == "1.0" and e.id


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"id": ""}, "'id' must be a non-empty string"),
        ({"specversion": "0.3"}, "specversion"),
        ({"time": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"extensions": {"Bad-Name": "x"}}, "extension name 'Bad-Name'"),
        ({"extensions": {"subject": "x"}}, "not a CloudEvents attribute"),
        ({"extensions": {"n": 1}}, "must be a string"),
    ],
)
def test_invalid_envelopes_are_refused_with_the_reason(kw: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"id": "1", "source": "s", "type": "t"}
    with pytest.raises(EventError, match=message):
        Event(**{**base, **kw})


def test_from_dict_names_a_missing_attribute() -> None:
    with pytest.raises(EventError, match="'source'"):
        Event.from_dict({"id": "1", "type": "t"})


def test_frozen() -> None:
    e = _event()
    with pytest.raises(AttributeError):
        e.id = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        e.extensions["x"] = "y"  # type: ignore[index]


# -- the cloudevents SDK edge ------------------------------------------------------------------

edge = pytest.importorskip("bridge.bus.cloudevents_edge")
pytest.importorskip("cloudevents.core.v1.event")


@pytest.mark.parametrize("data", DATA)
def test_structured_json_round_trip(data: Any) -> None:
    e = _event(data)
    raw = edge.to_json(e)
    assert json.loads(raw)["type"] == "doc.uploaded"
    assert edge.from_json(raw) == e


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("data", DATA)
def test_http_round_trip(data: Any, binary: bool) -> None:
    e = _event(data)
    msg = edge.to_http(e, binary=binary)
    if binary:
        assert msg.headers["ce-id"] == "evt-1"
        assert msg.headers["ce-partitionkey"] == "debtor-9"
        assert msg.headers["content-type"] == "application/json"
        assert json.loads(msg.body) == data
    else:
        assert msg.headers["content-type"] == "application/cloudevents+json"
    assert edge.from_http(dict(msg.headers), msg.body) == e


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("data", DATA)
def test_kafka_round_trip(data: Any, binary: bool) -> None:
    e = _event(data)
    msg = edge.to_kafka(e, binary=binary)
    assert msg.key == "debtor-9"  # the partition key rides as the record key
    assert edge.from_kafka(dict(msg.headers), msg.value, msg.key) == e


def test_round_trip_without_optional_attributes_and_other_timezones() -> None:
    e = Event(
        id="x",
        source="s",
        type="t",
        data="hello",
        datacontenttype="text/plain",
        time=datetime(2025, 1, 1, 9, tzinfo=timezone(timedelta(hours=2))),
    )
    for back in (
        edge.from_json(edge.to_json(e)),
        edge.from_http(*_http(edge.to_http(e))),
        edge.from_kafka(*_kafka(edge.to_kafka(e))),
    ):
        assert back == e and back.subject is None and back.time.tzinfo is UTC


def _http(msg: Any) -> tuple[dict[str, str], bytes]:
    return dict(msg.headers), msg.body


def _kafka(msg: Any) -> tuple[dict[str, bytes], bytes, Any]:
    return dict(msg.headers), msg.value, msg.key


def test_sdk_events_convert_both_ways() -> None:
    from cloudevents.core.v1.event import CloudEvent

    ce = edge.to_cloudevent(_event({"a": 1}))
    assert isinstance(ce, CloudEvent)
    assert ce.get_extension("traceparent") == "00-ab-cd-01"
    foreign = CloudEvent({"type": "com.example.x", "source": "/ext"}, {"ok": True})
    e = edge.from_cloudevent(foreign)
    assert (e.type, e.source, e.data, e.id) == (
        "com.example.x",
        "/ext",
        {"ok": True},
        foreign.get_id(),
    )


def test_binary_data_is_refused_with_a_hint() -> None:
    from cloudevents.core.v1.event import CloudEvent

    ce = CloudEvent({"type": "t", "source": "s", "datacontenttype": "image/png"}, b"\x89PNG")
    with pytest.raises(EventError, match="binary data"):
        edge.from_cloudevent(ce)


def test_incoming_http_from_another_producer() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "call-77",
        "ce-source": "https://telephony.example/calls",
        "ce-type": "call.completed",
        "ce-time": "2025-05-17T12:00:00Z",
        "Content-Type": "application/json",
    }
    e = edge.from_http(headers, b'{"debtor": 9, "outcome": "promised"}')
    assert e.key == ("https://telephony.example/calls", "call-77")
    assert e.data == {"debtor": 9, "outcome": "promised"}
    assert e.time == datetime(2025, 5, 17, 12, tzinfo=UTC)
