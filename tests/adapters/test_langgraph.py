"""adapters.langgraph: LangGraph graphs and LangChain tools on any backend."""

from __future__ import annotations

import asyncio
import copy
import operator
import os
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from typing_extensions import TypedDict

import adapters.langgraph
import bridge
from adapters.langgraph import activity_as_langchain_tool, from_state_graph
from tests import graph_wfs, ledger
from tests.conftest import BACKENDS, Workers
from tests.core.test_public_api import _offending, _py_files
from tests.journal.test_crash import wait_for_steps

BOTH = ["sql", "langgraph"]
#: Graph workflows run on Temporal too (issue #16): a module-level from_state_graph(...).
ALL_ENGINES = BACKENDS


def test_adapter_all_is_pinned_and_it_imports_no_backend() -> None:
    assert sorted(adapters.langgraph.__all__) == [
        "RESUME_SIGNAL",
        "activity_as_langchain_tool",
        "from_entrypoint",
        "from_state_graph",
        "get_state",
        "resume",
        "stream",
    ]
    files = _py_files("adapters", "langgraph")
    assert any(p.name == "_graph.py" for p in files)
    assert _offending(files, ("backends",)) == []


# -- the seeds' fetch/transform/report graph ------------------------------------------------
def _pipeline_input(tmp_path: Path, ledger_path: str, gate: str = "") -> dict[str, Any]:
    return {"url": "https://example.com/fruit.csv", "ledger": ledger_path, "gate": gate}


def _expected_state(raw_final: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw_final.items() if k not in ("ledger", "gate")}


@pytest.mark.parametrize("backend_name", ALL_ENGINES)
async def test_pipeline_graph_gives_langgraphs_own_final_state(
    client: bridge.Client, tmp_path: Path, ledger_path: str
) -> None:
    raw = await graph_wfs.builder.compile().ainvoke(
        _pipeline_input(tmp_path, str(tmp_path / "raw-ledger.db"))
    )
    async with client.worker([graph_wfs.pipeline]):
        ours = await client.execute(
            graph_wfs.pipeline, _pipeline_input(tmp_path, ledger_path), id="pipe-1", timeout=30
        )
    assert _expected_state(ours) == _expected_state(raw)
    assert ours["report"] == "3 rows, total 10"
    steps = bridge.history.step_sequence(await client.history("pipe-1"))
    assert steps == ["pipeline.fetch", "pipeline.transform", "pipeline.report"]


