"""A graph's values (state, node input and output, commands, messages) as exact JSON.

LangGraph state holds LangChain messages, `Command`s, `Send`s, pydantic models and
dataclasses, often in keys typed `list` or `Any`; a type-directed codec alone would bring
a message back as a dict. So each value is walked and every object that is not plain JSON
is written with a tag naming how to revive it:

- LangChain objects (messages, documents, ...) with LangChain's own `dumpd`, revived by
  `load` restricted to LangChain's core allow-list (`allowed_objects="core"`);
- `Command` and `Send` field by field;
- any other object only when its type is on the graph's allow-list (the classes named in
  its state, input, output, node and context schemas, and standard scalars such as
  datetime), through `bridge.codec` with that exact type.

Nothing is pickled, and nothing outside the allow-lists is ever imported or built from
journaled data. `GraphCodec.annotation()` plugs the codec into `bridge.codec` (a pydantic
`Annotated` type), so the client, every backend and the journal all use it for the
workflow's input and result.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import typing
import uuid
import warnings
from collections.abc import Iterable
from typing import Annotated, Any

import typing_extensions
from langchain_core.load import dumpd, load
from langchain_core.load.serializable import Serializable
from langgraph.types import Command, Send
from pydantic import BaseModel, PlainSerializer, PlainValidator

from bridge import codec
from bridge.errors import SerializationError

__all__ = ["GraphCodec", "schema_types"]

#: The key marking an encoded object; a user dict that has it is itself wrapped.
TAG = "__lg__"

_STDLIB_TYPES: tuple[type, ...] = (
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    bytes,
    set,
    frozenset,
)


def _type_key(tp: type) -> str:
    return f"{tp.__module__}:{tp.__qualname__}"


def _is_objectlike(tp: Any) -> bool:
    return isinstance(tp, type) and (
        issubclass(tp, BaseModel | enum.Enum) or dataclasses.is_dataclass(tp)
    )


def schema_types(schemas: Iterable[Any]) -> dict[str, type]:
    """The classes a graph's schemas name (themselves and every type in their fields),
    by `module:qualname`: the allow-list of types a journaled value may be revived as."""
    found: dict[str, type] = {_type_key(t): t for t in _STDLIB_TYPES}
    seen: set[int] = set()

    def walk(tp: Any) -> None:
        if id(tp) in seen or tp is None:
            return
        seen.add(id(tp))
        for arg in typing.get_args(tp):
            walk(arg)
        if not isinstance(tp, type):
            return
        if _is_objectlike(tp):
            found[_type_key(tp)] = tp
        if issubclass(tp, Serializable):
            return  # LangChain's own objects go through dumpd/load
        # typing_extensions' check: typing.is_typeddict is False on 3.11 for a
        # typing_extensions.TypedDict, which is what LangGraph's docs import.
        if _is_objectlike(tp) or typing_extensions.is_typeddict(tp):
            try:
                hints = typing.get_type_hints(tp, include_extras=True)
            except Exception:  # an unresolved forward reference: nothing more to learn
                return
            for hint in hints.values():
                walk(hint)

    for schema in schemas:
        walk(schema)
    return found


class GraphCodec:
    """Encode and decode the values of one graph; `where` names the graph in errors."""

    def __init__(self, types: dict[str, type], *, where: str) -> None:
        self.types = types
        self.where = where

    def encode(self, value: Any, *, where: str = "") -> Any:
        """`value` as JSON-compatible data, or SerializationError naming the type and place."""
        return self._enc(value, where or self.where)

    def decode(self, data: Any, *, where: str = "") -> Any:
        """Journaled data back into the objects it was made from. Already-decoded values
        pass unchanged (pydantic also runs the validator on live values, to check them)."""
        return self._dec(data, where or self.where)

    def annotation(self) -> Any:
        """A type for workflow signatures: `bridge.codec` encodes and decodes through us."""
        return Annotated[
            Any,
            PlainValidator(lambda v: self.decode(v)),
            PlainSerializer(lambda v: self.encode(v), return_type=Any),
        ]

    def _enc(self, v: Any, where: str) -> Any:
        kind = type(v)
        if v is None or kind in (bool, int, float, str):
            return v
        if kind is dict or (isinstance(v, dict) and not isinstance(v, Serializable)):
            if TAG not in v and all(type(k) is str for k in v):
                return {k: self._enc(x, f"{where}[{k!r}]") for k, x in v.items()}
            return {
                TAG: "dict",
                "items": [[self._enc(k, where), self._enc(x, where)] for k, x in v.items()],
            }
        if kind is list:
            return [self._enc(x, where) for x in v]
        if kind is tuple:
            return {TAG: "tuple", "items": [self._enc(x, where) for x in v]}
        if isinstance(v, Send):
            return {TAG: "send", "node": v.node, "arg": self._enc(v.arg, where)}
        if isinstance(v, Command):
            return {
                TAG: "command",
                "graph": v.graph,
                "update": self._enc(v.update, where),
                "resume": self._enc(v.resume, where),
                "goto": self._enc(v.goto, where),
            }
        if isinstance(v, Serializable) and v.is_lc_serializable():
            return {TAG: "lc", "v": dumpd(v)}
        key = _type_key(kind)
        if self.types.get(key) is kind:
            return {TAG: "typed", "type": key, "v": codec.to_jsonable(v, kind, where=where)}
        raise SerializationError(
            f"{where}: a value of type {key} cannot be journaled: it is not JSON, not a "
            f"LangChain object, and its type is not named in the graph's state, input, "
            f"output or context schemas. Declare it in a schema (a pydantic model, "
            f"dataclass or enum), or keep it out of the graph's values"
        )

    def _dec(self, d: Any, where: str) -> Any:
        kind = type(d)
        if kind is list:
            return [self._dec(x, where) for x in d]
        if kind is not dict:
            return d
        tag = d.get(TAG)
        if tag is None:
            return {k: self._dec(x, where) for k, x in d.items()}
        if tag == "dict":
            return {self._dec(k, where): self._dec(x, where) for k, x in d["items"]}
        if tag == "tuple":
            return tuple(self._dec(x, where) for x in d["items"])
        if tag == "send":
            return Send(d["node"], self._dec(d["arg"], where))
        if tag == "command":
            goto = self._dec(d["goto"], where)
            return Command(
                graph=d["graph"],
                update=self._dec(d["update"], where),
                resume=self._dec(d["resume"], where),
                goto=goto if goto is not None else (),
            )
        if tag == "lc":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # `load` is marked beta by LangChain
                return load(d["v"], allowed_objects="core")
        if tag == "typed":
            tp = self.types.get(d["type"])
            if tp is None:
                raise SerializationError(
                    f"{where}: journaled data names type {d['type']}, which this graph's "
                    f"schemas no longer name; restore the type or finish old runs first"
                )
            return codec.from_jsonable(d["v"], tp, where=where)
        raise SerializationError(f"{where}: unknown journaled value tag {tag!r}")
