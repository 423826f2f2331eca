"""An existing LangGraph `StateGraph` as a neutral bridge workflow.

The graph is read, never compiled or changed. The workflow it becomes runs LangGraph's
superstep loop itself: the nodes due in a superstep run together as journaled steps
(`ctx.gather` of one activity per node), their updates are applied with the graph's own
channels (so reducers such as `operator.add` or `add_messages` behave as in LangGraph, and
two writes to a plain key in one superstep fail as they do there), and the next nodes
follow from the edges, the waiting (join) edges and the routing decisions. A node's
conditional edges are evaluated inside its step, on the state with its own update
applied (what LangGraph's branch reads), so the routing decision is journaled with the
node's result and a resumed run never routes differently.

The state crosses each step as JSON through `bridge.codec`, key by key with the types of
the graph's state schema, which is why every node's input must be serializable (checked
when the graph is wrapped, naming the node).
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Hashable, Sequence
from typing import Annotated, Any

from langgraph.channels.base import BaseChannel
from langgraph.constants import END, START
from langgraph.errors import GraphRecursionError, InvalidUpdateError
from langgraph.graph import StateGraph
from langgraph.types import Command, Send

from bridge import codec
from bridge.activity import ActivityDefinition, RetryPolicy, activity
from bridge.errors import ConfigError, SerializationError
from bridge.workflow import Context, WorkflowDefinition, workflow

__all__ = ["from_state_graph"]

#: LangGraph's default recursion limit (supersteps before GraphRecursionError).
DEFAULT_RECURSION_LIMIT = 25


def _field_types(schema: Any) -> dict[str, Any]:
    """Key -> value type of a TypedDict, dataclass or pydantic state schema, without the
    reducer metadata of `Annotated[T, reducer]`."""
    try:
        hints = typing.get_type_hints(schema, include_extras=True)
    except Exception:
        return {}
    return {
        k: typing.get_args(t)[0] if typing.get_origin(t) is Annotated else t
        for k, t in hints.items()
        if not k.startswith("_")
    }


def _unserializable(tp: Any) -> str | None:
    """Why values of `tp` cannot be journaled as JSON, or None when they can."""
    try:
        codec.adapter(tp).json_schema(mode="serialization")
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


class _Graph:
    """What `from_state_graph` read from the StateGraph, with the codec for its state."""

    def __init__(self, graph: StateGraph[Any], name: str) -> None:
        self.name = name
        self.channels: dict[str, BaseChannel] = dict(graph.channels)
        self.types = {k: Any for k in self.channels} | {
            k: t for k, t in _field_types(graph.state_schema).items() if k in self.channels
        }
        self.output_keys = [
            k for k in _field_types(graph.output_schema) if k in self.channels
        ] or list(self.channels)
        self.edges: dict[str, list[str]] = {}
        for start, end in sorted(graph.edges):
            self.edges.setdefault(start, []).append(end)
        self.joins = [(frozenset(starts), end) for starts, end in sorted(graph.waiting_edges)]
        self.branches = {source: list(specs.values()) for source, specs in graph.branches.items()}

    def encode(self, values: dict[str, Any], *, where: str) -> dict[str, Any]:
        return {
            k: codec.to_jsonable(v, self.types.get(k, Any), where=f"{where}, state key {k!r}")
            for k, v in values.items()
        }

    def decode(self, data: dict[str, Any], *, where: str) -> dict[str, Any]:
        return {
            k: codec.from_jsonable(v, self.types.get(k, Any), where=f"{where}, state key {k!r}")
            for k, v in data.items()
        }

    def apply(
        self, values: dict[str, Any], updates: Sequence[dict[str, Any]], *, where: str
    ) -> dict[str, Any]:
        """`values` after one superstep's `updates`, through the graph's own channels."""
        by_key: dict[str, list[Any]] = {}
        for update in updates:
            for k, v in update.items():
                if k not in self.channels:
                    raise InvalidUpdateError(
                        f"{where} wrote the key {k!r}, which the graph's state does not have"
                    )
                by_key.setdefault(k, []).append(v)
        out = dict(values)
        for k, vs in by_key.items():
            template = self.channels[k]
            # A deep copy for an empty channel: the graph's own channel object (and the
            # initial value some reducers start from) must not be touched.
            channel = (
                template.from_checkpoint(values[k]) if k in values else copy.deepcopy(template)
            )
            channel.update(vs)
            if channel.is_available():
                out[k] = channel.get()
        return out

    async def route(self, source: str, values: dict[str, Any]) -> list[str]:
        """The nodes `source`'s conditional edges choose on `values`."""
        chosen: list[str] = []
        for branch in self.branches.get(source, []):
            result = await branch.path.ainvoke(values)
            items: list[Hashable] = list(result) if isinstance(result, list) else [result]
            for item in items:
                if isinstance(item, Send):
                    raise ConfigError(
                        f"graph {self.name!r}: a conditional edge from {source!r} returned "
                        f"Send, which from_state_graph does not support; route by node name"
                    )
                chosen.append(str(branch.ends[item] if branch.ends else item))
        return chosen


