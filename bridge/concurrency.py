"""Concurrency and rate limits by key, shared by every worker of a backend.

`Limit`: at most `max` steps of one key run at once. `RateLimit`: attempts of one key start
at most `per_second` a second on average, `burst` at once after a quiet spell.

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

__all__ = ["PERMIT_WAIT", "Limit", "RateLimit", "reserve"]

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
        _check_key(self.key, fn, activity, "bridge.Limit")

    def permit_key(self, activity: str, arguments: Mapping[str, Any]) -> str:
        """The permit key of one call: `<pool>:<key value>`; `arguments` by parameter name
        as the journal holds them."""
        return _key_of(self.key, self.name or activity, activity, arguments)


@dataclass(frozen=True)
class RateLimit:
    """Attempts start at most `per_second` a second, `burst` at once, per key.

    A token bucket shared through the backend's store: each attempt reserves the next free
    slot and waits for it in its worker (a wait of a second or so is no reason to park a
    run). `key` is as for `Limit`; without one the limit is the activity's (or pool
    `name`'s) alone. Retries are attempts too, so an activity retried after a 429 is paced
    like the rest; `bridge.RetryAfter` adds the provider's own wait.
    """

    per_second: float
    burst: int = 1
    key: str | Callable[..., Any] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        rate = self.per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ConfigError(f"bridge.RateLimit(per_second=...) must be > 0, got {rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(
                f"bridge.RateLimit(burst=...) must be a whole number >= 1, got {self.burst!r}"
            )

    def check(self, fn: Callable[..., Any], activity: str) -> None:
        if self.key is not None:
            _check_key(self.key, fn, activity, "bridge.RateLimit")

    def bucket_key(self, activity: str, arguments: Mapping[str, Any]) -> str:
        """The bucket of one call: `<pool>` or `<pool>:<key value>`."""
        pool = self.name or activity
        if self.key is None:
            return pool
        return _key_of(self.key, pool, activity, arguments)


def reserve(
    tokens: float, updated_at: float, now: float, per_second: float, burst: int
) -> tuple[float, float]:
    """Take one token from a bucket last left with `tokens` at `updated_at`: the tokens
    left (negative when the token was borrowed from the future) and the time (epoch
    seconds) from which it may be used. Waiters reserve in turn, so no slot is handed out
    twice; a time rather than a wait, so the delay of the answer does not shift the slot."""
    refilled = min(float(burst), tokens + max(0.0, now - updated_at) * per_second)
    left = refilled - 1.0
    return left, now if left >= 0 else now - left / per_second


def _check_key(key: Any, fn: Callable[..., Any], activity: str, what: str) -> None:
    params = inspect.signature(fn).parameters
    if isinstance(key, str) and key not in params:
        names = ", ".join(params) or "none"
        raise ConfigError(
            f"activity {activity!r}: {what}(key={key!r}) names no parameter of the "
            f"activity (its parameters: {names}); name one, or pass a callable"
        )


def _key_of(
    key: str | Callable[..., Any], pool: str, activity: str, arguments: Mapping[str, Any]
) -> str:
    if isinstance(key, str):
        value = arguments.get(key)
    else:
        try:
            value = key(**arguments)
        except Exception as exc:
            raise ConfigError(
                f"activity {activity!r}: the key callable failed on the call's arguments: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    out = f"{pool}:{value}"
    if len(out) > _MAX_KEY:
        raise ConfigError(
            f"activity {activity!r}: the key {out[:60]!r}... is {len(out)} characters, "
            f"more than {_MAX_KEY}; key by a shorter value"
        )
    return out
