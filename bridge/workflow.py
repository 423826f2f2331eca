"""Workflows and the Context they run with: the neutral interface every backend implements."""

from __future__ import annotations

import abc
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, overload

from bridge import codec
from bridge._signature import CallShape
from bridge.activity import ActivityDefinition, registering
from bridge.errors import (
    ConfigError,
    NotRegisteredError,
    QueryFailedError,
    QueryNotFoundError,
    UpdateNotFoundError,
    UpdateRejectedError,
)

__all__ = [
    "PARENT_CLOSE_POLICIES",
    "ChildHandle",
    "Context",
    "ContinueAsNew",
    "Signal",
    "WorkflowDefinition",
    "UpdateHandler",
    "answer_query",
    "call_update_handler",
    "validate_update",
    "current_context",
    "lookup_workflow",
    "note_step_answer",
    "registered_workflows",
    "signal_names",
    "workflow",
]

#: Where the last step awaited in this task got its answer (see `Context.last_step_replayed`).
_last_step_replayed: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "bridge_last_step_replayed", default=None
)


def note_step_answer(*, replayed: bool) -> None:
    """For backends: the step being delivered to workflow code now was answered from the
    journal (True) or executed now (False). Call it in the coroutine the workflow awaits,
    so the caller's task sees it."""
    # Set only on a change: each set copies the task's context mapping, and a live run's
    # steps all say False (profiled: a measurable share of a sql step's CPU).
    if _last_step_replayed.get() is not replayed:
        _last_step_replayed.set(replayed)


P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Signal:
    """The signal a multi-name `ctx.wait_for_signal([...])` received: which one, and its
    payload (None when it was sent without one, which a timeout, answered with None
    itself, can then not be mistaken for)."""

    name: str
    payload: Any = None


def signal_names(name: str | Sequence[str], *, where: str) -> tuple[str, ...] | None:
    """The names a wait takes: None for the single-name form (`"approval"`), the names of
    the multi-name form (`["approve", "reject"]`) otherwise; refused when empty."""
    if isinstance(name, str):
        return None
    names = tuple(name)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"{where}: wait_for_signal takes a signal name or a non-empty list of names, "
            f"not {name!r}"
        )
    return names