def _split(out: Any, *, where: str) -> tuple[dict[str, Any], list[str]]:
    """A node's return value as (state update, nodes it sends control to)."""
    if out is None:
        return {}, []
    if isinstance(out, dict):
        return dict(out), []
    if isinstance(out, Command):
        if out.graph is not None:
            raise ConfigError(f"{where} returned a Command for another graph; not supported")
        update = dict(out._update_as_tuples()) if out.update is not None else {}
        goto = out.goto if isinstance(out.goto, list | tuple) else [out.goto] if out.goto else []
        if any(isinstance(g, Send) for g in goto):
            raise ConfigError(f"{where} returned Command(goto=Send(...)); not supported")
        return update, [str(g) for g in goto]
    raise InvalidUpdateError(f"{where} returned {type(out).__name__}; expected a dict or None")


def _node_activity(
    g: _Graph, node: str, spec: Any, retry: RetryPolicy
) -> ActivityDefinition[..., Any]:
    """The journaled step of `node`: run it, then its routing, on the JSON state."""
    where = f"graph {g.name!r}, node {node!r}"
    input_keys = [k for k in _field_types(spec.input_schema) if k in g.channels] or list(g.channels)

    async def step(state: dict[str, Any]) -> dict[str, Any]:
        values = g.decode(state, where=where)
        view = {k: values[k] for k in input_keys if k in values}
        update, goto = _split(await spec.runnable.ainvoke(view), where=where)
        after = g.apply(values, [update], where=where)
        goto += await g.route(node, after)
        return {"update": g.encode(update, where=where), "goto": goto}

    step.__doc__ = f"Node {node!r} of LangGraph graph {g.name!r}, as a journaled step."
    return activity(name=f"{g.name}.{node}", retry=retry)(step)


def _check_nodes(g: _Graph, graph: StateGraph[Any]) -> None:
    """Refuse, naming the node, what cannot run as a journaled step."""
    if graph.managed:
        raise ConfigError(
            f"graph {g.name!r} uses managed values ({', '.join(graph.managed)}), which "
            f"from_state_graph does not support"
        )
    for node, spec in graph.nodes.items():
        if spec.defer or spec.is_error_handler or spec.error_handler_node:
            raise ConfigError(
                f"graph {g.name!r}, node {node!r}: deferred nodes and error handlers are "
                f"not supported by from_state_graph"
            )
        types = {**_field_types(graph.state_schema), **_field_types(spec.input_schema)}
        for key, tp in types.items():
            reason = _unserializable(tp)
            if reason is not None:
                raise SerializationError(
                    f"graph {g.name!r}: node {node!r} cannot run as a journaled step: its "
                    f"state key {key!r} has type {getattr(tp, '__qualname__', tp)!r}, which "
                    f"bridge.codec cannot serialize as JSON ({reason}). Keep such objects "
                    f"out of the graph state (create them inside the node), or use JSON "
                    f"types, dataclasses or pydantic models"
                )


