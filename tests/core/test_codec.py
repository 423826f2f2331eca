"""bridge.codec: every supported type comes back as itself; anything else is refused by name."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

import bridge
from bridge import codec

# The conformance suite's codec types, so both check the same shapes.
from bridge.testing._workflows import Customer, Point, Priority, Shape, Size


class Invoice(BaseModel):
    customer: Customer
    total: Decimal
    issued_at: datetime
    lines: list[Point]
    note: str | None = None


class Address(TypedDict):
    street: str
    zip: str


class Person(TypedDict):
    name: str
    address: Address
    priority: Priority


INVOICE = Invoice(
    customer=Customer(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"), name="Ada", since=date(2020, 1, 2)
    ),
    total=Decimal("12.50"),
    issued_at=datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC),
    lines=[Point(1, 2), Point(3, 4)],
)

ROUND_TRIPS: list[tuple[str, Any, Any]] = [
    ("dataclass", Point(1, 2), Point),
    (
        "nested dataclass",
        Shape("tri", [Point(0, 0), Point(1, 0), Point(0, 1)], Size.LARGE, {"a": 1}),
        Shape,
    ),
    ("pydantic model", INVOICE, Invoice),
    (
        "TypedDict",
        Person(name="Bo", address=Address(street="Main 1", zip="12345"), priority=Priority.HIGH),
        Person,
    ),
    ("enum", Size.SMALL, Size),
    ("int enum", Priority.HIGH, Priority),
    ("datetime UTC", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime),
    (
        "datetime +05:30",
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime,
    ),
    ("date", date(1999, 12, 31), date),
    ("uuid", uuid.UUID("c0ffee00-0000-4000-8000-000000000001"), uuid.UUID),
    ("decimal", Decimal("3.14159265358979323846"), Decimal),
    ("timedelta", timedelta(days=1, seconds=2, microseconds=3), timedelta),
    ("list of models", [INVOICE, INVOICE], list[Invoice]),
    ("dict of dataclasses", {"a": Point(1, 2), "b": Point(3, 4)}, dict[str, Point]),
    ("nested list/dict", {"a": [1, 2, {"b": [None, True, 1.5, "x"]}]}, dict[str, Any]),
    ("int-keyed dict", {1: "one", 2: "two"}, dict[int, str]),
    ("tuple", (1, "a", 2.5), tuple[int, str, float]),
    ("Optional present", Point(5, 6), Optional[Point]),  # noqa: UP045 - the spelling under test
    ("Optional None", None, Optional[Point]),  # noqa: UP045
    ("union | None present", [Size.LARGE], list[Size] | None),
    ("union | None None", None, list[Size] | None),
    ("plain JSON, undeclared", {"k": [1, "two", 3.0, None, False]}, Any),
    ("unicode", "zürich ✓ 東京", str),
]


@pytest.mark.parametrize(
    ("value", "tp"), [(v, t) for _, v, t in ROUND_TRIPS], ids=[n for n, *_ in ROUND_TRIPS]
)
def test_round_trip(value: Any, tp: Any) -> None:
    data = codec.to_jsonable(value, tp, where="test value")
    # JSON-compatible: json.dumps accepts it as is, and a JSON round trip keeps it equal.
    assert json.loads(json.dumps(data)) == data
    back = codec.from_jsonable(data, tp, where="test value")
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(
    ("value", "tp"), [(v, t) for _, v, t in ROUND_TRIPS], ids=[n for n, *_ in ROUND_TRIPS]
)
def test_encode_decode_text(value: Any, tp: Any) -> None:
    text = codec.encode(value, tp)
    assert isinstance(text, str)
    json.loads(text)  # valid JSON text
    assert codec.decode(text, tp) == value


def test_nested_types_come_back_as_their_types() -> None:
    back = codec.decode(codec.encode(INVOICE, Invoice), Invoice)
    assert isinstance(back.customer, Customer)
    assert isinstance(back.customer.id, uuid.UUID)
    assert isinstance(back.total, Decimal) and back.total == Decimal("12.50")
    assert all(isinstance(p, Point) for p in back.lines)
    assert back.issued_at.tzinfo is not None
    assert back.issued_at.utcoffset() == timedelta(0)


def test_timezone_offset_is_kept() -> None:
    tz = timezone(timedelta(hours=-7))
    value = datetime(2026, 6, 1, 12, 0, tzinfo=tz)
    back = codec.from_jsonable(codec.to_jsonable(value, datetime), datetime)
    assert back == value
    assert back.utcoffset() == timedelta(hours=-7)


def test_enum_is_stored_by_value() -> None:
    assert codec.to_jsonable(Size.LARGE, Size) == "l"
    assert codec.to_jsonable(Priority.LOW, Priority) == 1


def test_undeclared_values_decode_to_plain_json() -> None:
    data = codec.to_jsonable(Point(1, 2))
    assert data == {"x": 1, "y": 2}
    assert codec.from_jsonable(data) == {"x": 1, "y": 2}


def test_none_text_decodes_to_none() -> None:
    assert codec.loads(None) is None
    assert codec.decode(None) is None


def test_encode_is_compact_and_keeps_unicode() -> None:
    assert codec.encode({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'


# -- refusals -------------------------------------------------------------------------------
class NotJson:
    pass


@pytest.mark.parametrize(
    ("value", "tp"),
    [
        (NotJson(), Any),
        (object(), object),
        ({"k": NotJson()}, dict[str, Any]),
        ([1, NotJson()], list[Any]),
        (lambda: None, Any),
    ],
    ids=["object, undeclared", "object, declared object", "in a dict", "in a list", "lambda"],
)
def test_unencodable_value_is_refused_naming_where(value: Any, tp: Any) -> None:
    with pytest.raises(bridge.SerializationError) as info:
        codec.to_jsonable(value, tp, where="parameter 'payload' of workflow 'w'")
    assert str(info.value).startswith("parameter 'payload' of workflow 'w':")
    with pytest.raises(bridge.SerializationError, match="argument 'x'"):
        codec.encode(value, tp, where="argument 'x'")


def test_undescribable_declared_type_is_refused_naming_where() -> None:
    with pytest.raises(bridge.SerializationError) as info:
        codec.to_jsonable(NotJson(), NotJson, where="result of activity 'a'")
    assert "result of activity 'a'" in str(info.value)
    assert "NotJson" in str(info.value)


@pytest.mark.parametrize(
    ("value", "tp"),
    [
        ("abc", int),
        (1, str),
        ([1, "a"], list[int]),
        ({"x": 1, "y": 2}, Point),
        ("s", Size),
    ],
    ids=["str as int", "int as str", "list item", "dict as dataclass", "str as enum"],
)
def test_value_not_matching_its_declared_type_is_refused(value: Any, tp: Any) -> None:
    with pytest.raises(bridge.SerializationError) as info:
        codec.to_jsonable(value, tp, where="result of workflow 'w'")
    assert "result of workflow 'w'" in str(info.value)
    assert type(value).__qualname__ in str(info.value)


@pytest.mark.parametrize(
    ("data", "tp"),
    [
        ("abc", int),
        ({"x": 1}, Point),
        ("purple", Size),
        ({"customer": "nobody"}, Invoice),
        ("not-a-uuid", uuid.UUID),
        ("2026-13-45", date),
    ],
    ids=["int", "dataclass", "enum", "model", "uuid", "date"],
)
def test_recorded_data_not_matching_the_type_is_refused(data: Any, tp: Any) -> None:
    with pytest.raises(bridge.SerializationError) as info:
        codec.from_jsonable(data, tp, where="step 3 output")
    assert str(info.value).startswith("step 3 output:")
    with pytest.raises(bridge.SerializationError, match="signal 'go'"):
        codec.decode(json.dumps(data), tp, where="signal 'go'")


def test_serialization_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        codec.to_jsonable(NotJson())


class Other(BaseModel):
    other: int = 1


@pytest.mark.parametrize(
    ("value", "tp"),
    [(Other(), Customer), (Point(1, 2), Customer), ([Other()], list[Customer])],
    ids=["other model", "dataclass", "inside a list"],
)
def test_wrong_object_for_a_declared_model_is_refused(value: Any, tp: Any) -> None:
    with pytest.raises(bridge.SerializationError, match="result of activity 'a'"):
        codec.to_jsonable(value, tp, where="result of activity 'a'")


def _refused_or_kept(value: float, tp: Any) -> None:
    """A non-finite float is either refused up front or comes back as itself."""
    try:
        text = codec.encode(value, tp, where="result")
    except bridge.SerializationError:
        return  # refused before anything is written: fine
    back = codec.decode(text, tp)
    assert isinstance(back, float), f"{value!r} came back as {back!r}"
    assert back == value or (math.isnan(back) and math.isnan(value))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_float_declared_float(value: float) -> None:
    _refused_or_kept(value, float)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "in a dict"])
def test_non_finite_float_undeclared(value: float, wrap: bool) -> None:
    if not wrap:
        _refused_or_kept(value, Any)
        return
    try:
        text = codec.encode({"v": value}, dict[str, Any], where="result")
    except bridge.SerializationError:
        return
    back = codec.decode(text)["v"]
    assert isinstance(back, float), f"{value!r} came back as {back!r}"
    assert back == value or (math.isnan(back) and math.isnan(value))


# -- digest ---------------------------------------------------------------------------------
def test_digest_is_stable_under_key_order() -> None:
    a = {"b": 1, "a": [1, 2, {"y": None, "x": "é"}], "c": {"k2": 2, "k1": 1}}
    b = {"c": {"k1": 1, "k2": 2}, "a": [1, 2, {"x": "é", "y": None}], "b": 1}
    assert codec.digest(a) == codec.digest(b)
    assert codec.digest(a) == codec.digest(json.loads(json.dumps(a)))


def test_digest_is_short_hex_and_depends_on_the_data() -> None:
    d = codec.digest({"a": 1})
    assert len(d) == 16 and int(d, 16) >= 0
    assert codec.digest({"a": 1}) == d  # deterministic
    assert codec.digest({"a": 2}) != d
    assert codec.digest([1, 2]) != codec.digest([2, 1])  # list order matters
    assert codec.digest(None) != codec.digest("null")
