"""Activities: the units of work whose results are journaled and never re-run once recorded."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from bridge._signature import CallShape
from bridge.concurrency import Limit, RateLimit
from bridge.errors import ConfigError, NonRetryableError, NotRegisteredError, OutsideWorkflowError

__all__ = ["ActivityDefinition", "ActivityInfo", "RetryPolicy", "activity", "activity_info"]

P = ParamSpec("P")
R = TypeVar("R")

IDEMPOTENCY_PARAM = "idempotency_key"


def seconds(value: float | timedelta | None, *, what: str) -> float | None:
    """Accept seconds or a timedelta, as Temporal users write both."""
    if value is None:
        return None
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs < 0:
        raise ConfigError(f"{what} must not be negative, got {secs}")
    return secs


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed activity is tried again (Temporal's RetryPolicy, neutral).

    `max_attempts=0` means no limit, as in Temporal. The delay after attempt n is
    `initial_interval * backoff**(n-1)`, capped at `max_interval`. Errors listed in
    `non_retryable` (types or type names) and `bridge.NonRetryableError` fail at once.
    """

    max_attempts: int = 3
    initial_interval: float | timedelta = 1.0
    backoff: float = 2.0
    max_interval: float | timedelta = 100.0
    non_retryable: Sequence[type[BaseException] | str] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ConfigError(f"RetryPolicy.max_attempts must be >= 0, got {self.max_attempts}")
        if self.backoff < 1:
            raise ConfigError(f"RetryPolicy.backoff must be >= 1, got {self.backoff}")
        initial = seconds(self.initial_interval, what="RetryPolicy.initial_interval")
        maximum = seconds(self.max_interval, what="RetryPolicy.max_interval")
        object.__setattr__(self, "initial_interval", initial)
        object.__setattr__(self, "max_interval", max(maximum or 0.0, initial or 0.0))
        object.__setattr__(self, "non_retryable", tuple(self.non_retryable))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        raw = float(self.initial_interval) * (self.backoff ** (attempt - 1))  # type: ignore[arg-type]
        return min(raw, float(self.max_interval))  # type: ignore[arg-type]

    def non_retryable_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.__name__ for t in self.non_retryable]

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, NonRetryableError):
            return False
        for entry in self.non_retryable:
            if isinstance(entry, str):
                if entry in (
                    type(exc).__name__,
                    f"{type(exc).__module__}.{type(exc).__qualname__}",
                ):
                    return False
            elif isinstance(exc, entry):
                return False
        return True

    def exhausted(self, attempt: int) -> bool:
        return self.max_attempts != 0 and attempt >= self.max_attempts


@dataclass(frozen=True)
class ActivityInfo:
    """What a running activity may know about itself (read with `bridge.activity_info()`)."""

    workflow_id: str
    activity: str
    step: int
    attempt: int
    idempotency_key: str
    #: The details the previous attempt of this step last sent with `bridge.heartbeat()`
    #: (None on a first attempt, or when it sent none): where a retry resumes from.
    heartbeat_details: Any = None


_current_info: contextvars.ContextVar[ActivityInfo | None] = contextvars.ContextVar(
    "bridge_activity_info", default=None
)

#: False while a backend imports a second copy of a user module (Temporal's sandbox re-imports
#: workflow modules for every run): the decorators still build definitions, but the registries
#: keep the process's own ones, whose functions (and module state) are what workers must call.
registering: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "bridge_registering", default=True
)


def activity_info() -> ActivityInfo:
    """The info of the activity attempt running now; raises outside an activity."""
    info = _current_info.get()
    if info is None:
        raise OutsideWorkflowError("bridge.activity_info() was called outside a running activity")
    return info


