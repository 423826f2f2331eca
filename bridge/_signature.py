"""How a function's arguments and result cross the JSON boundary.

Activities and workflows both take arguments that must be journaled and handed back on replay;
this class binds a call to the function's signature, encodes every argument with its own
annotation (so the error names the parameter), and decodes them again for the call.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from bridge import codec
from bridge.errors import SerializationError

_VAR_POS = inspect.Parameter.VAR_POSITIONAL
_VAR_KW = inspect.Parameter.VAR_KEYWORD
_POS_ONLY = inspect.Parameter.POSITIONAL_ONLY
_POS_OR_KW = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def _clip(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_error(exc: Exception) -> str:
    """pydantic's first complaint with where in the value it is (`qty: Input should be a
    valid integer`), instead of its multi-line report."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(exc)


class CallShape:
    """The encodable signature of `fn`, minus parameters the runtime supplies itself."""

    def __init__(self, fn: Callable[..., Any], *, label: str, skip: tuple[str, ...] = ()) -> None:
        self.label = label
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception:  # unresolvable forward references: fall back to plain JSON
            hints = {}
        params = [p for name, p in sig.parameters.items() if name not in skip]
        self.signature = sig.replace(parameters=params)
        self.params = {p.name: p for p in params}
        self.hints: dict[str, Any] = {p.name: hints.get(p.name, Any) for p in params}
        self.return_type: Any = hints.get("return", Any)
        # The common call, all arguments positional and none left to defaults, binds by
        # position without inspect's general (and slower) binding.
        self._simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        self._names = tuple(self.params)
        # What an encoding error names, built once: formatting it on every call was a
        # measurable part of each Temporal activity attempt.
        self._where = {name: f"{label}, parameter {name!r}" for name in self.params}
        self._result_where = f"{label}, return value"

    def encode_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bound arguments as JSON-compatible data, keyed by parameter name."""
        if self._simple and not kwargs and len(args) == len(self._names):
            return {
                name: codec.to_jsonable(value, self.hints[name], where=self._where[name])
                for name, value in zip(self._names, args, strict=True)
            }
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.label}: {exc}") from None
        out: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            hint = self.hints[name]
            where = self._where[name]
            kind = self.params[name].kind
            if kind is _VAR_POS:
                out[name] = [codec.to_jsonable(v, hint, where=where) for v in value]
            elif kind is _VAR_KW:
                out[name] = {k: codec.to_jsonable(v, hint, where=where) for k, v in value.items()}
            else:
                out[name] = codec.to_jsonable(value, hint, where=where)
        return out

    def decode_args(self, data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments rebuilt from `encode_args` output."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            param = self.params.get(name)
            if param is None:
                raise TypeError(f"{self.label}: recorded argument {name!r} is not a parameter")
            hint = self.hints[name]
            where = self._where[name]
            if param.kind is _VAR_POS:
                args.extend(codec.from_jsonable(v, hint, where=where) for v in value)
            elif param.kind is _VAR_KW:
                kwargs.update(
                    {k: codec.from_jsonable(v, hint, where=where) for k, v in value.items()}
                )
            elif param.kind is _POS_ONLY or (
                param.kind is not inspect.Parameter.KEYWORD_ONLY and not kwargs
            ):
                args.append(codec.from_jsonable(value, hint, where=where))
            else:
                kwargs[name] = codec.from_jsonable(value, hint, where=where)
        return args, kwargs

    def decode_json_args(self, values: Sequence[Any], *, source: str) -> tuple[Any, ...]:
        """Positional arguments given as JSON data (a shell's ARGS_JSON, an inputs file, an
        event's data) decoded with each parameter's declared type, so a parameter declared
        as a pydantic model, dataclass or `list[Order]` gets that type, not the dict that
        `encode_args` would refuse. Values that already have their type pass through.
        `source` names where the JSON came from, for the error."""
        slots = [p for p in self.params.values() if p.kind in (_POS_ONLY, _POS_OR_KW, _VAR_POS)]
        takes_more = bool(slots) and slots[-1].kind is _VAR_POS
        if len(values) > len(slots) and not takes_more:
            raise TypeError(
                f"{self.label} takes {len(slots)} positional argument"
                f"{'' if len(slots) == 1 else 's'} ({', '.join(p.name for p in slots)}), but "
                f"{source} gives {len(values)}; pass a JSON array with one value per parameter"
            )
        decoded: list[Any] = []
        for position, value in enumerate(values):
            param = slots[min(position, len(slots) - 1)]
            hint = self.hints[param.name]
            if hint is Any:
                decoded.append(value)
                continue
            try:
                decoded.append(codec.adapter(hint).validate_python(value))
            except Exception as exc:
                raise SerializationError(
                    f"{self._where[param.name]}: {source} value {_clip(value)} is not a "
                    f"{_type_name(hint)}: {_first_error(exc)}; fix the JSON to match the "
                    "declared type"
                ) from None
        return tuple(decoded)

    def encode_result(self, value: Any) -> Any:
        return codec.to_jsonable(value, self.return_type, where=self._result_where)

    def decode_result(self, data: Any) -> Any:
        return codec.from_jsonable(data, self.return_type, where=self._result_where)
