"""A graph run read from the client (`get_state`, `stream`, `resume`) gives, on every
engine, what LangGraph's own `get_state(config).values` and `astream(...)` give for the same
graph run with an InMemorySaver in the test.

The graphs are our own, small, module-level (Temporal's sandbox finds workflows there).
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, Literal

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint, task
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

import bridge
from adapters.langgraph import from_entrypoint, from_state_graph, get_state, resume, stream
from adapters.langgraph._graph import INTERRUPT


# -- a loop with a conditional edge and a Command: one node per superstep ------------------
class Tally(TypedDict, total=False):
    n: int
    trail: Annotated[list[str], operator.add]
    verdict: str


def _step(state: Tally) -> Tally:
    n = state.get("n", 0) + 1
    return {"n": n, "trail": [f"step{n}"]}


def _again(state: Tally) -> Literal["step", "judge"]:
    return "step" if state["n"] < 3 else "judge"


def _judge(state: Tally) -> Command[Literal["done"]]:
    return Command(goto="done", update={"trail": ["judge"]})


def _done(state: Tally) -> Tally:
    return {"verdict": f"{state['n']} steps"}


def _tally() -> StateGraph[Any]:
    g = StateGraph(Tally)
    g.add_node("step", _step)
    g.add_node("judge", _judge)
    g.add_node("done", _done)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", _again)
    return g


TALLY = from_state_graph(_tally(), name="lgc_tally")


# -- parallel branches in one superstep -----------------------------------------------------
class Fan(TypedDict, total=False):
    seed: int
    parts: Annotated[list[str], operator.add]
    joined: str


def _branch(label: str) -> Any:
    def run(state: Fan) -> Fan:
        return {"parts": [f"{label}{state['seed']}"]}

    return run


def _fan() -> StateGraph[Any]:
    g = StateGraph(Fan)
    for label in ("a", "b"):
        g.add_node(label, _branch(label))
        g.add_edge(START, label)
    g.add_node("join", lambda s: {"joined": "+".join(sorted(s["parts"]))})
    g.add_edge(["a", "b"], "join")
    return g


FAN = from_state_graph(_fan(), name="lgc_fan")


# -- interrupt(): parked, read, resumed -----------------------------------------------------
class Review(TypedDict, total=False):
    text: str
    verdict: str
    log: Annotated[list[str], operator.add]


def _draft(state: Review) -> Review:
    return {"text": state["text"].upper(), "log": ["draft"]}


def _approve(state: Review) -> Review:
    answer = interrupt(f"publish {state['text']}?")
    return {"verdict": answer, "log": [f"approve:{answer}"]}


def _review() -> StateGraph[Any]:
    g = StateGraph(Review)
    g.add_sequence([("draft", _draft), ("approve", _approve)])
    g.add_edge(START, "draft")
    return g


REVIEW = from_state_graph(_review(), name="lgc_review")


@task
async def _halve(x: int) -> float:
    await asyncio.sleep(0.01 * x)
    return x / 2


@entrypoint()
async def _halver(xs: list[int]) -> list[float]:
    return list(await asyncio.gather(*[_halve(x) for x in xs]))


HALVER = from_entrypoint(_halver, name="lgc_halver")

ALL = [TALLY, FAN, REVIEW, HALVER]


async def _theirs(builder: StateGraph[Any], start: Any, mode: str) -> tuple[list[Any], Any]:
    """LangGraph's own chunks for `mode` and its `get_state(config).values` afterwards."""
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    chunks = [c async for c in graph.astream(start, config, stream_mode=mode)]
    return chunks, (await graph.aget_state(config)).values


async def _ours(client: bridge.Client, wf: Any, start: Any, id: str, mode: str) -> list[Any]:
    async with client.worker(ALL):
        await client.execute(wf, start, id=id, timeout=60)
        return [c async for c in stream(client, id, stream_mode=mode)]


async def test_stream_updates_as_langgraph_streams_them(client: bridge.Client) -> None:
    theirs, _ = await _theirs(_tally(), {"n": 0}, "updates")
    ours = await _ours(client, TALLY, {"n": 0}, "lgc-tally-updates", "updates")
    assert ours == theirs
    assert [next(iter(c)) for c in ours] == ["step", "step", "step", "judge", "done"]