def _retry(spec: Any, default: RetryPolicy) -> RetryPolicy:
    """A node's LangGraph RetryPolicy in bridge terms (its `retry_on` has no equivalent:
    bridge retries every error but those the policy lists as non-retryable)."""
    policy = spec.retry_policy
    if isinstance(policy, Sequence):
        policy = policy[0] if policy else None
    if policy is None:
        return default
    return RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_interval=policy.initial_interval,
        backoff=policy.backoff_factor,
        max_interval=policy.max_interval,
    )


def from_state_graph(
    graph: StateGraph[Any],
    *,
    name: str,
    retry: RetryPolicy | None = None,
    recursion_limit: int = DEFAULT_RECURSION_LIMIT,
) -> WorkflowDefinition[..., dict[str, Any]]:
    """Wrap a LangGraph StateGraph (nodes, edges, conditional edges) as a bridge workflow.

    Every node becomes the journaled activity `"<name>.<node>"`, so the workflow runs on
    any backend (sql, Temporal, LangGraph) and a run resumed after a crash does not run a
    finished node again. `name` is the journaled workflow name: keep it when the graph
    changes. `retry` applies to nodes without a LangGraph retry policy of their own. The
    workflow takes the graph's input (a dict) and returns its output state.

    The graph object is only read: it is not compiled and can still be used as usual.
    Not supported (refused here, or when the node does it): Send, deferred nodes, error
    handlers, managed values, and commands aimed at a parent graph.
    """
    if not isinstance(graph, StateGraph):
        builder = getattr(graph, "builder", None)
        if not isinstance(builder, StateGraph):
            raise ConfigError(
                f"from_state_graph needs a langgraph StateGraph (or a graph compiled from "
                f"one), got {type(graph).__name__}"
            )
        graph = builder
    g = _Graph(graph, name)
    _check_nodes(g, graph)
    default_retry = retry or RetryPolicy()
    steps = {
        node: _node_activity(g, node, spec, _retry(spec, default_retry))
        for node, spec in graph.nodes.items()
    }
    start_router = (
        activity(name=f"{name}.{START}", retry=default_retry)(_start_router(g))
        if g.branches.get(START)
        else None
    )

    async def run(ctx: Context, state: dict[str, Any]) -> dict[str, Any]:
        where = f"graph {name!r}"
        values = g.apply({}, [g.decode(state, where=f"{where} input")], where=f"{where} input")
        frontier = list(g.edges.get(START, []))
        if start_router is not None:
            frontier += await ctx.run(start_router, g.encode(values, where=where))
        barriers: dict[str, set[str]] = {}
        superstep = 0
        while frontier := sorted(set(frontier) - {END}):
            if superstep == recursion_limit:
                raise GraphRecursionError(
                    f"graph {name!r} ran {recursion_limit} supersteps without reaching END "
                    f"(recursion_limit); next were {frontier}"
                )
            snapshot = g.encode(values, where=where)
            results = await ctx.gather(ctx.run(steps[n], snapshot) for n in frontier)
            updates = [
                g.decode(r["update"], where=f"{where}, node {n!r}")
                for n, r in zip(frontier, results, strict=True)
            ]
            values = g.apply(values, updates, where=f"{where}, superstep {superstep}")
            following: list[str] = []
            for node, result in zip(frontier, results, strict=True):
                following += g.edges.get(node, []) + result["goto"]
                for starts, end in g.joins:
                    if node in starts:
                        seen = barriers.setdefault(end, set())
                        seen.add(node)
                        if seen == starts:
                            following.append(end)
                            seen.clear()
            frontier = following
            superstep += 1
        return g.encode({k: values[k] for k in g.output_keys if k in values}, where=where)

    run.__annotations__ = {"ctx": Context, "state": dict[str, Any], "return": dict[str, Any]}
    run.__doc__ = f"LangGraph graph {name!r} as a bridge workflow (adapters.langgraph)."
    return workflow(name=name)(run)


def _start_router(g: _Graph) -> Any:
    async def route_start(state: dict[str, Any]) -> list[str]:
        return await g.route(START, g.decode(state, where=f"graph {g.name!r} input"))

    route_start.__doc__ = f"The conditional edges from START of graph {g.name!r}."
    return route_start
