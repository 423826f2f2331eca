"""The query language (`bridge.search.parse`/`render`) and attribute encoding, engine-free."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import bridge
from bridge.search import (
    And,
    Comparison,
    Membership,
    Or,
    SearchAttribute,
    decode_attributes,
    encode_attributes,
    parse,
    render,
)


def test_comparisons_and_values() -> None:
    assert parse("customer = 'c-42'") == Comparison("customer", "=", "c-42", 0)
    assert parse('customer = "c-42"') == Comparison("customer", "=", "c-42", 0)
    assert parse("amount >= 10") == Comparison("amount", ">=", 10, 0)
    assert parse("amount < -2.5") == Comparison("amount", "<", -2.5, 0)
    assert parse("vip = TRUE") == Comparison("vip", "=", True, 0)
    assert parse("vip != false") == Comparison("vip", "!=", False, 0)
    assert parse("a <> 'x'") == Comparison("a", "!=", "x", 0)
    assert parse(r"note = 'it\'s'") == Comparison("note", "=", "it's", 0)
    assert parse("a IN ('x', 2, true)") == Membership("a", ("x", 2, True), False, 0)
    assert parse("a not in ('x')") == Membership("a", ("x",), True, 0)


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    a, b, c = (Comparison(n, "=", 1, p) for n, p in (("a", 0), ("b", 10), ("c", 19)))
    assert parse("a = 1 AND b = 1 OR c = 1") == Or((And((a, b)), c))
    grouped = parse("a = 1 AND (b = 1 OR c = 1)")
    assert grouped == And((a, Or((Comparison("b", "=", 1, 11), Comparison("c", "=", 1, 20)))))


def test_builtins() -> None:
    assert parse("ExecutionStatus = 'running'") == Comparison("ExecutionStatus", "=", "Running", 0)
    assert parse("ExecutionStatus IN ('cancelled', 'Completed')") == Membership(
        "ExecutionStatus", ("Canceled", "Completed"), False, 0
    )
    assert parse("WorkflowType = 'order' AND WorkflowId != 'x'") == And(
        (
            Comparison("WorkflowType", "=", "order", 0),
            Comparison("WorkflowId", "!=", "x", 27),
        )
    )


def test_render_round_trips() -> None:
    query = "(customer = 'c-42' OR vip = true) AND amount > 1.5 AND t NOT IN ('a', 'b')"
    node = parse(query)
    assert parse(render(node)) == parse(render(parse(render(node))))
    assert render(parse("a = 'it\\'s'")) == "a = 'it\\'s'"
    assert render(parse("ExecutionStatus = 'canceled'")) == "ExecutionStatus = 'Canceled'"


@pytest.mark.parametrize(
    ("query", "position", "what"),
    [
        ("", 0, "the query is empty"),
        ("customer = ", 11, "expected a value"),
        ("customer = c42", 11, "quote strings"),
        ("customer 'x'", 9, "expected an operator"),
        ("a = 1 b = 2", 6, "expected AND, OR"),
        ("(a = 1", 6, "expected ')'"),
        ("a = 'x", 4, "no closing quote"),
        ("a = 1 AND", 9, "expected a search attribute name"),
        ("a IN 'x'", 5, "expected '(' after IN"),
        ("a IN ('x' 'y')", 10, "expected ',' or ')'"),
        ("a NOT = 1", 6, "expected IN after NOT"),
        ("a = 1 ; drop", 6, "unexpected character ';'"),
        ("ExecutionStatus = 'Sleeping'", 0, "unknown ExecutionStatus 'Sleeping'"),
        ("ExecutionStatus > 'Running'", 0, "takes =, !=, IN or NOT IN only"),
        ("WorkflowId = 3", 0, "compares with strings"),
    ],
)
def test_bad_queries_name_the_position(query: str, position: int, what: str) -> None:
    with pytest.raises(bridge.InvalidSearchQueryError) as info:
        parse(query)
    assert info.value.position == position
    assert what in str(info.value)
    assert f"position {position}" in str(info.value)


def test_encoding_infers_or_takes_the_type() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    encoded = encode_attributes(
        {
            "customer": "c-42",
            "amount": 12,
            "ratio": 0.5,
            "vip": True,
            "due": when,
            "tags": ["a", "b"],
            SearchAttribute.float("price"): 3,
            SearchAttribute.text("note"): "hello there",
            SearchAttribute.datetime("at"): "2030-01-01T00:00:00Z",
            "gone": None,
        },
        where="a test",
    )
    assert encoded == {
        "customer": {"kind": "keyword", "value": "c-42"},
        "amount": {"kind": "int", "value": 12},
        "ratio": {"kind": "float", "value": 0.5},
        "vip": {"kind": "bool", "value": True},
        "due": {"kind": "datetime", "value": when.isoformat()},
        "tags": {"kind": "keyword_list", "value": ["a", "b"]},
        "price": {"kind": "float", "value": 3.0},
        "note": {"kind": "text", "value": "hello there"},
        "at": {"kind": "datetime", "value": "2030-01-01T00:00:00+00:00"},
        "gone": {"kind": "keyword", "value": None},
    }
    decoded = decode_attributes(encoded)
    assert decoded["due"] == when
    assert decoded["at"] == datetime(2030, 1, 1, tzinfo=UTC)
    assert "gone" not in decoded


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ({"a": object()}, "cannot tell the type"),
        ({SearchAttribute.int("a"): 1.5}, "needs an int"),
        ({SearchAttribute.int("a"): True}, "needs an int"),
        ({SearchAttribute.bool("a"): 1}, "needs a bool"),
        ({"a": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"a": ["x", 1]}, "list of str"),
        ({"a": "x" * 256}, "at most 255"),
        ({"a": float("nan")}, "finite"),
        ({"1a": "x"}, "not valid"),
        ({"ExecutionStatus": "x"}, "reserved"),
        ({"TemporalChangeVersion": "x"}, "reserved"),
        ({"a": 1, SearchAttribute.int("a"): 2}, "given twice"),
    ],
)
def test_bad_values_are_refused(values: dict[object, object], what: str) -> None:
    with pytest.raises(bridge.InvalidSearchAttributeError, match=what):
        encode_attributes(values, where="a test")  # type: ignore[arg-type]
