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

`interrupt()` in a task ends its step with the value journaled; in the workflow the task's
result raises LangGraph's `GraphInterrupt`, which stops the function. Once every task
started has ended, the run waits for one `RESUME_SIGNAL` per interrupted task, in call
order, starts those tasks again with their answers (which `interrupt()` returns) and runs
the function again, its finished tasks answered from their steps: LangGraph's resume of an
entrypoint. An `interrupt()` in the function itself is LangGraph's loop's to park
(`_graph._Progress`); the task calls are kept for the run, so none runs again after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from langgraph.errors import GraphInterrupt
from langgraph.func import _TaskFunction
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.pregel._algo import _interrupt_id
from langgraph.pregel._call import SyncAsyncFuture
from langgraph.runtime import Runtime
from langgraph.types import Interrupt
from langgraph.types import RetryPolicy as LangGraphRetryPolicy

from adapters.langgraph._codec import GraphCodec, schema_types
from adapters.langgraph._graph import (
    RESUME_SIGNAL,
    RUN_MEMO,
    UPDATES,
    after_failure,
    bridge_retry,
    caller_module,
    graph_workflow,
    step_config,
)
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
    `tasks`. The workflow takes the entrypoint's input (then `context` for a
    `context_schema` and LangGraph's `config`, as `from_state_graph`'s) and returns what
    `entrypoint.ainvoke` returns. The function may be
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
    entry = _entry(bound, steps, gc, where, inline=sync_func is not None)
    durable_node = node.copy({"bound": entry})
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
        resume = gc.decode(payload.get("resume", []), where=f"{where} resume values")
        config = step_config(Runtime(), resume, task_name)
        try:  # in a config's context, as LangGraph runs a task: interrupt() reads it
            with set_config_context(config) as context:
                if is_async:
                    out = await asyncio.create_task(fn(*args, **kwargs), context=context)
                else:
                    out = await asyncio.to_thread(context.run, fn, *args, **kwargs)
        except GraphInterrupt as exc:
            interrupts = exc.args[0] if exc.args else ()
            asked = interrupts[0].value if interrupts else None
            return {"interrupt": gc.encode(asked, where=f"{where} interrupt value")}
        except Exception as exc:
            raise after_failure(exc, policies) from exc
        return {"value": gc.encode(out, where=f"{where} result")}

    step.__doc__ = f"Task {task_name!r} of LangGraph entrypoint {name!r}, as a journaled step."
    return activity(name=f"{name}.{task_name}", retry=bridge_retry(policies))(step)


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


@dataclasses.dataclass
class _Started:
    """A task call the entrypoint made: its step, arguments, answers to its interrupts so
    far, and the journaled step started for it (started again, with the answers, after an
    interrupt)."""

    step: ActivityDefinition[..., Any]
    payload: dict[str, Any]
    future: asyncio.Future[Any]
    resume: list[Any] = dataclasses.field(default_factory=list)


def _launch(
    ctx: Context,
    step: ActivityDefinition[..., Any],
    payload: dict[str, Any],
    gc: GraphCodec,
    updates: list[Any],
) -> asyncio.Future[Any]:
    """Start a task's journaled step now (its index is taken at this call, in call order)."""
    return asyncio.ensure_future(_decoded(ctx.run(step, payload), gc, step, updates))