class ActivityDefinition(Generic[P, R]):
    """A decorated activity: the plain function plus its name, policy and JSON shape.

    Calling it directly runs the function as is (handy in unit tests); inside a workflow
    use `ctx.run(activity, ...)` so the call is journaled.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        retry: RetryPolicy,
        timeout: float | None,
        heartbeat_timeout: float | None,
        compensate: ActivityDefinition[..., Any] | None,
        side_effects: bool = True,
        journal_start: bool = False,
        concurrency: Limit | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.compensate = compensate
        self.side_effects = side_effects
        self.journal_start = journal_start
        if concurrency is not None:
            if not isinstance(concurrency, Limit):
                raise ConfigError(
                    f"activity {name!r}: concurrency= takes a bridge.Limit(key=..., max=...), "
                    f"got {concurrency!r}"
                )
            concurrency.check(fn, name)
        self.concurrency = concurrency
        if rate_limit is not None:
            if not isinstance(rate_limit, RateLimit):
                raise ConfigError(
                    f"activity {name!r}: rate_limit= takes a bridge.RateLimit(per_second=...), "
                    f"got {rate_limit!r}"
                )
            rate_limit.check(fn, name)
        self.rate_limit = rate_limit
        self.is_async = inspect.iscoroutinefunction(fn)
        self.wants_idempotency_key = (
            IDEMPOTENCY_PARAM in inspect.signature(fn).parameters
            and inspect.signature(fn).parameters[IDEMPOTENCY_PARAM].kind
            is inspect.Parameter.KEYWORD_ONLY
        )
        self.shape = CallShape(fn, label=f"activity {name!r}", skip=(IDEMPOTENCY_PARAM,))
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<bridge activity {self.name}>"


_REGISTRY: dict[str, ActivityDefinition[..., Any]] = {}


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def register_activity(defn: ActivityDefinition[..., Any]) -> None:
    """Record `defn` by name; the same function re-imported replaces itself."""
    if not registering.get():
        return
    existing = _REGISTRY.get(defn.name)
    if existing is not None and _origin(existing.fn) != _origin(defn.fn):
        raise ConfigError(
            f"activity name {defn.name!r} is used by both {_origin(existing.fn)} and "
            f"{_origin(defn.fn)}; give one of them another name with @bridge.activity(name=...)"
        )
    _REGISTRY[defn.name] = defn


def lookup_activity(name: str) -> ActivityDefinition[..., Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotRegisteredError(
            f"no activity named {name!r} is registered in this process; import the module "
            f"that defines it"
        ) from None


def as_activity(obj: Any, *, what: str) -> ActivityDefinition[..., Any]:
    """`obj` if it is an activity, else a clear error telling how to make it one."""
    if isinstance(obj, ActivityDefinition):
        return obj
    label = getattr(obj, "__qualname__", repr(obj))
    raise NotRegisteredError(
        f"{what}: {label} is not a bridge activity; decorate it with @bridge.activity"
    )


@overload
def activity(fn: Callable[P, R], /) -> ActivityDefinition[P, R]: ...
@overload
def activity(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    heartbeat_timeout: float | timedelta | None = None,
    compensate: Callable[..., Any] | None = None,
    side_effects: bool = True,
    journal_start: bool = False,
    concurrency: Limit | None = None,
    rate_limit: RateLimit | None = None,
) -> Callable[[Callable[P, R]], ActivityDefinition[P, R]]: ...


def activity(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    heartbeat_timeout: float | timedelta | None = None,
    compensate: Callable[..., Any] | None = None,
    side_effects: bool = True,
    journal_start: bool = False,
    concurrency: Limit | None = None,
    rate_limit: RateLimit | None = None,
) -> Any:
    """Declare an activity: a step whose result is journaled once and replayed after.

    `compensate` is run by `ctx.compensate()` for every completed call, newest first, with
    the same arguments as the call it undoes. An activity with a keyword-only
    `idempotency_key` parameter receives `"<workflow id>:<step>"`, the same on every retry
    and replay, so downstream systems can make the side effect exactly-once.

    `side_effects=False` declares a pure activity (a computation, a read): the migration
    router's shadow runs execute it for real and compare its result, instead of answering
    it from the primary's recorded result as they do every other activity.

    `journal_start=True` writes the step's start to the journal before its first attempt
    (one more write per call), so that after a crash the code before the step knows it had
    begun (`Context.is_replaying` is True there): glue that fires a callback before a costly
    call (an agent's `on_llm_start` hook) then fires it once. Temporal's history records
    every start anyway.

    `concurrency=bridge.Limit(key=..., max=n)` lets at most n steps with the same key run
    at once across every worker; the others queue durably (`bridge.concurrency`).
    `rate_limit=bridge.RateLimit(per_second=r, burst=b, key=...)` paces its attempts at r a
    second across every worker.
    """

    def wrap(f: Callable[..., Any]) -> ActivityDefinition[..., Any]:
        undo = None
        if compensate is not None:
            undo = (
                compensate if isinstance(compensate, ActivityDefinition) else activity(compensate)
            )
        defn = ActivityDefinition(
            f,
            name=name or f.__name__,
            retry=retry or RetryPolicy(),
            timeout=seconds(timeout, what="activity timeout"),
            heartbeat_timeout=seconds(heartbeat_timeout, what="activity heartbeat_timeout"),
            compensate=undo,
            side_effects=side_effects,
            journal_start=journal_start,
            concurrency=concurrency,
            rate_limit=rate_limit,
        )
        register_activity(defn)
        return defn

    return wrap(fn) if fn is not None else wrap
