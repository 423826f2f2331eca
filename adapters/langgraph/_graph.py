"""A LangGraph graph as a neutral bridge workflow, run by LangGraph's own Pregel loop.

The workflow runs a copy of the compiled graph in which each node's runnable is replaced by
a journaled call: `ctx.run(<graph>.<node>, input)`, the activity running the ORIGINAL node
in the worker process and returning what it returned (its update dict or `Command`). Every
decision of what runs next (edges, conditional edges, `Send`, `Command.goto`, joins,
reducers, managed values, the recursion limit, pydantic input coercion) is LangGraph's
own, taken in the workflow on values that are identical on replay, because each node's
output comes from the journal. So the semantics are LangGraph's, and durability is the
engine's: a resumed run does not run a finished node again, on sql, langgraph and Temporal.

Routing functions (conditional edges) run in the workflow, as Temporal's own LangGraph
integration does: they must be deterministic functions of the state (LangGraph asks the
same of them for its checkpoints to be meaningful). A node's errors follow LangGraph's
retry rules: run once without a `RetryPolicy`; with one, `retry_on`, `max_attempts` and
the intervals decide, each attempt a journaled attempt of the step. A worker lost while a
node runs is not a node error: that attempt is run again.

A node's `interrupt(value)` ends its step with the value journaled as the step's result,
and the workflow's copy of the node raises LangGraph's `GraphInterrupt` for it, so the
superstep ends interrupted as in LangGraph (its other nodes finish; their writes are
kept). The workflow then waits durably for one signal `RESUME_SIGNAL` per pending
interrupt, in the order of their tasks (`get_state(config).tasks`), and resumes the loop
with `Command(resume={interrupt id: answer})` from the superstep's in-memory checkpoint
(`_MemorySaver`, saved only when a superstep ends interrupted): the interrupted nodes'
steps run again with their answers so far, which `interrupt()` returns, and the finished
nodes do not run again. Every wait and step is taken in a fixed order, so parallel
interrupts replay alike on every engine.

A compiled subgraph used as a node runs in its step with a checkpointer of its own
(`_subgraph.py`), so an interrupt in one of its nodes parks the run the same way; the
subgraph's checkpoint is journaled with the interrupt and the step that runs again with
the answer resumes the subgraph from it with `Command(resume=...)`, as LangGraph does (its
nodes before the interrupt do not run again). Message
ids that `add_messages` would draw at random in the workflow are fixed first (in the
node's step, or from the input), so replays match.

Values cross each step as exact JSON (`_codec.py`): LangChain messages with LangChain's own
serialization, everything else by the types the graph's schemas name. Nothing is pickled.

The run publishes what LangGraph's own stream gives, through two query handlers:
`STATE_QUERY` (the state now, as `get_state(config).values`; the final state once the run
has ended) and `STREAM_QUERY` (LangGraph's "updates" and "values" chunks so far, from an
index), which `adapters.langgraph.get_state` and `stream` read from the client.

Refused before running (`_refuse_unsupported`): a Store, a node cache, static
`interrupt_before/after`, error handlers, `idle_timeout`, state types that cannot be JSON.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import itertools
import sys
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typing_extensions
from langchain_core.messages import convert_to_messages
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import set_config_context
from langgraph._internal._constants import (
    CONF,
    CONFIG_KEY_CHECKPOINT_NS,
    CONFIG_KEY_RUNTIME,
    CONFIG_KEY_SCRATCHPAD,
    CONFIG_KEY_SEND,
    INTERRUPT,
    RESUME,
)
from langgraph._internal._runnable import RunnableCallable
from langgraph._internal._scratchpad import PregelScratchpad
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.constants import START
from langgraph.errors import GraphInterrupt, ParentCommand
from langgraph.graph import StateGraph
from langgraph.graph._branch import BranchSpec
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph.pregel._algo import _interrupt_id
from langgraph.pregel._read import PregelNode
from langgraph.pregel._retry import _should_retry_on
from langgraph.pregel._utils import _is_executor_backed_afunc
from langgraph.runtime import Runtime
from langgraph.types import Command, Interrupt
from langgraph.types import RetryPolicy as LangGraphRetryPolicy
from pydantic import BaseModel

from adapters.langgraph._codec import GraphCodec, schema_types
from adapters.langgraph._subgraph import run_subgraph
from bridge import codec
from bridge.activity import ActivityDefinition, RetryPolicy, activity, activity_info
from bridge.errors import (
    ConfigError,
    OutsideWorkflowError,
    SerializationError,
    non_retryable,
)
from bridge.workflow import Context, WorkflowDefinition, current_context, workflow

__all__ = [
    "RESUME_SIGNAL",
    "STATE_QUERY",
    "STREAM_QUERY",
    "codec_of",
    "from_state_graph",
    "graph_workflow",
]

#: The bridge policy of a node without a LangGraph RetryPolicy. Its own errors are final
#: at once (LangGraph runs such a node once); this only re-runs an attempt whose worker
#: was lost or that timed out.
INFRA_RETRY = RetryPolicy(max_attempts=3)

#: The signal that answers a node's `interrupt(value)`: its payload is what `interrupt`
#: returns when the node runs again (`bridge signal <id> langgraph.resume '"yes"'`).
RESUME_SIGNAL = "langgraph.resume"

#: The query answering a run's current state (LangGraph's `get_state(config).values`),
#: encoded by the graph's codec (`adapters.langgraph.get_state` decodes it).
STATE_QUERY = "langgraph.state"

#: The query answering LangGraph's stream chunks of a run so far: args (mode, start), mode
#: "updates" or "values"; the encoded chunks from index `start` on.
STREAM_QUERY = "langgraph.stream"

#: The workflow-side config key of a per-run dict, where a node keeps what must outlive
#: LangGraph's re-running it after an interrupt (the functional API's task calls).
RUN_MEMO = "__bridge_run_memo"
#: The key in `RUN_MEMO` of the `configurable` values the run was started with (its
#: `config=`), which every node's step gets with its input.
CONFIGURABLE = "configurable"
#: The key in `RUN_MEMO` of the run's list of LangGraph "updates" chunks, for the chunks a
#: node adds itself (the functional API's tasks, which LangGraph's runner would stream).
UPDATES = "updates"

#: Each graph workflow's codec, by workflow name: the client decodes query answers with it.
_CODECS: dict[str, GraphCodec] = {}


def codec_of(workflow_name: str) -> GraphCodec | None:
    """The codec of graph workflow `workflow_name` defined in this process, if any."""
    return _CODECS.get(workflow_name)


def from_state_graph(
    graph: StateGraph[Any] | CompiledStateGraph[Any, Any, Any, Any],
    *,
    name: str,
    recursion_limit: int | None = None,
) -> WorkflowDefinition[..., Any]:
    """A LangGraph StateGraph (or a graph compiled from one) as the bridge workflow `name`.

    The workflow takes the graph's input, then optionally the run's `context` (for a graph
    with a `context_schema`) and LangGraph's `config` (`{"configurable": {...},
    "recursion_limit": n}`: `client.start(wf, input, None, config, id=...)`, what
    `compiled.ainvoke(input, config, context=...)` takes), runs the graph with LangGraph's
    own loop and returns what `compiled.ainvoke` returns; nodes and routing functions see
    the `configurable` values, with the run's id as `thread_id`. Every node is the journaled
    activity `"<name>.<node>"`, so it runs on any backend (sql, langgraph, Temporal) and a
    resumed run does not run a finished node again. `name` is journaled: keep it when the
    graph changes. Bind the result to a module-level name: Temporal's sandbox finds it
    there.

    The user's graph is not changed (a builder is compiled without a checkpointer, and its
    `compiled` flag is left as it was). What the loop cannot journal is refused here,
    before anything runs, naming the construct.
    """
    compiled = _compile(graph)
    _refuse_unsupported(compiled, name)
    gc = GraphCodec(schema_types(_schemas(compiled)), where=f"graph {name!r}")
    message_keys = _message_keys(compiled)
    durable_nodes: dict[str, PregelNode] = {}
    for node_name, node in compiled.nodes.items():
        writers = _inline_branches(node.writers)
        if node_name == START:  # the input's channel writes, not user code
            durable_nodes[node_name] = node.copy({"writers": writers})
            continue
        policies = tuple(node.retry_policy or compiled.retry_policy or ())
        step = _node_activity(
            name, node_name, node.bound, gc, policies, _timeout(node), message_keys
        )
        durable_nodes[node_name] = node.copy(
            {
                "bound": _journaled(step, gc, node_name),
                "writers": writers,
                "retry_policy": None,  # the activity retries, with the node's own policy
                "cache_policy": None,
                "timeout": None,  # the activity's timeout
                "subgraphs": [],  # a subgraph node runs inside its activity
            }
        )
    durable = compiled.copy(
        {"nodes": durable_nodes, "checkpointer": None, "retry_policy": (), "cache_policy": None}
    )
    return graph_workflow(
        durable, gc, name=name, recursion_limit=recursion_limit, module=caller_module()
    )


def graph_workflow(
    durable: Pregel,
    gc: GraphCodec,
    *,
    name: str,
    recursion_limit: int | None,
    module: str,
    what: str = "graph",
) -> WorkflowDefinition[..., Any]:
    """The bridge workflow running `durable` (a graph whose user code is journaled steps)
    with LangGraph's loop; defined as living in `module`, the caller's, so Temporal's
    sandbox (which re-imports workflow modules) finds it there by its module-level name."""
    value_type = gc.annotation()
    message_keys = _message_keys(durable)
    _CODECS[name] = gc

    async def run(
        ctx: Context, state: Any, context: Any = None, config: dict[str, Any] | None = None
    ) -> Any:
        given = _user_config(config, f"{what} {name!r}")
        run_config: RunnableConfig = {}
        limit = given.get("recursion_limit", recursion_limit)
        if limit is not None:
            run_config["recursion_limit"] = limit
        progress = _Progress(durable, gc)
        ctx.set_query_handler(STATE_QUERY, progress.state)
        ctx.set_query_handler(STREAM_QUERY, progress.chunks)
        digest = codec.digest(gc.encode(state, where=f"{what} {name!r} input"))
        state = _with_message_ids(state, message_keys, lambda k, i: _input_id(digest, k, i))
        configurable = dict(given.get("configurable") or {})
        return await progress.run(ctx, state, run_config, context, configurable)

    run.__annotations__ = {
        "ctx": Context,
        "state": value_type,
        "context": value_type,
        "config": dict[str, Any] | None,
        "return": value_type,
    }
    run.__doc__ = f"LangGraph {what} {name!r} as a bridge workflow (adapters.langgraph)."
    run.__module__ = module
    return workflow(name=name)(run)


class _Progress:
    """A run's LangGraph stream, kept for the queries: the "updates" and "values" chunks
    LangGraph itself emits (so `stream` gives what `graph.astream` gives), the last of the
    values being the state `get_state` answers.

    The graph runs as `ainvoke` runs it (`astream` with "updates" and "values", keeping the
    latest values), except that the values read every state channel, as LangGraph's
    `get_state` and `stream(stream_mode="values")` do; the result is then read from them
    for the graph's output channels, as `ainvoke` reads it. The chunks are kept for the
    run's life, in the workflow's memory, each holding references to the state's values
    (as the journal holds each node's input).
    """

    def __init__(self, durable: Pregel, gc: GraphCodec) -> None:
        self.durable = durable
        self.gc = gc
        self.updates: list[Any] = []
        self.values: list[Any] = []

    async def run(
        self,
        ctx: Context,
        state: Any,
        config: RunnableConfig,
        context: Any,
        configurable: dict[str, Any],
    ) -> Any:
        """Run the graph to its end. When a superstep ends interrupted (its nodes' steps
        answered `interrupt`), wait for one resume signal per pending interrupt, in
        LangGraph's order, and resume as LangGraph resumes: `Command(resume={id: answer})`
        from the superstep's checkpoint, the interrupted nodes running again with their
        answers and the finished ones not at all."""
        durable = self.durable.copy({"checkpointer": _MemorySaver()})
        memo = {UPDATES: self.updates, CONFIGURABLE: configurable}
        # the run is the thread: its id is the thread_id nodes and routing functions see
        conf = {**configurable, "thread_id": ctx.workflow_id, RUN_MEMO: memo}
        config = {**config, CONF: conf}
        pending: Any = state
        while True:
            interrupts: list[Interrupt] = []
            async for mode, chunk in durable.astream(
                pending,
                config,
                context=context,
                stream_mode=["updates", "values"],
                output_keys=durable.stream_channels_asis,
                durability="exit",  # one checkpoint, when the superstep ends interrupted
            ):
                if mode == "updates":
                    if isinstance(chunk, dict) and (found := chunk.get(INTERRUPT)) is not None:
                        interrupts.extend(found)
                    else:
                        self.updates.append(chunk)
                elif not (isinstance(chunk, dict) and INTERRUPT in chunk):  # (as "updates")
                    self.values.append(chunk)
            if not interrupts:
                return self._output()
            answers = {}
            for asked in await _in_task_order(durable, config):  # a durable wait for each
                answers[asked.id] = await ctx.wait_for_signal(RESUME_SIGNAL)
            pending = Command(resume=answers)

    def _output(self) -> Any:
        """The run's result read from the last values, as `ainvoke` reads it."""
        if not self.values:
            return None
        latest = self.values[-1]
        out, streamed = self.durable.output_channels, self.durable.stream_channels_asis
        if out == streamed or not isinstance(latest, dict):
            return latest
        if isinstance(out, str):
            return latest.get(out)
        picked = {k: latest[k] for k in out if k in latest}
        return picked or None

    def state(self) -> Any:
        """The query: the state now (after the last superstep), encoded."""
        if self.values:
            now = self.values[-1]
        else:
            now = None if isinstance(self.durable.stream_channels_asis, str) else {}
        return self.gc.encode(now, where=f"{self.gc.where} state")

    def chunks(self, mode: str = "updates", start: int = 0) -> list[Any]:
        """The query: LangGraph's `mode` chunks from index `start` on, encoded."""
        if mode not in ("updates", "values"):
            raise ValueError(f"stream mode {mode!r}: use 'updates' or 'values'")
        kept = self.updates if mode == "updates" else self.values
        return [self.gc.encode(c, where=f"{self.gc.where} {mode}") for c in kept[start:]]


async def _in_task_order(durable: Pregel, config: RunnableConfig) -> list[Interrupt]:
    """The pending interrupts in the order of their tasks in the superstep (LangGraph's
    `get_state(config).tasks`): the `__interrupt__` chunk lists them as the nodes finished,
    which is not the same on every run, nor on every engine."""
    snapshot = await durable.aget_state(config)
    return [asked for task in snapshot.tasks for asked in task.interrupts]


#: The keys of a run's `config=` that a durable run can keep: JSON data, the same on every
#: replay. LangGraph's callbacks, tags and run names are process objects or tracing.
_CONFIG_KEYS = frozenset({"configurable", "recursion_limit"})


def _user_config(config: Any, where: str) -> dict[str, Any]:
    """The run's `config=` (LangGraph's `invoke(input, config)`), checked."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: config must be a dict like LangGraph's, not {config!r}")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: config keys {unknown} cannot be kept by a durable run; give "
            f"{sorted(_CONFIG_KEYS)} (JSON values), and callbacks/tags to the graph itself"
        )
    configurable = config.get("configurable") or {}
    if not isinstance(configurable, dict):
        raise ConfigError(f"{where}: config['configurable'] must be a dict")
    limit = config.get("recursion_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise ConfigError(f"{where}: config['recursion_limit'] must be an int, not {limit!r}")
    return config


def caller_module() -> str:
    """The module calling the public function that calls this (where it binds the result)."""
    return str(sys._getframe(2).f_globals.get("__name__", __name__))


def _compile(graph: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
    if isinstance(graph, CompiledStateGraph):
        return graph
    if isinstance(graph, StateGraph):
        was = graph.compiled
        try:
            return graph.compile()
        finally:
            graph.compiled = was  # compiling does not make the user's builder read-only
    if isinstance(graph, Pregel):
        raise ConfigError(
            f"from_state_graph needs a langgraph StateGraph (or a graph compiled from one); "
            f"{type(graph).__name__} {getattr(graph, 'name', '')!r} is a functional API "
            f"@entrypoint: wrap it with adapters.langgraph.from_entrypoint"
        )
    raise ConfigError(
        f"from_state_graph needs a langgraph StateGraph (or a graph compiled from one), "
        f"got {type(graph).__name__}"
    )


def _schemas(compiled: CompiledStateGraph[Any, Any, Any, Any]) -> list[Any]:
    """Every schema of the graph and of its compiled subgraph nodes (the codec's allow-list)."""
    out: list[Any] = []
    pending: list[Any] = [compiled]
    while pending:
        g = pending.pop()
        builder = getattr(g, "builder", None)
        if not isinstance(builder, StateGraph):
            continue
        out += [builder.state_schema, builder.input_schema, builder.output_schema]
        out += [builder.context_schema, *builder.schemas]
        out += [spec.input_schema for spec in builder.nodes.values()]
        pending += [n.bound for n in g.nodes.values() if isinstance(n.bound, Pregel)]
    return out


def _refuse_unsupported(compiled: CompiledStateGraph[Any, Any, Any, Any], name: str) -> None:
    """Refuse, before the graph runs and naming the construct, what cannot be journaled."""
    where = f"graph {name!r}"
    if compiled.store is not None:
        raise ConfigError(
            f"{where} is compiled with a Store; the Store API is not journaled by "
            f"from_state_graph yet: keep long-term memory in activities the nodes call, or "
            f"compile the graph without store="
        )
    if compiled.cache is not None:
        raise ConfigError(
            f"{where} is compiled with a node cache; from_state_graph journals each node's "
            f"result already: compile the graph without cache="
        )
    if compiled.interrupt_before_nodes or compiled.interrupt_after_nodes:
        raise ConfigError(
            f"{where} is compiled with interrupt_before/interrupt_after, which "
            f"from_state_graph does not support: call langgraph.types.interrupt() inside the "
            f"node instead (the run then waits durably for the signal {RESUME_SIGNAL!r})"
        )
    builder = compiled.builder
    handled = [n for n, node in compiled.nodes.items() if node.error_handler_node]
    handled += [n for n, node in compiled.nodes.items() if node.is_error_handler]
    if handled:
        raise ConfigError(
            f"{where}, node {handled[0]!r} has an error handler, which from_state_graph does "
            f"not support (the handler needs the node's exception object, which a journal "
            f"does not keep): catch the error inside the node and route with Command instead"
        )
    for node_name, node in compiled.nodes.items():
        at = f"{where}, node {node_name!r}"
        if node.timeout is not None and node.timeout.idle_timeout is not None:
            raise ConfigError(
                f"{at} has an idle_timeout, which from_state_graph does not support: use "
                f"run_timeout (the step's timeout)"
            )
        spec = builder.nodes.get(node_name)
        if spec is None:
            continue
        for schema in (builder.state_schema, spec.input_schema):
            for key, tp in _field_types(schema).items():
                if key in builder.managed:  # the loop computes it (RemainingSteps, ...)
                    continue
                reason = _unserializable(tp)
                if reason is not None:
                    raise SerializationError(
                        f"{where}: node {node_name!r} cannot run as a journaled step: its "
                        f"state key {key!r} has type {getattr(tp, '__qualname__', tp)!r}, "
                        f"which cannot be journaled as JSON ({reason}). Keep such objects "
                        f"out of the graph state (create them inside the node), or use JSON "
                        f"types, LangChain messages, dataclasses or pydantic models"
                    )


def _field_types(schema: Any) -> dict[str, Any]:
    """Key -> value type of a TypedDict, dataclass or pydantic schema, without reducers
    (`Annotated`) and TypedDict qualifiers (`NotRequired`, ...)."""
    try:
        hints = typing.get_type_hints(schema, include_extras=True)
    except Exception:
        return {}
    out = {}
    for key, tp in hints.items():
        while typing.get_origin(tp) in _WRAPPERS:
            tp = typing.get_args(tp)[0]
        if not key.startswith("_"):
            out[key] = tp
    return out


_WRAPPERS = (
    Annotated,
    typing_extensions.NotRequired,
    typing_extensions.Required,
    typing_extensions.ReadOnly,
)


def _unserializable(tp: Any) -> str | None:
    """Why values of `tp` cannot be journaled as JSON, or None when they can."""
    try:
        codec.adapter(tp).json_schema(mode="serialization")
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


def _timeout(node: PregelNode) -> float | None:
    return None if node.timeout is None else node.timeout.run_timeout


def bridge_retry(policies: Sequence[LangGraphRetryPolicy]) -> RetryPolicy:
    """The bridge policy of a node: LangGraph's attempts and intervals (the first policy's
    intervals when there are several; jitter has no equivalent)."""
    if not policies:
        return INFRA_RETRY
    first = policies[0]
    return RetryPolicy(
        max_attempts=max(p.max_attempts for p in policies),
        initial_interval=first.initial_interval,
        backoff=max(first.backoff_factor, 1.0),
        max_interval=first.max_interval,
    )


def after_failure(exc: Exception, policies: Sequence[LangGraphRetryPolicy]) -> Exception:
    """What the activity raises for a node error: retried only when LangGraph would."""
    policy = next((p for p in policies if _should_retry_on(p, exc)), None)
    if policy is not None and activity_info().attempt < policy.max_attempts:
        return exc
    return non_retryable(exc)


def _node_activity(
    graph_name: str,
    node_name: str,
    bound: Runnable[Any, Any],
    gc: GraphCodec,
    policies: Sequence[LangGraphRetryPolicy],
    timeout: float | None,
    message_keys: frozenset[str],
) -> ActivityDefinition[..., Any]:
    """The journaled step of one node: the original runnable, on the decoded input."""
    where = f"graph {graph_name!r}, node {node_name!r}"

    async def step(payload: dict[str, Any]) -> dict[str, Any]:
        value = gc.decode(payload["input"], where=f"{where} input")
        runtime = Runtime(context=gc.decode(payload["context"], where=f"{where} context"))
        resume = gc.decode(payload.get("resume", []), where=f"{where} resume values")
        config = step_config(runtime, resume, node_name, payload.get("configurable"))
        try:  # as LangGraph calls a node: in its config's context (a sync node in a thread)
            if isinstance(bound, Pregel):
                saved = payload.get("subgraph")
                out, left_at = await run_subgraph(bound, value, runtime, resume, saved)
                if left_at is not None:  # a node of the subgraph called interrupt()
                    asked = out[INTERRUPT][0].value if out[INTERRUPT] else None
                    return {
                        "interrupt": gc.encode(asked, where=f"{where} interrupt value"),
                        "subgraph": left_at,  # where the next step resumes the subgraph
                    }
            else:
                with set_config_context(config) as context:
                    out = await asyncio.create_task(bound.ainvoke(value, config), context=context)
        except ParentCommand as exc:  # Command(graph=PARENT) from a node of the subgraph
            # is this node's own output in LangGraph (its runner applies it to the parent)
            out = dataclasses.replace(exc.args[0], graph=None)
        except GraphInterrupt as exc:
            interrupts = exc.args[0] if exc.args else ()
            asked = interrupts[0].value if interrupts else None
            return {"interrupt": gc.encode(asked, where=f"{where} interrupt value")}
        except Exception as exc:
            raise after_failure(exc, policies) from exc
        out = _with_message_ids(out, message_keys, lambda k, i: str(uuid.uuid4()))
        return {"value": gc.encode(out, where=f"{where} output")}

    step.__doc__ = f"Node {node_name!r} of LangGraph graph {graph_name!r}, as a journaled step."
    return activity(
        name=f"{graph_name}.{node_name}", retry=bridge_retry(policies), timeout=timeout
    )(step)


def _message_keys(compiled: Pregel) -> frozenset[str]:
    """The state keys whose reducer is LangGraph's `add_messages` (with or without format)."""
    keys = []
    for key, channel in compiled.channels.items():
        op = getattr(channel, "operator", None)
        inner = op.func if isinstance(op, functools.partial) else op
        if op is add_messages or (
            getattr(inner, "__module__", None) == add_messages.__module__
            and getattr(inner, "__name__", None) == "add_messages"
        ):
            keys.append(key)
    return frozenset(keys)


def _with_message_ids(value: Any, keys: frozenset[str], new_id: Callable[[str, int], str]) -> Any:
    """`value` (an input or a node's update) with every message for an `add_messages` key
    made a message with an id. `add_messages` would otherwise draw a random id for each in
    the workflow, and the next step's arguments would differ on replay. A node's messages get
    theirs in its step (journaled with its result); the input's are derived from the input."""
    if not keys:
        return value
    if isinstance(value, Command) and value.update is not None:
        return dataclasses.replace(value, update=_with_message_ids(value.update, keys, new_id))
    if isinstance(value, BaseModel) and keys & set(type(value).model_fields):
        update = {k: _ids(getattr(value, k), k, new_id) for k in keys & set(value.model_fields)}
        return value.model_copy(update=update)
    if isinstance(value, dict) and keys & value.keys():
        return {k: _ids(v, k, new_id) if k in keys else v for k, v in value.items()}
    if isinstance(value, list | tuple) and all(
        isinstance(p, tuple) and len(p) == 2 for p in value
    ):  # Command(update=[(key, value), ...])
        return [(k, _ids(v, k, new_id) if k in keys else v) for k, v in value]
    return value


def _ids(value: Any, key: str, new_id: Callable[[str, int], str]) -> Any:
    if value is None:
        return value
    messages = convert_to_messages(value if isinstance(value, list) else [value])
    return [
        m if m.id is not None else m.model_copy(update={"id": new_id(key, i)})
        for i, m in enumerate(messages)
    ]


def _input_id(digest: str, key: str, index: int) -> str:
    """A message id for the workflow input's message `index` of `key`: the same on replay."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bridge-langgraph:{digest}:{key}:{index}"))


def _inline_branches(writers: Sequence[Runnable]) -> list[Runnable]:
    """`writers` with each conditional edge's sync routing function called inline.

    LangGraph runs a sync routing function in a thread (`run_in_executor`) in an async
    graph; Temporal's workflow event loop has no threads, and a routing function is a
    quick, pure function of the state, so the workflow calls it directly, on every engine.
    """
    out: list[Runnable] = []
    for writer in writers:
        spec = getattr(getattr(writer, "afunc", None), "__self__", None)
        path = getattr(spec, "path", None)
        if (
            isinstance(writer, RunnableCallable)
            and isinstance(spec, BranchSpec)
            and isinstance(path, RunnableCallable)
            and _is_executor_backed_afunc(path.afunc)
        ):
            inline = copy.copy(path)
            inline.afunc = _called_inline(path.func)
            spec = spec._replace(path=inline)
            writer = copy.copy(writer)
            writer.func, writer.afunc = spec._route, spec._aroute
        out.append(writer)
    return out


def _called_inline(func: Any) -> Any:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return call


def step_config(
    runtime: Runtime[Any],
    resume: list[Any],
    node_name: str,
    configurable: dict[str, Any] | None = None,
) -> RunnableConfig:
    """The config a node or task runs with in its step, as LangGraph's runner gives it,
    with the run's own `configurable` values (its `config=`)."""
    return {
        "configurable": {
            **(configurable or {}),
            # the run is the thread: nodes reading config["configurable"]["thread_id"]
            # see the workflow id (kept out of the step's arguments: input only)
            "thread_id": activity_info().workflow_id,
            CONFIG_KEY_RUNTIME: runtime,
            # what interrupt() reads: the resume values received so far, in order
            CONFIG_KEY_SCRATCHPAD: _scratchpad(resume),
            CONFIG_KEY_SEND: _drop_writes,
            CONFIG_KEY_CHECKPOINT_NS: "",
        },
        "metadata": {"langgraph_node": node_name},
    }


def _scratchpad(resume: list[Any]) -> PregelScratchpad:
    """The scratchpad `interrupt()` reads in a node's step: the resume values so far (the
    node runs again from its start on each, as LangGraph re-runs an interrupted node)."""
    counters = [itertools.count(), itertools.count(), itertools.count()]
    return PregelScratchpad(
        step=0,
        stop=0,
        call_counter=lambda: next(counters[0]),
        interrupt_counter=lambda: next(counters[1]),
        get_null_resume=lambda consume=False: None,
        resume=list(resume),
        subgraph_counter=lambda: next(counters[2]),
    )


class _Copied:
    """A serializer that keeps a deep copy of the object: the workflow's checkpoints live
    in its memory for the run's life only (rebuilt on replay from the journal), so nothing
    is turned into bytes and LangGraph's own serializer (msgpack, with its type allow-list)
    stays out of the workflow. A copy, not the object: LangGraph's loop goes on changing
    its checkpoint after saving it. Only an interrupted superstep is saved
    (`durability="exit"`), so the copies are few."""

    def dumps_typed(self, obj: Any) -> tuple[str, Any]:
        return ("copy", copy.deepcopy(obj))

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        return copy.deepcopy(data[1])


class _MemorySaver(InMemorySaver):
    """LangGraph's in-memory checkpointer, holding copies (`_Copied`): what the workflow's
    loop resumes an interrupted superstep from."""

    def __init__(self) -> None:
        super().__init__(serde=_Copied())  # type: ignore[arg-type]


def _drop_writes(writes: Any) -> None:
    """interrupt() records the resume values as a write; the workflow keeps them itself."""


def _journaled(step: ActivityDefinition[..., Any], gc: GraphCodec, node_name: str) -> Runnable:
    """What the workflow's copy of the graph runs for a node: the node's journaled step."""

    async def call(value: Any, config: RunnableConfig) -> Any:
        ctx = current_context()
        if ctx is None:
            raise OutsideWorkflowError(
                f"node {node_name!r} of a from_state_graph workflow ran outside workflow code"
            )
        conf = config.get(CONF, {})
        runtime = conf.get(CONFIG_KEY_RUNTIME)
        payload = {
            "input": gc.encode(value, where=f"{gc.where}, input of node {node_name!r}"),
            "context": gc.encode(getattr(runtime, "context", None), where=f"{gc.where}, context"),
        }
        if configurable := conf.get(RUN_MEMO, {}).get(CONFIGURABLE):
            payload["configurable"] = configurable  # the run's config=, for the node's code
        scratchpad = conf.get(CONFIG_KEY_SCRATCHPAD)
        resume = list(scratchpad.resume) if scratchpad is not None else []
        ns = conf.get(CONFIG_KEY_CHECKPOINT_NS, "")
        # A subgraph node's checkpoint, from its interrupted step (`_subgraph.py`)
        left_at = conf.get(RUN_MEMO, {}).get(f"subgraph:{ns}")
        if resume:  # run again after an interrupt: with the answers so far, in order
            payload["resume"] = gc.encode(resume, where=f"{gc.where}, answers to {node_name!r}")
            if left_at is not None:
                payload["subgraph"] = left_at
        out = await ctx.run(step, payload)
        if "interrupt" in out:  # interrupt() in the node: the superstep ends interrupted
            if resume:  # kept with the interrupt, as LangGraph's interrupt() keeps them
                conf[CONFIG_KEY_SEND]([(RESUME, resume)])
            if "subgraph" in out and RUN_MEMO in conf:
                conf[RUN_MEMO][f"subgraph:{ns}"] = out["subgraph"]
            asked = gc.decode(out["interrupt"], where=f"{gc.where}, interrupt of {node_name!r}")
            raise GraphInterrupt((Interrupt(value=asked, id=_interrupt_id(ns, len(resume))),))
        return gc.decode(out["value"], where=f"{gc.where}, output of node {node_name!r}")

    return RunnableCallable(None, call, name=node_name, trace=False)
