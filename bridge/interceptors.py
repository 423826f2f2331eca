"""Interceptors: the one way a feature wraps every step, start or run ending.

Shadow mode, the bus outbox, and later tracing and payload encryption each need to see every
activity attempt, every start or every finished run, on every backend. Instead of the core
naming them (a hard-wired hook per feature), each registers an `Interceptor` and the core
calls the chain, the way temporalio's worker interceptors do
(`ActivityInboundInterceptor.execute_activity(input)` calling `next`).

A feature registers a *factory* in the `bridge.interceptors` entry-point group (or in code
with `register()`): `factory(settings) -> Interceptor | None`. The factory reads the
settings and returns None when its feature is off, so a chain holds only what is in use.
`load(settings)` builds the chain for one client or worker: the entry points' interceptors
by entry-point name, then those registered in code, the first one outermost.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from bridge.activity import ActivityDefinition
    from bridge.backend import Status
    from bridge.config import Settings
    from bridge.workflow import WorkflowDefinition

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActivityCall",
    "Interceptor",
    "InterceptorFactory",
    "RunEnded",
    "StartCall",
    "load",
    "payload_codec",
    "register",
    "unregister",
]

ENTRY_POINT_GROUP = "bridge.interceptors"
_OWN_DISTRIBUTION = "durable-bridge"


@dataclass(frozen=True)
class ActivityCall:
    """One activity attempt, as every backend makes it (`bridge._execute.run_attempt`)."""

    defn: ActivityDefinition[..., Any]
    data: dict[str, Any]  # the encoded arguments
    workflow_id: str
    step: int
    attempt: int
    #: What the run was started with in `StartCall.headers` (a child: its parent's), as
    #: the engine keeps it; empty for a run started without any.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StartCall:
    """A workflow start as the client asks it, after its arguments were encoded.

    `headers` are text the run keeps and hands to each of its attempts
    (`ActivityCall.headers`) and to its children, the way Temporal carries a start's
    headers: tracing puts the caller's W3C trace context there. An interceptor adds to them
    by passing `dataclasses.replace(call, headers=...)` to `next`."""

    workflow: WorkflowDefinition[..., Any]
    args: dict[str, Any]
    id: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunEnded:
    """A run reaching a final status, seen inside the journal's own transaction."""

    workflow_id: str
    workflow: str
    engine: str
    status: Status
    result: Any
    error: dict[str, Any] | None
    #: When the run (its current generation) was created, epoch seconds.
    started_at: float | None = None
    #: The headers the run was started with (`StartCall.headers`).
    headers: Mapping[str, str] = field(default_factory=dict)


class Interceptor:
    """Override what the feature needs; every method passes through unchanged by default."""

    async def execute_activity(
        self, call: ActivityCall, next: Callable[[ActivityCall], Awaitable[Any]]
    ) -> Any:
        return await next(call)

    async def start_workflow(
        self, call: StartCall, next: Callable[[StartCall], Awaitable[bool]]
    ) -> bool:
        return await next(call)

    def storage_opened(self, conn: Connection) -> None:
        """Called once in the transaction that prepares an embedded journal's schema, so a
        feature can create its own tables beside it (the bus outbox does)."""

    def run_ended(self, conn: Connection, ended: RunEnded) -> None:
        """Called in the same transaction that writes a run's final status on an embedded
        journal: what it writes commits if and only if the run ended."""

    def run_ended_committed(self, ended: RunEnded) -> None:
        """Called once that transaction has committed, outside it: for what must happen
        once per run and only when its end is durable, but writes nothing to the journal
        (tracing's run span). A transaction that fails calls nothing, and a run ends only
        once, so this is never repeated for a run."""

    def payload_codec(self) -> Any:
        """The codec every stored payload goes through (payload encryption returns its
        keyring, `bridge.encryption.Keyring`), or None. The first one in the chain wins."""
        return None


InterceptorFactory = Callable[["Settings"], Interceptor | None]

_registered: list[InterceptorFactory] = []
_from_entry_points: list[InterceptorFactory] | None = None


def register(factory: InterceptorFactory) -> None:
    """Add a factory in code (tests, applications); entry points are found by themselves."""
    if factory not in _registered:
        _registered.append(factory)


def unregister(factory: InterceptorFactory) -> None:
    """Remove a factory added with `register()`; chains already loaded keep it."""
    if factory in _registered:
        _registered.remove(factory)


def _entry_point_factories() -> list[InterceptorFactory]:
    global _from_entry_points
    if _from_entry_points is None:
        # BRIDGE_DISABLE_PLUGIN_AUTOLOAD skips other packages' interceptors, never the
        # bridge's own: without the shadow answers a shadow run would execute real effects.
        others = not os.environ.get("BRIDGE_DISABLE_PLUGIN_AUTOLOAD")
        found: list[InterceptorFactory] = []
        # By name, so every process builds the same chain whatever the install order.
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            if not others and (ep.dist is None or ep.dist.name != _OWN_DISTRIBUTION):
                continue
            try:
                found.append(ep.load())
            except Exception as exc:
                raise ConfigError(
                    f"the interceptor entry point {ep.name!r} ({ep.value}) failed to "
                    f"load: {type(exc).__name__}: {exc}; fix or uninstall the package "
                    f"that declares it"
                ) from exc
        _from_entry_points = found
    return _from_entry_points


def payload_codec(interceptors: Sequence[Interceptor]) -> Any:
    """The chain's payload codec (see `Interceptor.payload_codec`), or None."""
    for interceptor in interceptors:
        found = interceptor.payload_codec()
        if found is not None:
            return found
    return None


def load(settings: Settings) -> tuple[Interceptor, ...]:
    """The chain for `settings`: every factory's interceptor that is switched on."""
    chain = (f(settings) for f in [*_entry_point_factories(), *_registered])
    return tuple(i for i in chain if i is not None)


async def call_activity(
    interceptors: Sequence[Interceptor],
    call: ActivityCall,
    last: Callable[[ActivityCall], Awaitable[Any]],
) -> Any:
    """Run `call` through the chain, ending in `last` (the real attempt)."""
    chain = tuple(interceptors)
    try:
        run = _composed(chain, last)
    except TypeError:  # an unhashable interceptor (a dataclass with eq): compose afresh
        run = _composed.__wrapped__(chain, last)
    return await run(call)


@functools.lru_cache(maxsize=64)
def _composed(
    interceptors: tuple[Interceptor, ...], last: Callable[[ActivityCall], Awaitable[Any]]
) -> Callable[[ActivityCall], Awaitable[Any]]:
    """The chain as one callable, built once per (chain, end) instead of once per attempt:
    every step of every run pays for the chain, so it costs one frame per interceptor."""
    run = last
    for interceptor in reversed(interceptors):
        run = functools.partial(interceptor.execute_activity, next=run)
    return run


async def call_start(
    interceptors: Sequence[Interceptor],
    call: StartCall,
    last: Callable[[StartCall], Awaitable[bool]],
) -> bool:
    """Run a start through the chain, ending in `last` (the backend's start)."""
    if not interceptors:
        return await last(call)
    head, rest = interceptors[0], interceptors[1:]
    return await head.start_workflow(call, lambda c: call_start(rest, c, last))
