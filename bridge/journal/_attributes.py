"""Search attributes on the journal engines: their rows, and queries as SQL conditions.

A run's attributes live in the feature table `{prefix}attributes` (`bridge.journal.schema`),
one row per key (a keyword list one per item), written in the transaction that creates the
run and in the one that journals a `ctx.upsert_search_attributes` row, so the table never
disagrees with the journal. A query (`bridge.search.parse`) becomes one SQL condition on
the runs table: built-ins compare the run's own columns, each attribute comparison is an
EXISTS over the attributes table, which its (key, text) and (key, number) indexes answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    delete,
    exists,
    false,
    not_,
    or_,
    select,
)

from bridge import codec
from bridge.search import (
    And,
    Comparison,
    Membership,
    Node,
    Or,
    SearchAttributeKind,
    parse_datetime,
    status_values,
)

__all__ = ["read_attributes", "search_condition", "write_attributes"]

_K = SearchAttributeKind


def _rows(workflow_id: str, key: str, kind: str, value: Any) -> list[dict[str, Any]]:
    """The table rows of one attribute (none when it is unset)."""
    if value is None:
        return []
    base = {"workflow_id": workflow_id, "key": key, "kind": kind}
    if kind == _K.KEYWORD_LIST:
        items = list(value)
        first = {**base, "position": 0, "value": codec.dumps(items)}
        first["text"], first["number"] = (items[0], None) if items else (None, None)
        rest = [
            {**base, "position": i, "value": codec.dumps(v), "text": v, "number": None}
            for i, v in enumerate(items[1:], start=1)
        ]
        return [first, *rest]
    text: str | None = None
    number: float | None = None
    if kind in (_K.KEYWORD, _K.TEXT):
        text = str(value)
    elif kind == _K.DATETIME:
        when = parse_datetime(value)
        number = when.timestamp() if when is not None else None
    else:  # int, float, bool
        number = float(value)
    return [{**base, "position": 0, "value": codec.dumps(value), "text": text, "number": number}]


def write_attributes(
    conn: Connection, table: Table, workflow_id: str, encoded: Mapping[str, Mapping[str, Any]]
) -> None:
    """Set (or unset, for a None value) run `workflow_id`'s attributes in `conn`'s
    transaction; `encoded` is `bridge.search.encode_attributes` JSON. Each key's rows are
    replaced whole, so a shorter list leaves no item behind."""
    if not encoded:
        return
    conn.execute(
        delete(table).where(table.c.workflow_id == workflow_id, table.c.key.in_(list(encoded)))
    )
    rows = [
        row
        for key, item in encoded.items()
        for row in _rows(workflow_id, key, str(item.get("kind")), item.get("value"))
    ]
    if rows:
        conn.execute(table.insert(), rows)


def read_attributes(
    conn: Connection, table: Table, ids: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """The attributes of runs `ids` as `{id: encoded}` (`encode_attributes` JSON)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    wanted = list(dict.fromkeys(ids))
    # Bound-parameter lists stay well under SQLite's limit.
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            select(table.c.workflow_id, table.c.key, table.c.kind, table.c.value).where(
                table.c.workflow_id.in_(chunk), table.c.position == 0
            )
        ).all()
        for r in rows:
            out.setdefault(r.workflow_id, {})[r.key] = {
                "kind": r.kind,
                "value": codec.loads(r.value),
            }
    return out


def search_condition(node: Node, runs: Table, attributes: Table | None) -> ColumnElement[bool]:
    """Query tree `node` as a condition on the `runs` table; with no `attributes` table (a
    read-only journal an older release wrote) no run has attributes, so every attribute
    comparison is false."""
    if isinstance(node, And):
        return and_(*(search_condition(p, runs, attributes) for p in node.parts))
    if isinstance(node, Or):
        return or_(*(search_condition(p, runs, attributes) for p in node.parts))
    if node.field in ("WorkflowId", "WorkflowType", "ExecutionStatus"):
        return _builtin(node, runs)
    if attributes is None:
        return false()
    return _attribute(node, runs, attributes)


def _builtin(node: Comparison | Membership, runs: Table) -> ColumnElement[bool]:
    if node.field == "ExecutionStatus":
        values = (node.value,) if isinstance(node, Comparison) else node.values
        statuses = [s for v in values for s in status_values(str(v))]
        found = runs.c.status.in_(statuses)
    else:
        column = runs.c.id if node.field == "WorkflowId" else runs.c.name
        values = (node.value,) if isinstance(node, Comparison) else node.values
        found = column.in_([str(v) for v in values])
    negated = node.op == "!=" if isinstance(node, Comparison) else node.negated
    return not_(found) if negated else found


def _match(attributes: Table, op: str, value: Any) -> ColumnElement[bool]:
    """An attribute row whose value stands in relation `op` to literal `value`: a number
    or bool compares the `number` column; a string the `text` column, and a datetime's
    `number` when the string reads as an ISO datetime."""
    t = attributes

    def compare(column: Any, literal: Any) -> ColumnElement[bool]:
        return {
            "=": column == literal,
            "!=": column != literal,
            "<": column < literal,
            "<=": column <= literal,
            ">": column > literal,
            ">=": column >= literal,
        }[op]

    if isinstance(value, bool | int | float):
        return compare(t.c.number, float(value))
    when = parse_datetime(value)
    on_text = and_(t.c.kind != _K.DATETIME.value, compare(t.c.text, value))
    if when is None:
        return on_text
    return or_(on_text, and_(t.c.kind == _K.DATETIME.value, compare(t.c.number, when.timestamp())))


def _attribute(
    node: Comparison | Membership, runs: Table, attributes: Table
) -> ColumnElement[bool]:
    t = attributes

    def has(*condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return exists(
            select(t.c.workflow_id).where(
                t.c.workflow_id == runs.c.id, t.c.key == node.field, *condition
            )
        )

    if isinstance(node, Membership):
        any_of = _any(_match(t, "=", v) for v in node.values)
        if node.negated:
            return and_(has(), not_(has(any_of)))
        return has(any_of)
    if node.op == "!=":
        # Not equal means: the run has the attribute and no value (no list item) equal to it.
        return and_(has(), not_(has(_match(t, "=", node.value))))
    return has(_match(t, node.op, node.value))


def _any(conditions: Iterable[ColumnElement[bool]]) -> ColumnElement[bool]:
    found = list(conditions)
    if not found:
        return false()
    return or_(*found) if len(found) > 1 else found[0]
