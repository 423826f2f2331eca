"""Workflows and the Context they run with: the neutral interface every backend implements."""

from __future__ import annotations

import abc
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from bridge._signature import CallShape
from bridge.activity import ActivityDefinition, registering
from bridge.errors import ConfigError, NotRegisteredError

__all__ = [
    "Context",
    "WorkflowDefinition",
    "current_context",
    "lookup_workflow",
    "registered_workflows",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Context(abc.ABC):
    """What a workflow may do. Everything here is journaled or replay-safe.

    Workflow code must be deterministic: take time, ids and randomness from `now()`,
    `uuid()` and `random()`, and do I/O only through activities run with `run()`.
    """

    @property
    @abc.abstractmethod
    def workflow_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def attempt(self) -> int:
        """How many times a worker has started executing this run (1 on the first).

        Not replay-safe: use it for logging, not to choose a path.
        """

    @property
    def is_replaying(self) -> bool:
        """True while workflow code re-executes what the journal already holds.

        That is, the next step the code would take is already recorded (its outcome, or a
        wait that began), so the code running now ran before, in an earlier execution;
        False once the code runs past the journal, live. Framework glue reads it to keep
        side effects that are not steps (an agent's hooks, exported trace spans) from
        happening again on every replay. Never choose a workflow path by it: the path
        must be the same on replay and live.

        Not abstract, so a backend written before it existed keeps working; the default
        (False: always live) suits a backend that never re-executes workflow code, and a
        backend that replays overrides it.
        """
        return False

    @abc.abstractmethod
    def run(self, activity: ActivityDefinition[P, R], *args: Any, **kwargs: Any) -> Awaitable[R]:
        """Run `activity` as a journaled step; its index is taken when `run` is called."""

    async def gather(self, *aws: Awaitable[Any] | Iterable[Awaitable[Any]]) -> list[Any]:
        """Await steps started together; results come back in argument order.

        Accepts awaitables or one iterable of them (`ctx.gather(ctx.run(f, x) for x in xs)`).
        Backends may override this to add engine-specific behaviour.
        """
        import asyncio

        items = flatten_awaitables(aws)
        return list(await asyncio.gather(*items))

    @abc.abstractmethod
    async def sleep(self, duration: float | timedelta) -> None:
        """A durable timer: survives restarts, holds no worker while it waits."""

    @abc.abstractmethod
    async def wait_for_signal(self, name: str, *, timeout: float | timedelta | None = None) -> Any:
        """Wait for the next signal `name` and return its payload; None when `timeout` passes."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The workflow's replay-safe clock (UTC)."""

    @abc.abstractmethod
    def uuid(self) -> str:
        """A replay-safe random UUID (version 4 format)."""

    @abc.abstractmethod
    def random(self) -> float:
        """A replay-safe random float in [0, 1)."""

    @abc.abstractmethod
    def patched(self, change_id: str) -> bool:
        """True for runs that reach this point with the new code, False when replaying old ones."""

    @abc.abstractmethod
    async def compensate(self) -> None:
        """Run the compensations of completed steps, newest first, each as a journaled step."""


_current_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "bridge_workflow_context", default=None
)


def current_context() -> Context | None:
    """The Context of the workflow running in this task, or None outside a workflow.

    Framework adapters use it (a LangChain tool built from an activity, an agent's model) so
    that a call made inside a workflow is journaled without the user passing `ctx` down
    through the framework's own call chain. Backends set it while workflow code runs.
    """
    return _current_context.get()


def flatten_awaitables(aws: tuple[Any, ...]) -> list[Awaitable[Any]]:
    """`gather(a, b)` and `gather(x for x in ...)` both mean a list of awaitables."""
    if len(aws) == 1 and not inspect.isawaitable(aws[0]) and isinstance(aws[0], Iterable):
        return list(aws[0])
    return list(aws)


class WorkflowDefinition(Generic[P, R]):
    """A decorated workflow function: its name and the JSON shape of its input and result."""

    def __init__(self, fn: Callable[..., Coroutine[Any, Any, R]], *, name: str) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"workflow {name!r} must be an `async def` taking a bridge.Context first"
            )
        params = list(inspect.signature(fn).parameters)
        if not params:
            raise ConfigError(f"workflow {name!r} must take a bridge.Context as first parameter")
        self.fn = fn
        self.name = name
        self.shape = CallShape(fn, label=f"workflow {name!r}", skip=(params[0],))
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __call__(self, ctx: Context, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, R]:
        return self.fn(ctx, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<bridge workflow {self.name}>"


_REGISTRY: dict[str, WorkflowDefinition[..., Any]] = {}


@overload
def workflow(fn: Callable[..., Coroutine[Any, Any, R]], /) -> WorkflowDefinition[..., R]: ...
@overload
def workflow(
    *, name: str | None = None
) -> Callable[[Callable[..., Coroutine[Any, Any, R]]], WorkflowDefinition[..., R]]: ...


def workflow(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Declare `async def wf(ctx: bridge.Context, ...)` as a durable workflow.

    The name (default: the function's name) is what is journaled, so renaming the function
    without passing the old `name=` strands runs that are in flight.
    """

    def wrap(f: Callable[..., Any]) -> WorkflowDefinition[..., Any]:
        defn = WorkflowDefinition(f, name=name or f.__name__)
        if not registering.get():
            return defn
        existing = _REGISTRY.get(defn.name)
        origin = f"{f.__module__}:{f.__qualname__}"
        if (
            existing is not None
            and f"{existing.fn.__module__}:{existing.fn.__qualname__}" != origin
        ):
            raise ConfigError(
                f"workflow name {defn.name!r} is used by both "
                f"{existing.fn.__module__}:{existing.fn.__qualname__} and {origin}; "
                f"pass name=... to one of them"
            )
        _REGISTRY[defn.name] = defn
        return defn

    return wrap(fn) if fn is not None else wrap


def as_workflow(obj: Any) -> WorkflowDefinition[..., Any]:
    if isinstance(obj, WorkflowDefinition):
        return obj
    label = getattr(obj, "__qualname__", repr(obj))
    raise NotRegisteredError(f"{label} is not a bridge workflow; decorate it with @bridge.workflow")


def lookup_workflow(name: str) -> WorkflowDefinition[..., Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise NotRegisteredError(
            f"no workflow named {name!r} is registered in this process (known: {known}); "
            f'import the module that defines it, e.g. `workflows = ["my.module"]` in bridge.toml'
        ) from None


def registered_workflows() -> dict[str, WorkflowDefinition[..., Any]]:
    return dict(_REGISTRY)