@pytest.mark.parametrize("backend_name", ALL_ENGINES)
async def test_pipeline_killed_after_transform_resumes_with_report_only(
    settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    gate = tmp_path / "gate"
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await client.start(
            graph_wfs.pipeline, _pipeline_input(tmp_path, ledger_path, str(gate)), id="pipe-2"
        )
        first = workers.start("tests.graph_wfs")
        await wait_for_steps(client, "pipe-2", 2)  # fetch and transform are journaled
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        gate.touch()
        workers.start("tests.graph_wfs")
        result = await client.result("pipe-2", timeout=60)
    finally:
        workers.close()
        await client.close()
    assert result["log"] == ["fetch", "transform", "report"]
    assert ledger.counts(ledger_path) == {"fetch": 1, "transform": 1, "report": 1}


# -- conditional edges, fan-out, joins, reducers, Command ----------------------------------
class Loop(TypedDict, total=False):
    n: int
    trail: Annotated[list[str], operator.add]
    left: str
    right: str
    done: str


def count(state: Loop) -> Loop:
    n = state.get("n", 0) + 1
    return {"n": n, "trail": [f"count{n}"]}


def again(state: Loop) -> Literal["count", "split"]:
    return "count" if state["n"] < 3 else "split"


def split(state: Loop) -> Loop:
    return {"trail": ["split"]}


async def left(state: Loop) -> Loop:
    return {"left": "L", "trail": ["left"]}


def right(state: Loop) -> Loop:
    return {"right": "R", "trail": ["right"]}


def join(state: Loop) -> Command[Literal["__end__"]]:
    return Command(update={"done": state["left"] + state["right"], "trail": ["join"]}, goto=END)


def _loop_graph() -> StateGraph[Any]:
    g = StateGraph(Loop)
    for name, fn in [("count", count), ("split", split), ("left", left), ("right", right)]:
        g.add_node(name, fn)
    g.add_node("join", join)
    g.add_edge(START, "count")
    g.add_conditional_edges("count", again)
    g.add_edge("split", "left")
    g.add_edge("split", "right")
    g.add_edge(["left", "right"], "join")
    return g


LOOP_GRAPH = _loop_graph()
LOOP = from_state_graph(LOOP_GRAPH, name="loop_graph")


@pytest.mark.parametrize("backend_name", ALL_ENGINES)
async def test_branches_joins_and_reducers_behave_as_in_langgraph(client: bridge.Client) -> None:
    before = (
        dict(LOOP_GRAPH.nodes),
        set(LOOP_GRAPH.edges),
        copy.copy(LOOP_GRAPH.waiting_edges),
        {k: dict(v) for k, v in LOOP_GRAPH.branches.items()},
        LOOP_GRAPH.compiled,
    )
    raw = await _loop_graph().compile().ainvoke({"n": 0})
    async with client.worker([LOOP]):
        ours = await client.execute(LOOP, {"n": 0}, id="loop-1", timeout=30)
    assert ours == raw
    assert ours["trail"] == ["count1", "count2", "count3", "split", "left", "right", "join"]
    after = (
        dict(LOOP_GRAPH.nodes),
        set(LOOP_GRAPH.edges),
        LOOP_GRAPH.waiting_edges,
        {k: dict(v) for k, v in LOOP_GRAPH.branches.items()},
        LOOP_GRAPH.compiled,
    )
    assert after == before  # the user's graph object is untouched


# -- refused graphs -------------------------------------------------------------------------
class Plain(TypedDict, total=False):
    query: str


class Private(TypedDict):
    lock: threading.Lock


def test_a_node_whose_state_cannot_be_serialized_is_refused_by_name() -> None:
    g = StateGraph(Plain)
    g.add_node("ask", lambda s: {"query": "q"})
    g.add_node("locker", lambda s: {}, input_schema=Private)
    g.add_edge(START, "ask")
    g.add_edge("ask", "locker")
    with pytest.raises(bridge.SerializationError, match=r"node 'locker'.*state key 'lock'"):
        from_state_graph(g, name="refused")


def test_a_graph_whose_state_holds_a_connection_names_its_first_node() -> None:
    class State(TypedDict):
        conn: sqlite3.Connection

    g = StateGraph(State)
    g.add_node("open_db", lambda s: {})
    g.add_edge(START, "open_db")
    with pytest.raises(bridge.SerializationError, match="node 'open_db'"):
        from_state_graph(g, name="refused_conn")


def test_something_else_than_a_graph_is_refused() -> None:
    with pytest.raises(bridge.ConfigError, match="needs a langgraph StateGraph"):
        from_state_graph(object(), name="nope")  # type: ignore[arg-type]


# -- an activity as a LangChain tool --------------------------------------------------------
WEATHER_CALLS: list[str] = []


@bridge.activity
async def weather(city: str, unit: str = "C") -> str:
    """The weather in a city."""
    WEATHER_CALLS.append(city)
    return f"sunny, 21 {unit} in {city}"


WEATHER_TOOL = activity_as_langchain_tool(weather)


def _tool_graph() -> Any:
    g = StateGraph(MessagesState)
    g.add_node("tools", ToolNode([WEATHER_TOOL]))
    g.add_edge(START, "tools")
    g.add_edge("tools", END)
    return g.compile()


TOOL_GRAPH = _tool_graph()


@bridge.workflow
async def forecast(ctx: bridge.Context, city: str) -> str:
    """A LangGraph ToolNode run by workflow code; the wait makes the next execution replay."""
    call = {"name": "weather", "args": {"city": city}, "id": "call-1"}
    out = await TOOL_GRAPH.ainvoke({"messages": [AIMessage(content="", tool_calls=[call])]})
    await ctx.wait_for_signal("again")
    return str(out["messages"][-1].content)


async def test_the_tool_calls_the_activity_directly_outside_a_workflow() -> None:
    WEATHER_CALLS.clear()
    assert WEATHER_TOOL.name == "weather"
    assert WEATHER_TOOL.description == "The weather in a city."
    assert set(WEATHER_TOOL.args) == {"city", "unit"}
    assert await WEATHER_TOOL.ainvoke({"city": "Paris"}) == "sunny, 21 C in Paris"
    call = {"name": "weather", "args": {"city": "Oslo", "unit": "F"}, "id": "1"}
    out = await TOOL_GRAPH.ainvoke({"messages": [AIMessage(content="", tool_calls=[call])]})
    assert out["messages"][-1].content == "sunny, 21 F in Oslo"
    assert WEATHER_CALLS == ["Paris", "Oslo"]


@pytest.mark.parametrize("backend_name", BOTH)
async def test_the_tool_is_a_journaled_step_inside_a_workflow(client: bridge.Client) -> None:
    WEATHER_CALLS.clear()
    async with client.worker([forecast]):
        handle = await client.start(forecast, "Lima", id="tool-1")
        for _ in range(500):
            if (await handle.describe()).status is bridge.Status.WAITING:
                break
            await asyncio.sleep(0.02)
        await handle.signal("again")
        assert await handle.result(timeout=20) == "sunny, 21 C in Lima"
    assert WEATHER_CALLS == ["Lima"]  # the replay after the wait took it from the journal
    assert bridge.history.step_sequence(await client.history("tool-1")) == ["weather"]