async def test_stream_values_as_langgraph_streams_them(client: bridge.Client) -> None:
    theirs, _ = await _theirs(_tally(), {"n": 0}, "values")
    ours = await _ours(client, TALLY, {"n": 0}, "lgc-tally-values", "values")
    assert ours == theirs
    assert ours[0] == {"n": 0, "trail": []} and ours[-1]["verdict"] == "3 steps"


async def test_parallel_updates_and_values(client: bridge.Client) -> None:
    """Nodes of one superstep: the same chunks (their order within the superstep is the
    order they finished in, LangGraph's as ours)."""
    theirs, _ = await _theirs(_fan(), {"seed": 4}, "updates")
    ours = await _ours(client, FAN, {"seed": 4}, "lgc-fan-updates", "updates")
    assert sorted(map(repr, ours)) == sorted(map(repr, theirs))
    assert ours[-1] == theirs[-1] == {"join": {"joined": "a4+b4"}}
    theirs_values, _ = await _theirs(_fan(), {"seed": 4}, "values")
    async with client.worker(ALL):
        ours_values = [c async for c in stream(client, "lgc-fan-updates", stream_mode="values")]
    assert ours_values == theirs_values


async def test_get_state_of_a_finished_run(client: bridge.Client) -> None:
    _, theirs = await _theirs(_tally(), {"n": 0}, "updates")
    async with client.worker(ALL):
        await client.execute(TALLY, {"n": 0}, id="lgc-tally-state", timeout=60)
        ours = await get_state(client, "lgc-tally-state")
    assert ours == theirs
    assert ours["trail"] == ["step1", "step2", "step3", "judge"]


async def test_a_parked_run_streamed_read_and_resumed(client: bridge.Client) -> None:
    graph = _review().compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    theirs = [c async for c in graph.astream({"text": "hi"}, config, stream_mode="updates")]
    theirs_parked = (await graph.aget_state(config)).values
    theirs += [c async for c in graph.astream(Command(resume="yes"), config, stream_mode="updates")]
    theirs_final = (await graph.aget_state(config)).values

    async with client.worker(ALL):
        await client.start(REVIEW, {"text": "hi"}, id="lgc-review")
        chunks: list[Any] = []

        async def read() -> None:
            async for chunk in stream(client, "lgc-review", stream_mode="updates", poll=0.05):
                chunks.append(chunk)

        reader = asyncio.create_task(read())
        for _ in range(600):  # parked: waiting for the resume signal
            if (await client.describe("lgc-review")).waiting_for:
                break
            await asyncio.sleep(0.05)
        ours_parked = await get_state(client, "lgc-review")
        await resume(client, "lgc-review", "yes")
        await asyncio.wait_for(reader, 60)
        ours_final = await get_state(client, "lgc-review")
        assert (await client.result("lgc-review", timeout=60)) == theirs_final

    assert ours_parked == theirs_parked == {"text": "HI", "log": ["draft"]}
    assert ours_final == theirs_final
    assert chunks == [c for c in theirs if INTERRUPT not in c]
    assert chunks == [
        {"draft": {"text": "HI", "log": ["draft"]}},
        {"approve": theirs[-1]["approve"]},
    ]


async def test_an_entrypoints_updates_have_a_chunk_per_task(client: bridge.Client) -> None:
    """The functional API streams `{task: result}` as each task ends, then the entrypoint's
    `{entrypoint: result}` (tasks in the order they finished, LangGraph's as ours)."""
    theirs = [c async for c in _halver.astream([3, 1, 2], stream_mode="updates")]
    async with client.worker(ALL):
        await client.execute(HALVER, [3, 1, 2], id="lgc-halver-updates", timeout=60)
        ours = [c async for c in stream(client, "lgc-halver-updates")]
    assert sorted(map(repr, ours)) == sorted(map(repr, theirs))
    assert ours[-1] == theirs[-1] == {"_halver": [1.5, 0.5, 1.0]}
