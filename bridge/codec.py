"""The one JSON codec every backend uses for arguments, results and signal payloads.

Values are turned into JSON-compatible data with pydantic's TypeAdapter for the declared type
(a parameter or return annotation), and back again with the same adapter, so a dataclass,
pydantic model, TypedDict, enum or datetime comes back as the same type on every backend.
Nothing is pickled: an object pydantic cannot describe is refused with `SerializationError`
before anything is written.

TypedDicts on Python < 3.12 must come from `typing_extensions` (a pydantic rule).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from bridge.errors import SerializationError

__all__ = [
    "adapter",
    "decode",
    "digest",
    "dumps",
    "encode",
    "from_jsonable",
    "loads",
    "to_jsonable",
]

# NaN and infinities are kept (as JSON's NaN/Infinity tokens, which Python's json reads
# back) instead of pydantic's default of silently writing null.
_CONFIG = ConfigDict(ser_json_inf_nan="constants")
_ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any, config=_CONFIG)
# Bounded: Temporal's sandbox re-imports workflow modules for every run, so the same model
# arrives as a new class each time, and an unbounded cache would keep every copy alive.
_ADAPTER_CACHE_SIZE = 4096


def _build(tp: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(tp, config=_CONFIG)
    except PydanticUserError:  # models and dataclasses carry their own config
        return TypeAdapter(tp)


_cached_build = functools.lru_cache(maxsize=_ADAPTER_CACHE_SIZE)(_build)


def adapter(tp: Any) -> TypeAdapter[Any]:
    """A cached TypeAdapter for `tp`; building one costs far more than using it."""
    if tp is Any:
        return _ANY_ADAPTER
    try:
        hash(tp)
    except TypeError:  # an unhashable annotation: build it each time
        return _build(tp)
    return _cached_build(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


# A value of exactly one of these types, declared as that type or as Any, is its own JSON
# data: no adapter call. Arguments and results of this kind are the common case, and
# pydantic's strict check plus serialization cost microseconds per step on every backend.
_SCALARS = frozenset({int, float, str, bool, type(None)})


def to_jsonable(value: Any, tp: Any = Any, *, where: str = "value") -> Any:
    """Encode `value` (declared as `tp`) to JSON-compatible data, or raise naming `where`."""
    kind = type(value)
    if kind in _SCALARS and (tp is Any or tp is kind):
        return value
    try:
        ta = adapter(tp)
        if tp is not Any:
            # pydantic serializes whatever object it is handed through the declared type's
            # fields, so a wrong object would be journaled half-empty; check it first.
            try:
                ta.validate_python(value, strict=True)
            except ValidationError as exc:
                raise SerializationError(
                    f"{where}: a value of type {type(value).__qualname__} does not match the "
                    f"declared type {_type_name(tp)}: {exc.errors()[0]['msg']}"
                ) from None
        # warnings="error": a value that does not match its declared type is refused instead
        # of being written half-right (pydantic would only warn).
        return ta.dump_python(value, mode="json", warnings="error")
    except SerializationError:
        raise
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise SerializationError(
            f"{where}: cannot encode a value of type {type(value).__qualname__} "
            f"(declared {_type_name(tp)}) as JSON: {exc}. Use JSON types, dataclasses, "
            f"pydantic models, TypedDicts, enums or datetimes."
        ) from None
    except Exception as exc:  # pydantic schema errors for types it cannot describe
        raise SerializationError(
            f"{where}: type {_type_name(tp)} cannot be described for JSON: {exc}"
        ) from None


def from_jsonable(data: Any, tp: Any = Any, *, where: str = "value") -> Any:
    """Decode JSON-compatible data back into `tp`, or raise naming `where`."""
    if tp is Any or (tp is type(data) and tp in _SCALARS):
        return data
    try:
        return adapter(tp).validate_python(data)
    except Exception as exc:
        raise SerializationError(
            f"{where}: recorded data does not decode as {_type_name(tp)}: {exc}"
        ) from None


def dumps(data: Any) -> str:
    """Compact JSON text of already JSON-compatible data."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def encode(value: Any, tp: Any = Any, *, where: str = "value") -> str:
    """`value` as JSON text."""
    return dumps(to_jsonable(value, tp, where=where))


def decode(text: str | bytes | None, tp: Any = Any, *, where: str = "value") -> Any:
    """JSON text back into `tp`."""
    return from_jsonable(loads(text), tp, where=where)


def digest(data: Any) -> str:
    """A short stable digest of JSON-compatible data (key order does not matter)."""
    canonical = json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