def answer_query(
    handlers: dict[str, Callable[..., Any]], workflow_id: str, name: str, args: Sequence[Any]
) -> Any:
    """Call query handler `name` of run `workflow_id` with `args`; its answer as JSON data.

    The one place every backend answers a query, so an unknown name and a failing handler
    read the same on every engine.
    """
    handler = handlers.get(name)
    if handler is None:
        known = ", ".join(sorted(handlers)) or "(none yet)"
        raise QueryNotFoundError(
            f"workflow {workflow_id!r} has no query {name!r}; its queries: {known}. A query "
            f"exists once the run's code has called ctx.set_query_handler({name!r}, fn)"
        )
    try:
        value = handler(*handler_args(handler, args, what=f"query handler {name!r}"))
    except Exception as exc:
        raise QueryFailedError(
            f"query {name!r} of workflow {workflow_id!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return codec.to_jsonable(value, where=f"the answer of query {name!r}")


def handler_args(handler: Callable[..., Any], args: Sequence[Any], *, what: str) -> tuple[Any, ...]:
    """A query or update handler's JSON arguments decoded with its parameters' declared
    types (a dataclass, pydantic model or enum parameter gets that type, as Temporal's
    converter gives a handler its declared types); unannotated parameters get the JSON
    data. Raises SerializationError naming the parameter when a value does not fit."""
    try:
        shape = CallShape(handler, label=what)
    except (TypeError, ValueError):  # a callable without a readable signature
        return tuple(args)
    return shape.decode_json_args(args, source="the caller's argument")


@dataclass(frozen=True)
class UpdateHandler:
    """An update handler a run has set (`Context.set_update_handler`) and its validator."""

    handler: Callable[..., Any]
    validator: Callable[..., Any] | None = None


def validate_update(
    handlers: dict[str, UpdateHandler], workflow_id: str, name: str, args: Sequence[Any]
) -> UpdateHandler:
    """The handler of update `name`, once its validator (if any) accepted `args`.

    The one place every backend decides whether an update is accepted, so an unknown name
    (`UpdateNotFoundError`, listing the run's updates) and a refusal (`UpdateRejectedError`
    carrying the validator's error type and message) read the same on every engine. It
    runs before anything is journaled: a rejected update leaves no trace in the run.
    """
    entry = handlers.get(name)
    if entry is None:
        known = ", ".join(sorted(handlers)) or "(none yet)"
        raise UpdateNotFoundError(
            f"workflow {workflow_id!r} has no update {name!r}; its updates: {known}. An "
            f"update exists once the run's code has called ctx.set_update_handler({name!r}, fn)"
        )
    try:
        typed = handler_args(entry.handler, args, what=f"update handler {name!r}")
    except Exception as exc:  # arguments the handler cannot take: refused, nothing journaled
        raise UpdateRejectedError(
            f"update {name!r} of workflow {workflow_id!r} was rejected: {exc}",
            error_type=type(exc).__name__,
            reason=str(exc),
        ) from None
    if entry.validator is not None:
        try:
            entry.validator(*typed)
        except Exception as exc:
            raise UpdateRejectedError(
                f"update {name!r} of workflow {workflow_id!r} was rejected by its validator: "
                f"{type(exc).__name__}: {exc}",
                error_type=type(exc).__name__,
                reason=str(exc),
            ) from None
    return entry


async def call_update_handler(entry: UpdateHandler, args: Sequence[Any]) -> Any:
    """Run an accepted update's handler (plain or async) with `args` (JSON data, decoded by
    its declared types, `handler_args`); its value as is."""
    value = entry.handler(*handler_args(entry.handler, args, what="update handler"))
    if inspect.isawaitable(value):
        value = await value
    return value


class ContinueAsNew(BaseException):
    """Raised by `Context.continue_as_new`: the run's current history ends here and the same
    workflow id goes on with new arguments.

    A BaseException, like the journal's `Suspend` and Temporal's own `ContinueAsNewError`,
    so `except Exception` in workflow code cannot swallow it. It carries the arguments as
    they were passed; the backend encodes them with the workflow's own signature.
    """

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.call_args = args
        self.call_kwargs = kwargs


#: What happens to a child still open when its parent ends (completes, fails, is cancelled
#: or continues as new): Temporal's ParentClosePolicy, by the same names.
PARENT_CLOSE_POLICIES = ("terminate", "request_cancel", "abandon")


def check_child_call(
    workflow: Any, parent_close_policy: str, *, where: str
) -> WorkflowDefinition[..., Any]:
    """The definition of the child `workflow` (a `@bridge.workflow` function), once its
    parent-close policy is known; the one check every backend makes at the call site."""
    defn = getattr(workflow, "__bridge_workflow__", workflow)
    if not isinstance(defn, WorkflowDefinition):
        raise ConfigError(
            f"{where}: a child workflow must be a @bridge.workflow function, not {workflow!r}"
        )
    if parent_close_policy not in PARENT_CLOSE_POLICIES:
        raise ConfigError(
            f"{where}: parent_close_policy must be one of "
            f"{', '.join(map(repr, PARENT_CLOSE_POLICIES))}, not {parent_close_policy!r}"
        )
    return defn


def default_child_id(parent_id: str, step: int) -> str:
    """A child's id when none is given: the parent's id and the step index that starts it,
    so the same call makes the same id on every replay and every engine."""
    return f"{parent_id}/child-{step}"


class ChildHandle(abc.ABC):
    """A child workflow a run started (`ctx.start_child`): await its result, signal it or
    cancel it from the parent. Every call is journaled (or a Temporal command), so a
    replay neither signals nor cancels twice."""

    #: The child's workflow id.
    id: str

    @abc.abstractmethod
    async def result(self) -> Any:
        """The child's result, decoded to its declared return type; ChildWorkflowError
        when it failed, was cancelled or terminated. The parent waits durably (on the
        journal engines it parks and is woken by the child's end)."""

    @abc.abstractmethod
    async def signal(self, name: str, payload: Any = None) -> None:
        """Send signal `name` to the child."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Ask the child to cancel (it sees CancelledError at its next operation);
        `result()` then raises ChildWorkflowError with status CANCELLED."""


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

    @property
    def sandboxed(self) -> bool:
        """True when the engine refuses I/O in workflow code itself (Temporal's sandbox: no
        file, socket or subprocess), so glue that would connect something from workflow
        code (an MCP server's `async with`) must leave that to the steps. False where
        workflow code runs as ordinary Python in the worker (sql, langgraph)."""
        return False

    def last_step_replayed(self) -> bool:
        """Whether the step this code awaited last was answered from the journal (or
        Temporal's history) rather than executed now.

        `is_replaying` says whether the *next* step is recorded, which decides what runs
        before a step; what runs after one (an agent's `on_llm_end`, `on_tool_end`) must
        follow where that step's answer came from instead: a step in flight when a worker
        died was scheduled in the replayed part of the run but is answered live, and the
        last recorded step is answered from the journal although the code after it is live.
        Read it right after the await, in the same task. Backends record it with
        `note_step_answer`; a backend that does not falls back to `is_replaying`.
        """
        answered = _last_step_replayed.get()
        return self.is_replaying if answered is None else answered

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

    @overload
    async def wait_for_signal(
        self, name: str, *, timeout: float | timedelta | None = None
    ) -> Any: ...
    @overload
    async def wait_for_signal(
        self, name: Sequence[str], *, timeout: float | timedelta | None = None
    ) -> Signal | None: ...
    @abc.abstractmethod
    async def wait_for_signal(
        self, name: str | Sequence[str], *, timeout: float | timedelta | None = None
    ) -> Any:
        """Wait for the next signal `name` and return its payload; None when `timeout` passes.

        Given several names (`["approve", "reject"]`), wait for the first of them to arrive
        and return a `Signal(name, payload)`, or None on timeout: a signal sent without a
        payload is then `Signal(name, None)`, never taken for a timeout. Signals sent
        before the wait are kept and taken oldest first.
        """

    async def wait_condition(
        self, condition: Callable[[], bool], *, timeout: float | timedelta | None = None
    ) -> bool:
        """Wait until `condition()` (over workflow state) is true: True then, False when
        `timeout` passes first. Temporal's `workflow.wait_condition`, replay-safe everywhere.

        The condition is re-evaluated whenever the workflow's state may have changed (a
        step of another branch finished, a signal was taken, the run was woken by a signal
        and replayed); it must be a pure function of workflow state. Its outcome is
        journaled, so a replay answers as the first execution did.

        Not abstract, so a backend written before it existed keeps working; such a backend
        refuses it with this error.
        """
        raise ConfigError(
            f"ctx.wait_condition is not supported by {type(self).__name__} (workflow "
            f"{self.workflow_id!r}); use a backend that provides it (sql, langgraph, temporal)"
        )

    def set_query_handler(self, name: str, handler: Callable[..., Any] | None) -> None:
        """Publish `handler` as read-only query `name` of this run (None removes it).

        Temporal's `workflow.set_query_handler`, with a function rather than a method
        (bridge workflows are functions): it closes over the workflow's local state and
        answers `client.query(id, name, *args)` (or `bridge query ID NAME`) with JSON data.
        It must be a plain (not async) function that reads state and changes nothing: it
        may run on a replay of the run's journal, in the caller's process, where no step
        can be taken. Set handlers early in the workflow: a query sees those set by the
        point the run has reached.
        """
        if handler is not None and (inspect.iscoroutinefunction(handler) or not callable(handler)):
            raise ConfigError(
                f"query handler {name!r} of workflow {self.workflow_id!r} must be a plain "
                f"function (queries read state, they do not await), not {handler!r}"
            )
        handlers = self.query_handlers
        if handler is None:
            handlers.pop(name, None)
        else:
            handlers[name] = handler

    @property
    def query_handlers(self) -> dict[str, Callable[..., Any]]:
        """The query handlers this run has set so far, by name (the backend answers with them)."""
        found: dict[str, Callable[..., Any]] | None = self.__dict__.get("_bridge_queries")
        if found is None:
            found = self.__dict__["_bridge_queries"] = {}
        return found

    def set_update_handler(
        self,
        name: str,
        handler: Callable[..., Any] | None,
        *,
        validator: Callable[..., Any] | None = None,
    ) -> None:
        """Publish `handler` as update `name` of this run (None removes it): a request that
        may change the run and answers its caller (Temporal's `@workflow.update`, with a
        function closing over workflow state rather than a method).

        `client.update(id, name, *args)` (or `bridge update ID NAME`) calls it with the JSON
        arguments and returns its result. `validator` (a plain function, called with the
        same arguments before anything is journaled) refuses an update by raising:
        the caller gets UpdateRejectedError and the run is unchanged. An accepted update
        is journaled, and on a replay its handler runs again at the same point, so what it
        does to workflow state must depend only on that state and its arguments. The
        handler may be async and take steps (`ctx.run`, `ctx.sleep`) on Temporal and
        the journal engines; see docs/architecture.md "Updates" for where the journal engines
        deliver updates (at the run's waits).
        """
        if handler is not None and not callable(handler):
            raise ConfigError(
                f"update handler {name!r} of workflow {self.workflow_id!r} must be callable, "
                f"not {handler!r}"
            )
        if validator is not None and (
            inspect.iscoroutinefunction(validator) or not callable(validator)
        ):
            raise ConfigError(
                f"the validator of update {name!r} of workflow {self.workflow_id!r} must be "
                f"a plain function (validators read state, they do not await), not {validator!r}"
            )
        handlers = self.update_handlers
        if handler is None:
            handlers.pop(name, None)
        else:
            handlers[name] = UpdateHandler(handler, validator)

    @property
    def update_handlers(self) -> dict[str, UpdateHandler]:
        """The update handlers this run has set so far, by name (the backend calls them)."""
        found: dict[str, UpdateHandler] | None = self.__dict__.get("_bridge_updates")
        if found is None:
            found = self.__dict__["_bridge_updates"] = {}
        return found

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

    def deprecate_patch(self, change_id: str) -> None:
        """Retire `ctx.patched(change_id)` once no run on the old path remains (Temporal's
        `workflow.deprecate_patch`): replace `if ctx.patched(id): new else: old` with
        `ctx.deprecate_patch(id)` followed by the new code only.

        Runs that recorded the patch (they took the new path under `patched`) replay through
        it unchanged; runs that reach it now record nothing. Once no open run recorded the
        patch, the call itself can be removed: a run that recorded it would then no longer
        match its journal. The path is: 1. `patched` (old and new code side by side);
        2. when no run on the old path remains, `deprecate_patch`; 3. when no run that
        started before step 2 remains, remove the call."""
        raise NotImplementedError(
            f"{type(self).__qualname__} does not implement deprecate_patch({change_id!r})"
        )

    @abc.abstractmethod
    async def compensate(self) -> None:
        """Run the compensations of completed steps, newest first, each as a journaled step."""

    def upsert_search_attributes(self, attributes: Mapping[Any, Any]) -> None:
        """Set (or, with None, unset) search attributes of this run, by name (or by a typed
        `bridge.SearchAttribute` key); the others keep their values. Temporal's
        `workflow.upsert_search_attributes`: the change is part of the run's history, so a
        replay neither repeats nor loses it, and `client.list(query=...)` finds the run by
        the new values once it is recorded (before the run's next step starts).

        Not abstract, so a backend written before it existed keeps working; such a backend
        refuses it with this error.
        """
        raise ConfigError(
            f"ctx.upsert_search_attributes is not supported by {type(self).__name__} "
            f"(workflow {self.workflow_id!r}); use a backend that provides it (sql, "
            f"langgraph, temporal)"
        )

    def start_child(
        self,
        workflow: Any,
        *args: Any,
        id: str | None = None,
        parent_close_policy: str = "terminate",
        **kwargs: Any,
    ) -> Awaitable[ChildHandle]:
        """Start `workflow(*args, **kwargs)` as a child run on the same engine and return
        its handle once it is started (Temporal's `workflow.start_child_workflow`).

        The start is a journaled step whose index is taken when this is called (so
        `ctx.gather` of children numbers them by position); a replay never starts a child
        twice. `id` defaults to `"<parent id>/child-<step>"`. `parent_close_policy` says
        what happens to the child if it is still open when this run ends: "terminate"
        (the default, as on Temporal), "request_cancel" or "abandon". A child id already
        in use raises ChildWorkflowError (status ALREADY_STARTED).

        Not abstract, so a backend written before it existed keeps working; such a
        backend refuses it with this error.
        """
        raise ConfigError(
            f"ctx.start_child is not supported by {type(self).__name__} (workflow "
            f"{self.workflow_id!r}); use a backend that provides it (sql, langgraph, temporal)"
        )

    def execute_child(
        self,
        workflow: Any,
        *args: Any,
        id: str | None = None,
        parent_close_policy: str = "terminate",
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """Start a child (see `start_child`) and wait for its result, decoded to its
        declared return type; ChildWorkflowError when it fails or is cancelled."""
        started = self.start_child(
            workflow, *args, id=id, parent_close_policy=parent_close_policy, **kwargs
        )

        async def child_result() -> Any:
            return await (await started).result()

        return child_result()

    def continue_as_new(self, *args: Any, **kwargs: Any) -> NoReturn:
        """End this run's history and go on as a new run of the same workflow and id, called
        with `args`/`kwargs` (Temporal's `workflow.continue_as_new`).

        A long loop keeps its history (and so its replay time and memory) bounded by
        continuing every N iterations. `client.result(id)` gives the last run's result;
        signals not yet taken are handed to the next run. It raises `ContinueAsNew`, which
        a backend turns into its own continuation; let it propagate.
        """
        raise ContinueAsNew(args, kwargs)


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
