"""A LangGraph functional-API `@entrypoint` as a neutral bridge workflow.

The entrypoint function is orchestration code: it runs in the workflow, under LangGraph's
own Pregel loop (so `previous`, `entrypoint.final`, `Runtime` injection and the output are
LangGraph's), and every `@task` it calls is a journaled step, `"<name>.<task>"`, whose
result is recorded once and replayed after a crash. That is the workflow/activity split
of any bridge workflow, so the entrypoint must be deterministic.

LangGraph's runner gives each task call its own `CONFIG_KEY_CALL`; the workflow's copy of
the entrypoint node runs the user's function with a config whose `CONFIG_KEY_CALL` starts
the task's journaled step instead (its step index taken at the call, so tasks started
together are numbered in call order, the same on replay).

A synchronous entrypoint (`def`, calling `task(...).result()`, as LangGraph's docs write
it) cannot block the workflow's event loop on a step, and Temporal's workflow sandbox has
no threads to block in. So it runs inline, and a task's future answers `.result()` from
the journal when the step has finished; otherwise it raises a private `_Pending`, which
stops the function. The workflow then awaits that step and runs the function again from
its start, the task calls made before answered by call index from the steps already
started (LangGraph replays an entrypoint's tasks the same way). Every task called before
the first unfinished `.result()` has been started by then, so futures started together
run in parallel; and steps are started in call order only, so the journal's order is the
same on replay whatever finished first.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import set_config_context
from langgraph._internal._constants import CONF, CONFIG_KEY_CALL
from langgraph._internal._runnable import RunnableCallable
from langgraph.constants import START
from langgraph.func import _TaskFunction
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.pregel._call import SyncAsyncFuture
from langgraph.types import RetryPolicy as LangGraphRetryPolicy

from adapters.langgraph._codec import GraphCodec, schema_types
from adapters.langgraph._graph import after_failure, bridge_retry, caller_module, graph_workflow
from bridge.activity import ActivityDefinition, activity
from bridge.errors import ConfigError, NonDeterminismError, OutsideWorkflowError
from bridge.workflow import Context, WorkflowDefinition, current_context

__all__ = ["from_entrypoint"]


def from_entrypoint(
    entrypoint: Pregel,
    *,
    name: str,
    tasks: Sequence[_TaskFunction[..., Any]] = (),
    recursion_limit: int | None = None,
) -> WorkflowDefinition[..., Any]:
    """A LangGraph `@entrypoint` function as the bridge workflow `name`.

    Each `@task` the entrypoint calls is the journaled activity `"<name>.<task name>"`,
    with the task's LangGraph retry policy (run once without one). Tasks defined at module
    level of the entrypoint's module (or in its closure) are found; pass others in
    `tasks`. The workflow takes the entrypoint's input (and `context=` for a
    `context_schema`) and returns what `entrypoint.ainvoke` returns. The function may be
    `async def` (awaiting its tasks) or a plain `def` (calling `.result()` on them, run
    again from its start while a result is pending: keep it free of side effects outside
    its tasks). Bind the result to a module-level name (Temporal's sandbox finds it there).
    """
    if isinstance(entrypoint, CompiledStateGraph) or not isinstance(entrypoint, Pregel):
        raise ConfigError(
            f"from_entrypoint needs a function decorated with langgraph's @entrypoint, got "
            f"{type(entrypoint).__name__}; use from_state_graph for a StateGraph"
        )
    where = f"entrypoint {name!r}"
    if entrypoint.store is not None or entrypoint.cache is not None:
        raise ConfigError(
            f"{where} has a store or a cache, which from_entrypoint does not journal: "
            f"declare the entrypoint without store=/cache="
        )
    node_name, node = next((k, n) for k, n in entrypoint.nodes.items() if k != START)
    bound = node.bound
    sync_func = getattr(bound, "func", None)
    func = sync_func if sync_func is not None else getattr(bound, "afunc", None)
    if not isinstance(bound, RunnableCallable) or func is None:
        raise ConfigError(
            f"{where}: the @entrypoint {node_name!r} is not a function LangGraph's "
            f"@entrypoint made ({type(bound).__name__}); decorate a plain function"
        )
    found = {t.func: t for t in (*_tasks_of(func), *tasks)}
    gc = GraphCodec(
        schema_types([*_hints(func), *(h for t in found.values() for h in _hints(t.func))]),
        where=where,
    )
    steps = {f: _task_activity(name, t, gc) for f, t in found.items()}
    make = _sync_entry if sync_func is not None else _entry
    durable_node = node.copy({"bound": make(bound, steps, gc, where)})
    durable = entrypoint.copy(
        {"nodes": {**entrypoint.nodes, node_name: durable_node}, "checkpointer": None}
    )
    return graph_workflow(
        durable,
        gc,
        name=name,
        recursion_limit=recursion_limit,
        module=caller_module(),
        what="entrypoint",
    )


def _tasks_of(func: Callable[..., Any]) -> list[_TaskFunction[..., Any]]:
    """The @task functions the entrypoint can name: its module's and its closure's."""
    cells = [c.cell_contents for c in (func.__closure__ or ()) if _filled(c)]
    values = [*func.__globals__.values(), *cells]
    return [v for v in values if isinstance(v, _TaskFunction)]


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _hints(func: Callable[..., Any]) -> list[Any]:
    try:
        return list(typing.get_type_hints(func).values())
    except Exception:
        return []


def _task_activity(
    name: str, task: _TaskFunction[..., Any], gc: GraphCodec
) -> ActivityDefinition[..., Any]:
    """The journaled step of one @task: the task's own function on the decoded arguments."""
    fn = task.func
    task_name = getattr(fn, "__name__", type(fn).__name__)
    where = f"entrypoint {name!r}, task {task_name!r}"
    policies: tuple[LangGraphRetryPolicy, ...] = tuple(task.retry_policy or ())
    is_async = inspect.iscoroutinefunction(fn)

    async def step(payload: dict[str, Any]) -> dict[str, Any]:
        args = gc.decode(payload["args"], where=f"{where} arguments")
        kwargs = gc.decode(payload["kwargs"], where=f"{where} arguments")
        try:
            if is_async:
                out = await fn(*args, **kwargs)
            else:
                out = await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            raise after_failure(exc, policies) from exc
        return {"value": gc.encode(out, where=f"{where} result")}

    step.__doc__ = f"Task {task_name!r} of LangGraph entrypoint {name!r}, as a journaled step."
    return activity(name=f"{name}.{task_name}", retry=bridge_retry(policies))(step)


def _entry(
    bound: RunnableCallable,
    steps: dict[Callable[..., Any], ActivityDefinition[..., Any]],
    gc: GraphCodec,
    where: str,
) -> RunnableCallable:
    """The workflow's entrypoint node: the user's function, its task calls journaled."""

    async def run(value: Any, config: RunnableConfig) -> Any:
        ctx = current_context()
        if ctx is None:
            raise OutsideWorkflowError(f"{where} ran outside workflow code")

        def call(func: Callable[..., Any], args_kwargs: Any, **_: Any) -> Awaitable[Any]:
            return _launch(ctx, _step_of(steps, func, where), args_kwargs, gc)

        patched: RunnableConfig = {**config, CONF: {**config.get(CONF, {}), CONFIG_KEY_CALL: call}}
        with set_config_context(patched) as context:
            return await asyncio.create_task(bound.ainvoke(value, patched), context=context)

    return RunnableCallable(None, run, name=bound.name, trace=False)


def _step_of(
    steps: dict[Callable[..., Any], ActivityDefinition[..., Any]],
    func: Callable[..., Any],
    where: str,
) -> ActivityDefinition[..., Any]:
    step = steps.get(func)
    if step is None:
        raise ConfigError(
            f"{where} called {getattr(func, '__name__', func)!r}, which is not one of "
            f"its known @task functions; pass it in from_entrypoint(tasks=[...])"
        )
    return step


def _launch(
    ctx: Context, step: ActivityDefinition[..., Any], args_kwargs: Any, gc: GraphCodec
) -> asyncio.Future[Any]:
    """Start a task's journaled step now (its index is taken at this call, in call order)."""
    args, kwargs = args_kwargs
    payload = {"args": gc.encode(list(args)), "kwargs": gc.encode(dict(kwargs))}
    return asyncio.ensure_future(_decoded(ctx.run(step, payload), gc))


class _Pending(BaseException):
    """A sync entrypoint asked for a task result the journal does not have yet.

    A BaseException, so that the user's `except Exception` does not swallow it: it must
    reach `_sync_entry`, which awaits `waiting` and runs the function again.
    """

    def __init__(self, waiting: asyncio.Future[Any]) -> None:
        super().__init__("a task's result is not known yet")
        self.waiting = waiting


class _JournaledFuture(SyncAsyncFuture[Any]):
    """What a sync entrypoint's `task(...)` returns: `.result()` is the step's journaled
    result when the step has finished, and otherwise stops the function (`_Pending`)."""

    def __init__(self, step: asyncio.Future[Any]) -> None:
        super().__init__()
        self._step = step

    def done(self) -> bool:
        return self._step.done()

    def running(self) -> bool:
        return not self._step.done()

    def result(self, timeout: float | None = None) -> Any:
        if not self._step.done():
            raise _Pending(self._step)
        return self._step.result()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._step.done():
            raise _Pending(self._step)
        return self._step.exception()


def _sync_entry(
    bound: RunnableCallable,
    steps: dict[Callable[..., Any], ActivityDefinition[..., Any]],
    gc: GraphCodec,
    where: str,
) -> RunnableCallable:
    """The workflow's node for a synchronous entrypoint: the user's function run inline,
    again from its start each time it stops on an unfinished task (see the module doc)."""

    async def run(value: Any, config: RunnableConfig) -> Any:
        ctx = current_context()
        if ctx is None:
            raise OutsideWorkflowError(f"{where} ran outside workflow code")
        # The steps started so far, by call index: they outlive each run of the function.
        started: list[tuple[ActivityDefinition[..., Any], asyncio.Future[Any]]] = []
        while True:
            call = _replaying_call(ctx, started, steps, gc, where)
            patched: RunnableConfig = {
                **config,
                CONF: {**config.get(CONF, {}), CONFIG_KEY_CALL: call},
            }
            try:
                with set_config_context(patched) as context:
                    out = context.run(bound.invoke, value, patched)
            except _Pending as pending:
                await _settled(pending.waiting)
                continue
            for _, future in started:  # tasks never asked for: their steps still end
                await _settled(future)
            return out

    return RunnableCallable(None, run, name=bound.name, trace=False)


def _replaying_call(
    ctx: Context,
    started: list[tuple[ActivityDefinition[..., Any], asyncio.Future[Any]]],
    steps: dict[Callable[..., Any], ActivityDefinition[..., Any]],
    gc: GraphCodec,
    where: str,
) -> Callable[..., Any]:
    """The `CONFIG_KEY_CALL` of one run of a sync entrypoint: task call `i` is answered by
    the step started for call `i` in an earlier run, or starts that step now."""
    index = itertools.count()

    def call(func: Callable[..., Any], args_kwargs: Any, **_: Any) -> Any:
        i = next(index)
        step = _step_of(steps, func, where)
        if i < len(started):
            known, future = started[i]
            if known is not step:
                raise NonDeterminismError(
                    f"{where}: task call {i} is {step.name!r} now but was {known.name!r} "
                    f"when the function ran before; a sync entrypoint must call its tasks "
                    f"in the same order each time it runs"
                )
        else:
            future = _launch(ctx, step, args_kwargs, gc)
            started.append((step, future))
        return _JournaledFuture(future)

    return call


async def _settled(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done; its error (if any) is raised where `.result()` asks."""
    with contextlib.suppress(Exception):  # read again by the function's next run
        await future


async def _decoded(pending: Awaitable[dict[str, Any]], gc: GraphCodec) -> Any:
    return gc.decode((await pending)["value"])
