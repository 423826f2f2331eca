"""How a function's arguments and result cross the JSON boundary.

Activities and workflows both take arguments that must be journaled and handed back on replay;
this class binds a call to the function's signature, encodes every argument with its own
annotation (so the error names the parameter), and decodes them again for the call.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from bridge import codec

_VAR_POS = inspect.Parameter.VAR_POSITIONAL
_VAR_KW = inspect.Parameter.VAR_KEYWORD
_POS_ONLY = inspect.Parameter.POSITIONAL_ONLY


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

    def encode_result(self, value: Any) -> Any:
        return codec.to_jsonable(value, self.return_type, where=self._result_where)

    def decode_result(self, data: Any) -> Any:
        return codec.from_jsonable(data, self.return_type, where=self._result_where)
