"""Concurrency limits by key: at most `max` steps of one key run at once, on every worker.

`@bridge.activity(concurrency=bridge.Limit(key="tenant", max=5))` bounds the attempts of
that activity per value of its `tenant` argument ("no more than 5 concurrent embedding
jobs per tenant"), across every worker process of a backend. A step that finds the limit
reached does not spin: it takes a place in a durable queue (first come, first served) and
its run parks until a holder releases its permit; a run that ends (completed, failed,
cancelled) releases what it held or queued for.

Permits are taken per step, not per attempt: the retries of a step keep its permit, and a
worker that dies mid-step leaves the permit to the run, which the worker that recovers it
holds again. Where the permits live is the backend's business: the embedded journals keep
them in a feature table beside the journal (`bridge.journal._permits`); Temporal keeps them
in a semaphore workflow per key (the mutex pattern of Temporal's samples).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError

__all__ = ["PERMIT_WAIT", "Limit"]

#: The `waiting_for` of a run parked until a permit of key K is granted: `permit:K`.
PERMIT_WAIT = "permit:"
#: The longest permit key the stores hold (their key columns are 255 characters).
_MAX_KEY = 255


@dataclass(frozen=True)
class Limit:
    """At most `max` steps with the same key run at once.

    `key` names a parameter of the activity (its value, as text, is the key) or is a
    callable given the call's arguments by name, as the JSON data the journal holds (a
    model arrives as a dict), that returns the key. `name` is the pool
    the limit counts in; steps of different activities that share a pool name share the
    limit (one provider, several activities). It defaults to the activity's name.
    """

    key: str | Callable[..., Any]
    max: int
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 1:
            raise ConfigError(
                f"bridge.Limit(max=...) must be a whole number >= 1, got {self.max!r}"
            )
        if not (isinstance(self.key, str) and self.key) and not callable(self.key):
            raise ConfigError(
                f"bridge.Limit(key=...) must name a parameter of the activity or be a "
                f"callable of its arguments, got {self.key!r}"
            )

    def check(self, fn: Callable[..., Any], activity: str) -> None:
        """Refuse, at decoration, a key naming no parameter of the activity."""
        if isinstance(self.key, str) and self.key not in inspect.signature(fn).parameters:
            names = ", ".join(inspect.signature(fn).parameters) or "none"
            raise ConfigError(
                f"activity {activity!r}: bridge.Limit(key={self.key!r}) names no parameter "
                f"of the activity (its parameters: {names}); name one, or pass a callable"
            )

    def permit_key(self, activity: str, arguments: Mapping[str, Any]) -> str:
        """The permit key of one call: `<pool>:<key value>`; `arguments` by parameter name
        as the activity receives them."""
        if isinstance(self.key, str):
            value = arguments.get(self.key)
        else:
            try:
                value = self.key(**arguments)
            except Exception as exc:
                raise ConfigError(
                    f"activity {activity!r}: the bridge.Limit key callable failed on the "
                    f"call's arguments: {type(exc).__name__}: {exc}"
                ) from exc
        key = f"{self.name or activity}:{value}"
        if len(key) > _MAX_KEY:
            raise ConfigError(
                f"activity {activity!r}: the concurrency key {key[:60]!r}... is "
                f"{len(key)} characters, more than {_MAX_KEY}; key by a shorter value"
            )
        return key