class _Pending(BaseException):
    """A sync entrypoint asked for a task result the journal does not have yet.

    A BaseException, so that the user's `except Exception` does not swallow it: it must
    reach `_entry`, which awaits `waiting` and runs the function again.
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


def _entry(
    bound: RunnableCallable,
    steps: dict[Callable[..., Any], ActivityDefinition[..., Any]],
    gc: GraphCodec,
    where: str,
    *,
    inline: bool,
) -> RunnableCallable:
    """The workflow's entrypoint node: the user's function with its task calls journaled,
    run again from its start (its earlier task calls answered by call index) each time it
    stops on an unfinished task (`inline`: a sync function, see the module doc) or on a
    task's `interrupt()`. An interrupt waits until every task started has ended, then takes
    one resume signal per interrupted task, in call order, and starts those tasks again
    with their answers, as LangGraph resumes an entrypoint (finished tasks do not run
    again). The task calls are kept for the run (`RUN_MEMO`), so an `interrupt()` in the
    function itself, which LangGraph's loop parks and resumes, does not start them again.
    """

    async def run(value: Any, config: RunnableConfig) -> Any:
        ctx = current_context()
        if ctx is None:
            raise OutsideWorkflowError(f"{where} ran outside workflow code")
        memo = config.get(CONF, {}).get(RUN_MEMO, {})
        started: list[_Started] = memo.setdefault(where, [])
        # LangGraph's "updates" stream: a `{task: result}` chunk per task that ends
        updates: list[Any] = memo.get(UPDATES, [])
        while True:
            call = _replaying_call(ctx, started, steps, gc, where, updates, inline=inline)
            patched: RunnableConfig = {
                **config,
                CONF: {**config.get(CONF, {}), CONFIG_KEY_CALL: call},
            }
            try:
                with set_config_context(patched) as context:
                    if inline:
                        out = context.run(bound.invoke, value, patched)
                    else:
                        out = await asyncio.create_task(
                            bound.ainvoke(value, patched), context=context
                        )
            except _Pending as pending:
                await _settled(pending.waiting)
                continue
            except GraphInterrupt:
                for s in started:
                    await _settled(s.future)
                asked = [s for s in started if _interrupted(s.future)]
                if not asked:  # interrupt() in the function itself: LangGraph's loop parks
                    raise
                for s in asked:  # a durable wait per interrupted task, in call order
                    s.resume.append(await ctx.wait_for_signal(RESUME_SIGNAL))
                for s in asked:
                    payload = {**s.payload, "resume": gc.encode(s.resume, where=where)}
                    s.future = _launch(ctx, s.step, payload, gc, updates)
                continue
            for s in started:  # tasks never asked for: their steps still end
                await _settled(s.future)
            return out

    return RunnableCallable(None, run, name=bound.name, trace=False)


def _interrupted(future: asyncio.Future[Any]) -> bool:
    return future.done() and isinstance(future.exception(), GraphInterrupt)


def _replaying_call(
    ctx: Context,
    started: list[_Started],
    steps: dict[Callable[..., Any], ActivityDefinition[..., Any]],
    gc: GraphCodec,
    where: str,
    updates: list[Any],
    *,
    inline: bool,
) -> Callable[..., Any]:
    """The `CONFIG_KEY_CALL` of one run of the entrypoint: task call `i` is answered by the
    step started for call `i` in an earlier run, or starts that step now."""
    index = itertools.count()

    def call(func: Callable[..., Any], args_kwargs: Any, **_: Any) -> Any:
        i = next(index)
        step = _step_of(steps, func, where)
        if i < len(started):
            known = started[i]
            if known.step is not step:
                raise NonDeterminismError(
                    f"{where}: task call {i} is {step.name!r} now but was "
                    f"{known.step.name!r} when the function ran before; an entrypoint must "
                    f"call its tasks in the same order each time it runs"
                )
        else:
            args, kwargs = args_kwargs
            payload = {"args": gc.encode(list(args)), "kwargs": gc.encode(dict(kwargs))}
            known = _Started(step, payload, _launch(ctx, step, payload, gc, updates))
            started.append(known)
        return _JournaledFuture(known.future) if inline else _shared(known.future)

    return call


def _shared(future: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """What an async entrypoint awaits for a task: the step's outcome, in a future of its
    own, so that the function's cancellation (another task's interrupt) leaves the step be."""
    return asyncio.ensure_future(asyncio.shield(future))


async def _settled(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done; its error (if any) is raised where `.result()` asks."""
    with contextlib.suppress(Exception):  # read again by the function's next run
        await future


async def _decoded(
    pending: Awaitable[dict[str, Any]],
    gc: GraphCodec,
    step: ActivityDefinition[..., Any],
    updates: list[Any],
) -> Any:
    """A task step's value, also kept as LangGraph's `{task: result}` update chunk; raises
    LangGraph's `GraphInterrupt` when the task called interrupt()."""
    out = await pending
    if "interrupt" in out:
        asked = gc.decode(out["interrupt"], where=f"interrupt of task {step.name!r}")
        raise GraphInterrupt((Interrupt(value=asked, id=_interrupt_id(step.name, 0)),))
    value = gc.decode(out["value"])
    updates.append({step.name.rsplit(".", 1)[-1]: value})
    return value
