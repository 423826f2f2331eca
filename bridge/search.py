"""Search attributes and the query language that finds runs by them, on every engine.

A search attribute is a typed value kept with a run, set when it starts
(`client.start(..., search_attributes={"customer": "c-42"})`) and changed by the workflow
(`ctx.upsert_search_attributes({...})`), so runs can be found by what they are about:
`client.list(query='customer = "c-42" AND amount > 10')` or
`bridge list --where 'customer = "c-42"'`. The kinds mirror Temporal's search-attribute types
(Keyword, Text, Int, Double, Bool, Datetime, KeywordList), because Temporal needs the type
of every key and is the strictest engine: a key typed here means the same on each of them.

The query language is the part of Temporal's visibility query that every engine can run:
`key = value`, `!=`, `<`, `<=`, `>`, `>=`, `IN (...)`, `NOT IN (...)`, `AND`, `OR`,
parentheses; strings in single or double quotes, numbers, `true`/`false`, datetimes as ISO
strings; and the built-ins `WorkflowId`, `WorkflowType` and `ExecutionStatus`. `parse`
turns a query into a small tree: the journal engines translate it to SQL
(`bridge.journal._attributes`), Temporal gets it back as text (`render`) after the same
validation, so a query that is refused is refused alike everywhere, with its position.

Comparisons follow SQL: a run without the attribute matches no comparison on it, `!=` and
`NOT IN` included; on a keyword list, `=` and `IN` match when any item does, `!=` and
`NOT IN` when none does.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from bridge.errors import InvalidSearchAttributeError, InvalidSearchQueryError

__all__ = [
    "BUILTINS",
    "And",
    "Comparison",
    "Membership",
    "Node",
    "Or",
    "SearchAttribute",
    "SearchAttributeKind",
    "decode_attributes",
    "encode_attributes",
    "parse",
    "parse_datetime",
    "render",
    "status_values",
]


class SearchAttributeKind(enum.StrEnum):
    """The type of a search attribute (Temporal's indexed value types)."""

    KEYWORD = "keyword"
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"
    KEYWORD_LIST = "keyword_list"


#: The longest keyword or text a search attribute holds: the journal engines index the
#: whole string, and 255 characters fit every engine's index.
MAX_TEXT = 255
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class SearchAttribute:
    """A typed search-attribute key, e.g. `SearchAttribute.keyword("customer")`.

    A plain string key takes its type from the value (str: keyword, int, float, bool,
    datetime, list of str: keyword list); a `SearchAttribute` key says it when the value
    cannot (text rather than keyword, a float that happens to be whole, an unset value)."""

    name: str
    kind: SearchAttributeKind

    def __post_init__(self) -> None:
        check_name(self.name)

    @classmethod
    def keyword(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.KEYWORD)

    @classmethod
    def text(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.TEXT)

    @classmethod
    def int(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.INT)

    @classmethod
    def float(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.FLOAT)

    @classmethod
    def bool(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.BOOL)

    @classmethod
    def datetime(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.DATETIME)

    @classmethod
    def keyword_list(cls, name: str) -> SearchAttribute:
        return cls(name, SearchAttributeKind.KEYWORD_LIST)


#: The built-in names a query may use besides search attributes.
BUILTINS = ("WorkflowId", "WorkflowType", "ExecutionStatus")
#: ExecutionStatus values (Temporal's spelling, which the query keeps) and the bridge
#: statuses each stands for on the journal engines.
_STATUSES: dict[str, tuple[str, ...]] = {
    "Running": ("PENDING", "RUNNING", "WAITING"),
    "Completed": ("COMPLETED",),
    "Failed": ("FAILED",),
    "Canceled": ("CANCELLED",),
    "Terminated": ("FAILED",),
    "TimedOut": ("FAILED",),
}
_STATUS_ALIASES = {k.lower(): k for k in _STATUSES} | {"cancelled": "Canceled"}


def check_name(name: str) -> None:
    """Refuse a key no engine can hold (Temporal's rule: an identifier; no built-in)."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 64:
        raise InvalidSearchAttributeError(
            f"search attribute name {name!r} is not valid; use a letter or _ followed by "
            f"letters, digits or _ (at most 64 characters)"
        )
    if name in BUILTINS or name.startswith("Temporal"):
        raise InvalidSearchAttributeError(
            f"search attribute name {name!r} is reserved (a built-in of the query language "
            f"or Temporal's own); choose another name"
        )


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 datetime (a trailing Z allowed; no zone means UTC), or None."""
    from datetime import UTC

    if not isinstance(text, str) or not re.match(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _infer(name: str, value: Any) -> SearchAttributeKind:
    if isinstance(value, bool):
        return SearchAttributeKind.BOOL
    if isinstance(value, int):
        return SearchAttributeKind.INT
    if isinstance(value, float):
        return SearchAttributeKind.FLOAT
    if isinstance(value, datetime):
        return SearchAttributeKind.DATETIME
    if isinstance(value, str):
        return SearchAttributeKind.KEYWORD
    if isinstance(value, list | tuple):
        return SearchAttributeKind.KEYWORD_LIST
    raise InvalidSearchAttributeError(
        f"search attribute {name!r}: cannot tell the type of {value!r} "
        f"({type(value).__name__}); use str, int, float, bool, datetime or a list of str, "
        f"or a typed key such as bridge.SearchAttribute.keyword({name!r})"
    )


def _encode_value(name: str, kind: SearchAttributeKind, value: Any) -> Any:
    """`value` as the JSON the engines store, checked against `kind`."""
    K = SearchAttributeKind

    def bad(expected: str) -> InvalidSearchAttributeError:
        return InvalidSearchAttributeError(
            f"search attribute {name!r} holds {kind.value} values and needs {expected}, "
            f"not {value!r} ({type(value).__name__})"
        )

    if kind in (K.KEYWORD, K.TEXT):
        if not isinstance(value, str):
            raise bad("a str")
        if len(value) > MAX_TEXT:
            raise InvalidSearchAttributeError(
                f"search attribute {name!r} holds {len(value)} characters; at most "
                f"{MAX_TEXT} fit every engine's index"
            )
        return value
    if kind is K.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an int")
        if not -(2**63) <= value < 2**63:
            raise bad("an int that fits 64 bits")
        return value
    if kind is K.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a float")
        if not math.isfinite(value):
            raise bad("a finite float")
        return float(value)
    if kind is K.BOOL:
        if not isinstance(value, bool):
            raise bad("a bool")
        return value
    if kind is K.DATETIME:
        when = parse_datetime(value) if isinstance(value, str) else value
        if not isinstance(when, datetime):
            raise bad("a datetime (or an ISO 8601 string)")
        if when.tzinfo is None:
            raise bad("a timezone-aware datetime")
        return when.isoformat()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise bad("a list of str")
    for item in value:
        _encode_value(name, K.KEYWORD, item)
    return list(value)


def encode_attributes(
    values: Mapping[str | SearchAttribute, Any], *, where: str
) -> dict[str, dict[str, Any]]:
    """Search attributes as the JSON every backend receives: `{name: {"kind", "value"}}`.

    A None value unsets the key (a plain string key then reads as a keyword, which only
    matters to Temporal). Checked here, on the caller's side, so a bad value fails where it
    was given, naming the key; `where` says what was being set, for the error."""
    if not isinstance(values, Mapping):
        raise InvalidSearchAttributeError(
            f"search attributes of {where} must be a mapping of name to value, not "
            f"{type(values).__name__}"
        )
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if isinstance(key, SearchAttribute):
            name, kind = key.name, key.kind
        else:
            check_name(key)
            name = key
            kind = SearchAttributeKind.KEYWORD if value is None else _infer(key, value)
        if name in out:
            raise InvalidSearchAttributeError(
                f"search attribute {name!r} is given twice for {where}"
            )
        encoded = None if value is None else _encode_value(name, kind, value)
        out[name] = {"kind": kind.value, "value": encoded}
    return out


def decode_attributes(encoded: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The `encode_attributes` JSON back to Python values (datetimes as datetime), by name;
    unset keys are left out."""
    out: dict[str, Any] = {}
    for name, item in sorted(encoded.items()):
        value = item.get("value")
        if value is None:
            continue
        if item.get("kind") == SearchAttributeKind.DATETIME.value:
            value = parse_datetime(value)
        out[name] = value
    return out


# -- the query language -----------------------------------------------------------------
Value = str | int | float | bool


@dataclass(frozen=True)
class Comparison:
    """`field op value`; `op` one of = != < <= > >=."""

    field: str
    op: str
    value: Value
    position: int


@dataclass(frozen=True)
class Membership:
    """`field IN (values)`, or `NOT IN` when `negated`."""

    field: str
    values: tuple[Value, ...]
    negated: bool
    position: int


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


Node = Comparison | Membership | And | Or

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, op, punct, word, end
    text: str
    position: int
    value: Any = None


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while True:
        while pos < len(query) and query[pos].isspace():
            pos += 1
        if pos >= len(query):
            out.append(_Token("end", "", pos))
            return out
        m = _TOKEN.match(query, pos)
        if m is None or m.lastgroup is None:
            if query[pos] in "'\"":
                raise _error(query, pos, "this string has no closing quote")
            raise _error(query, pos, f"unexpected character {query[pos]!r}")
        start = m.start(m.lastgroup)
        text = m.group(m.lastgroup)
        value: Any = None
        if m.lastgroup == "string":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif m.lastgroup == "number":
            value = float(text) if any(c in text for c in ".eE") else int(text)
        out.append(_Token(m.lastgroup, text, start, value))
        pos = m.end()


def _error(query: str, position: int, what: str) -> InvalidSearchQueryError:
    return InvalidSearchQueryError(query, position, what)


class _Parser:
    """Recursive descent: or := and (OR and)*; and := term (AND term)*;
    term := '(' or ')' | NAME op value | NAME [NOT] IN '(' value (',' value)* ')'."""

    _OPS: ClassVar[frozenset[str]] = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})

    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokens(query)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _word(self, word: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.upper() == word

    def fail(self, what: str, token: _Token | None = None) -> InvalidSearchQueryError:
        return _error(self.query, (token or self.tok).position, what)

    def _found(self) -> str:
        return "the end of the query" if self.tok.kind == "end" else repr(self.tok.text)

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.fail("the query is empty; write a condition such as customer = 'c-42'")
        node = self.parse_or()
        if self.tok.kind != "end":
            raise self.fail(f"expected AND, OR or the end of the query, found {self._found()}")
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self._word("OR"):
            self.i += 1
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self) -> Node:
        parts = [self.parse_term()]
        while self._word("AND"):
            self.i += 1
            parts.append(self.parse_term())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_term(self) -> Node:
        tok = self.tok
        if tok.kind == "punct" and tok.text == "(":
            self.i += 1
            node = self.parse_or()
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.fail(f"expected ')' to close the '(' at {tok.position}")
            self.i += 1
            return node
        if tok.kind != "word" or tok.text.upper() in ("AND", "OR", "IN", "NOT", "TRUE", "FALSE"):
            raise self.fail(f"expected a search attribute name or '(', found {self._found()}")
        field = tok.text
        self.i += 1
        op = self.tok
        if op.kind == "op":
            self.i += 1
            value = self.parse_value()
            return self._check(
                Comparison(field, "!=" if op.text == "<>" else op.text, value, tok.position)
            )
        negated = self._word("NOT")
        if negated:
            self.i += 1
            if not self._word("IN"):
                raise self.fail(f"expected IN after NOT, found {self._found()}")
        if self._word("IN"):
            self.i += 1
            if not (self.tok.kind == "punct" and self.tok.text == "("):
                raise self.fail(f"expected '(' after IN, found {self._found()}")
            self.i += 1
            values = [self.parse_value()]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.i += 1
                values.append(self.parse_value())
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.fail(f"expected ',' or ')' in the IN list, found {self._found()}")
            self.i += 1
            return self._check(Membership(field, tuple(values), negated, tok.position))
        raise self.fail(
            f"expected an operator (=, !=, <, <=, >, >=, IN, NOT IN) after {field!r}, "
            f"found {self._found()}"
        )

    def parse_value(self) -> Value:
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.i += 1
            return tok.value  # type: ignore[no-any-return]
        if tok.kind == "word" and tok.text.upper() in ("TRUE", "FALSE"):
            self.i += 1
            return tok.text.upper() == "TRUE"
        hint = " (quote strings: 'c-42')" if tok.kind == "word" else ""
        raise self.fail(
            f"expected a value (a quoted string, a number, true or false), "
            f"found {self._found()}{hint}"
        )

    def _check(self, node: Comparison | Membership) -> Comparison | Membership:
        """The rules of the built-ins: equality only, and ExecutionStatus a known status
        (kept in Temporal's spelling)."""
        values = (node.value,) if isinstance(node, Comparison) else node.values
        if node.field in BUILTINS:
            if isinstance(node, Comparison) and node.op not in ("=", "!="):
                raise _error(
                    self.query, node.position, f"{node.field} takes =, !=, IN or NOT IN only"
                )
            if not all(isinstance(v, str) for v in values):
                raise _error(self.query, node.position, f"{node.field} compares with strings")
        if node.field == "ExecutionStatus":
            fixed = tuple(_STATUS_ALIASES.get(str(v).lower()) for v in values)
            if None in fixed:
                bad = next(v for v, f in zip(values, fixed, strict=True) if f is None)
                raise _error(
                    self.query,
                    node.position,
                    f"unknown ExecutionStatus {bad!r}; use one of {', '.join(_STATUSES)}",
                )
            if isinstance(node, Comparison):
                return Comparison(node.field, node.op, fixed[0], node.position)  # type: ignore[arg-type]
            return Membership(node.field, fixed, node.negated, node.position)  # type: ignore[arg-type]
        return node


def parse(query: str) -> Node:
    """The query as a tree; InvalidSearchQueryError naming the position and what is wrong."""
    if not isinstance(query, str):
        raise InvalidSearchQueryError(
            str(query), 0, f"a query is a string, not {type(query).__name__}"
        )
    return _Parser(query).parse()


def status_values(status: str) -> tuple[str, ...]:
    """The bridge statuses an ExecutionStatus value (as `parse` keeps it) stands for."""
    return _STATUSES[status]


def _literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(node: Node) -> str:
    """The tree as visibility-query text (what Temporal's `list_workflows` takes)."""
    if isinstance(node, Comparison):
        return f"{node.field} {node.op} {_literal(node.value)}"
    if isinstance(node, Membership):
        values = ", ".join(_literal(v) for v in node.values)
        return f"{node.field} {'NOT IN' if node.negated else 'IN'} ({values})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(render(p) for p in node.parts) + ")"
