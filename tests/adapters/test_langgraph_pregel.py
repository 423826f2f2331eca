"""from_state_graph runs LangGraph's own Pregel loop: each construct, on every engine, gives
what LangGraph itself gives for the same graph (`compile().ainvoke`, run in the test).

The graphs are our own, small, written here. They are module-level so that Temporal's
sandbox, which re-imports workflow modules, finds every workflow by its module-level name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import operator
import os
import signal
import time
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, RetryPolicy, Send, interrupt
from pydantic import BaseModel
from typing_extensions import TypedDict

import bridge
from adapters.langgraph import RESUME_SIGNAL, from_entrypoint, from_state_graph
from adapters.langgraph._codec import GraphCodec, schema_types
from bridge.testing import replay
from tests.conftest import Workers
from tests.journal.test_crash import wait_for_steps


# -- sequence -------------------------------------------------------------------------------
class Doc(TypedDict, total=False):
    text: str
    words: list[str]
    count: int


def _words(state: Doc) -> Doc:
    return {"words": state["text"].split()}


async def _count(state: Doc) -> Doc:
    return {"count": len(state["words"])}


def _sequence() -> StateGraph[Any]:
    g = StateGraph(Doc)
    g.add_sequence([("words", _words), ("count", _count)])
    g.add_edge(START, "words")
    return g


SEQUENCE = from_state_graph(_sequence(), name="lg_sequence")


# -- parallel fan-out / fan-in with a reducer -----------------------------------------------
class Fan(TypedDict, total=False):
    seed: int
    parts: Annotated[list[str], operator.add]
    summary: str


def _start(state: Fan) -> Fan:
    return {"parts": [f"start{state['seed']}"]}


def _branch(label: str) -> Any:
    def run(state: Fan) -> Fan:
        return {"parts": [f"{label}{state['seed']}"]}

    return run


def _gather(state: Fan) -> Fan:
    return {"summary": "+".join(state["parts"])}


def _fan() -> StateGraph[Any]:
    g = StateGraph(Fan)
    g.add_node("start", _start)
    for label in ("a", "b", "c"):
        g.add_node(label, _branch(label))
        g.add_edge("start", label)
    g.add_node("gather", _gather)
    g.add_edge(["a", "b", "c"], "gather")
    g.add_edge(START, "start")
    return g


FAN = from_state_graph(_fan(), name="lg_fan")


# -- conditional edges, a loop, and Command(goto/update) ------------------------------------
class Counter(TypedDict, total=False):
    n: int
    trail: Annotated[list[str], operator.add]
    verdict: str


def _inc(state: Counter) -> Counter:
    return {"n": state.get("n", 0) + 1, "trail": [f"inc{state.get('n', 0) + 1}"]}


def _more(state: Counter) -> Literal["inc", "judge"]:
    return "inc" if state["n"] < 4 else "judge"


def _judge(state: Counter) -> Command[Literal["even", "odd"]]:
    goto = "even" if state["n"] % 2 == 0 else "odd"
    return Command(goto=goto, update={"trail": ["judge"]})


def _even(state: Counter) -> Counter:
    return {"verdict": "even", "trail": ["even"]}


def _odd(state: Counter) -> Counter:
    return {"verdict": "odd", "trail": ["odd"]}


def _branching() -> StateGraph[Any]:
    g = StateGraph(Counter)
    for name, fn in [("inc", _inc), ("judge", _judge), ("even", _even), ("odd", _odd)]:
        g.add_node(name, fn)
    g.add_edge(START, "inc")
    g.add_conditional_edges("inc", _more)
    return g


BRANCHING = from_state_graph(_branching(), name="lg_branching")


# -- Send map-reduce ------------------------------------------------------------------------
class Jobs(TypedDict, total=False):
    topics: list[str]
    drafts: Annotated[list[str], operator.add]
    final: str


class Job(TypedDict):
    topic: str


def _fan_out(state: Jobs) -> list[Send]:
    return [Send("draft", {"topic": t}) for t in state["topics"]]


def _draft(job: Job) -> Jobs:
    return {"drafts": [f"about {job['topic']}"]}


def _reduce(state: Jobs) -> Jobs:
    return {"final": "; ".join(sorted(state["drafts"]))}


def _map_reduce() -> StateGraph[Any]:
    g = StateGraph(Jobs)
    g.add_node("plan", lambda s: {})
    g.add_node("draft", _draft)
    g.add_node("reduce", _reduce)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", _fan_out, ["draft"])
    g.add_edge("draft", "reduce")
    return g


MAP_REDUCE = from_state_graph(_map_reduce(), name="lg_map_reduce")


# -- pydantic state -------------------------------------------------------------------------
class Item(BaseModel):
    name: str
    qty: int


class Basket(BaseModel):
    items: list[Item] = []
    total: int = 0
    checked: bool = False


def _add_item(state: Basket) -> dict[str, Any]:
    assert isinstance(state, Basket)  # LangGraph hands nodes the model, not a dict
    return {"items": [*state.items, Item(name="pear", qty=2)]}


def _sum(state: Basket) -> dict[str, Any]:
    assert all(isinstance(i, Item) for i in state.items)
    return {"total": sum(i.qty for i in state.items), "checked": True}


def _pydantic() -> StateGraph[Any]:
    g = StateGraph(Basket)
    g.add_sequence([("add", _add_item), ("sum", _sum)])
    g.add_edge(START, "add")
    return g


PYDANTIC = from_state_graph(_pydantic(), name="lg_pydantic")


# -- context_schema / Runtime ---------------------------------------------------------------
@dataclasses.dataclass
class Caller:
    user: str
    lang: str = "en"


class Greeting(TypedDict, total=False):
    greeting: str


def _greet(state: Greeting, runtime: Runtime[Caller]) -> Greeting:
    hello = {"en": "hello", "fr": "bonjour"}[runtime.context.lang]
    return {"greeting": f"{hello} {runtime.context.user}"}


def _context() -> StateGraph[Any]:
    g = StateGraph(Greeting, context_schema=Caller)
    g.add_node("greet", _greet)
    g.add_edge(START, "greet")
    return g


CONTEXT = from_state_graph(_context(), name="lg_context")


# -- RetryPolicy: retry_on, max_attempts, and once without a policy -------------------------
ATTEMPTS: dict[str, int] = {}


class Flaky(TypedDict, total=False):
    key: str
    mode: str
    out: str


def _flaky(state: Flaky) -> Flaky:
    n = ATTEMPTS[state["key"]] = ATTEMPTS.get(state["key"], 0) + 1
    if state["mode"] == "transient" and n < 3:
        raise ConnectionError(f"flaky {n}")
    if state["mode"] == "wrong":
        raise ValueError("not retried: retry_on is ConnectionError")
    return {"out": f"ok after {n}"}


def _once(state: Flaky) -> Flaky:
    ATTEMPTS[state["key"]] = ATTEMPTS.get(state["key"], 0) + 1
    raise ConnectionError("no policy: LangGraph runs the node once")


def _retrying() -> StateGraph[Any]:
    g = StateGraph(Flaky)
    policy = RetryPolicy(
        max_attempts=3, initial_interval=0.01, jitter=False, retry_on=ConnectionError
    )
    g.add_node("flaky", _flaky, retry_policy=policy)
    g.add_node("once", _once)
    g.add_edge(START, "flaky")
    g.add_conditional_edges("flaky", lambda s: "once" if s["mode"] == "once" else END)
    return g


RETRYING = from_state_graph(_retrying(), name="lg_retrying")


# -- a compiled subgraph as a node ----------------------------------------------------------
class Outer(TypedDict, total=False):
    topic: str
    notes: Annotated[list[str], operator.add]


class Inner(TypedDict, total=False):
    topic: str
    notes: Annotated[list[str], operator.add]
    scratch: str  # the subgraph's own key: not in the parent's state


def _inner_think(state: Inner) -> Inner:
    return {"scratch": state["topic"].upper()}


def _inner_write(state: Inner) -> Inner:
    return {"notes": [f"inner:{state['scratch']}"]}


def _inner() -> Any:
    g = StateGraph(Inner)
    g.add_sequence([("think", _inner_think), ("write", _inner_write)])
    g.add_edge(START, "think")
    return g.compile()


def _subgraph() -> StateGraph[Any]:
    g = StateGraph(Outer)
    g.add_node("before", lambda s: {"notes": ["before"]})
    g.add_node("sub", _inner())
    g.add_node("after", lambda s: {"notes": [f"after {len(s['notes'])}"]})
    g.add_edge(START, "before")
    g.add_edge("before", "sub")
    g.add_edge("sub", "after")
    return g


SUBGRAPH = from_state_graph(_subgraph(), name="lg_subgraph")


def _handoff() -> StateGraph[Any]:
    """A node of a compiled subgraph hands off to a node of the parent graph with
    `Command(graph=Command.PARENT)`, as LangGraph's multi-agent handoffs do."""
    inner = StateGraph(Inner)
    inner.add_node(
        "triage",
        lambda s: Command(update={"notes": ["triaged"]}, goto="expert", graph=Command.PARENT),
    )
    inner.add_edge(START, "triage")
    g = StateGraph(Outer)
    g.add_node("desk", inner.compile())
    g.add_node("expert", lambda s: {"notes": [f"expert after {s['notes']}"]})
    g.add_edge(START, "desk")
    return g


HANDOFF = from_state_graph(_handoff(), name="lg_handoff")


def _personal(state: Outer, config: RunnableConfig) -> Outer:
    user = config["configurable"]["user_id"]
    return {"notes": [f"for {user}"]}


def _by_tier(state: Outer, config: RunnableConfig) -> str:
    return "premium" if config["configurable"].get("tier") == "gold" else END


def _configured() -> StateGraph[Any]:
    """Nodes and a routing function that read `config["configurable"]`, as LangGraph's
    docs write them (`graph.invoke(input, {"configurable": {"user_id": ...}})`)."""
    g = StateGraph(Outer)
    g.add_node("personal", _personal)
    g.add_node("premium", lambda s: {"notes": ["premium"]})
    g.add_edge(START, "personal")
    g.add_conditional_edges("personal", _by_tier, ["premium", END])
    return g


CONFIGURED = from_state_graph(_configured(), name="lg_configured")


# -- messages, a chat model and a ToolNode --------------------------------------------------
@tool
def forecast(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class ScriptedModel(BaseChatModel):
    """Asks for the forecast tool, then answers with the tool's result: the same answer for
    the same conversation, so LangGraph's run and ours can be compared."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(
                content=f"The forecast says: {last.content}", id=f"ai-{len(messages)}"
            )
        else:
            call = {"name": "forecast", "args": {"city": str(last.content)}, "id": "call-1"}
            reply = AIMessage(content="", tool_calls=[call], id=f"ai-{len(messages)}")
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Any, **kw: Any) -> ScriptedModel:
        return self


MODEL = ScriptedModel()


async def _agent(state: MessagesState) -> dict[str, Any]:
    return {"messages": [await MODEL.ainvoke(state["messages"])]}


def _chat() -> StateGraph[Any]:
    g = StateGraph(MessagesState)
    g.add_node("agent", _agent)
    g.add_node("tools", ToolNode([forecast]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g


CHAT = from_state_graph(_chat(), name="lg_chat")


def _react() -> Any:
    with warnings.catch_warnings():  # deprecated in LangGraph 1.0 (moved to langchain)
        warnings.simplefilter("ignore")
        return create_react_agent(MODEL, [forecast])


REACT = from_state_graph(_react(), name="lg_react")


# -- interrupt(): a durable wait for the resume value ---------------------------------------
class Review(TypedDict, total=False):
    text: str
    verdict: str
    log: Annotated[list[str], operator.add]


def _draft_text(state: Review) -> Review:
    return {"text": state["text"].strip(), "log": ["draft"]}


def _approve(state: Review) -> Review:
    answer = interrupt({"question": f"publish {state['text']!r}?"})
    return {"verdict": answer, "log": [f"approve:{answer}"]}


def _reviewed() -> StateGraph[Any]:
    g = StateGraph(Review)
    g.add_sequence([("draft", _draft_text), ("approve", _approve)])
    g.add_node("publish", lambda s: {"log": ["publish"]})
    g.add_edge(START, "draft")
    g.add_conditional_edges("approve", lambda s: "publish" if s["verdict"] == "yes" else END)
    return g


REVIEW = from_state_graph(_reviewed(), name="lg_review")


INNER_DRAFTS: list[str] = []


def _inner_draft(state: Review) -> Review:
    INNER_DRAFTS.append(state["text"])
    return _draft_text(state)


def _review_in_a_subgraph() -> StateGraph[Any]:
    """The approval inside a compiled subgraph used as a node: its interrupt() parks the
    parent run, and the resume reaches the subgraph's node."""
    inner = StateGraph(Review)
    inner.add_sequence([("draft", _inner_draft), ("approve", _approve)])
    inner.add_edge(START, "draft")
    g = StateGraph(Review)
    g.add_node("intake", lambda s: {"log": ["intake"]})
    g.add_node("review", inner.compile())
    g.add_node("publish", lambda s: {"log": [f"publish:{s['verdict']}"]})
    g.add_edge(START, "intake")
    g.add_edge("intake", "review")
    g.add_edge("review", "publish")
    return g


SUB_REVIEW = from_state_graph(_review_in_a_subgraph(), name="lg_sub_review")


NESTED_DRAFTS: list[str] = []


def _nested_draft(state: Review) -> Review:
    NESTED_DRAFTS.append(state["text"])
    return _draft_text(state)


def _review_two_levels_down() -> StateGraph[Any]:
    """The approval in a subgraph of a subgraph: both resume from their own checkpoints."""
    inner = StateGraph(Review)
    inner.add_sequence([("draft", _nested_draft), ("approve", _approve)])
    inner.add_edge(START, "draft")
    middle = StateGraph(Review)
    middle.add_node("prepare", lambda s: {"log": ["prepare"]})
    middle.add_node("inner", inner.compile())
    middle.add_edge(START, "prepare")
    middle.add_edge("prepare", "inner")
    g = StateGraph(Review)
    g.add_node("middle", middle.compile())
    g.add_node("publish", lambda s: {"log": [f"publish:{s['verdict']}"]})
    g.add_edge(START, "middle")
    g.add_edge("middle", "publish")
    return g


NESTED_REVIEW = from_state_graph(_review_two_levels_down(), name="lg_nested_review")


def _asks(label: str, times: int) -> Any:
    def run(state: Review) -> Review:
        answers = [interrupt({"ask": f"{label}{i}"}) for i in range(times)]
        return {"log": [f"{label}:" + ",".join(answers)]}

    return run


def _parallel_reviews() -> StateGraph[Any]:
    """Two nodes of one superstep both call interrupt() (one of them twice), then a join."""
    g = StateGraph(Review)
    g.add_node("legal", _asks("legal", 1))
    g.add_node("brand", _asks("brand", 2))
    g.add_node("publish", lambda s: {"log": ["publish"]})
    g.add_edge(START, "legal")
    g.add_edge(START, "brand")
    g.add_edge(["legal", "brand"], "publish")
    return g


PARALLEL_REVIEWS = from_state_graph(_parallel_reviews(), name="lg_parallel_reviews")


# -- the functional API: @entrypoint orchestrates, each @task is a journaled step ----------
TASK_CALLS: list[str] = []


@task
async def double(x: int) -> int:
    TASK_CALLS.append(f"double {x}")
    return 2 * x


@task(retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=False))
def describe(values: list[int], runtime_user: str) -> Item:
    TASK_CALLS.append("describe")
    return Item(name=f"{runtime_user}:{'+'.join(map(str, values))}", qty=sum(values))


@entrypoint(context_schema=Caller)
async def doubler(xs: list[int], runtime: Runtime[Caller]) -> dict[str, Any]:
    doubled = await asyncio.gather(*[double(x) for x in xs])  # started together
    item = await describe(list(doubled), runtime.context.user)
    return {"doubled": doubled, "item": item, "lang": runtime.context.lang}


DOUBLER = from_entrypoint(doubler, name="lg_doubler")


# -- a synchronous entrypoint: task(...).result(), futures started together ----------------
SQUARING = {"now": 0, "most": 0}


@task
def square(x: int) -> int:
    TASK_CALLS.append(f"square {x}")
    SQUARING["now"] += 1
    SQUARING["most"] = max(SQUARING["most"], SQUARING["now"])
    time.sleep(0.3)  # long enough for the squares started together to overlap
    SQUARING["now"] -= 1
    return x * x


@task
def total(values: list[int], label: str) -> str:
    TASK_CALLS.append("total")
    return f"{label}={sum(values)}"


@entrypoint(checkpointer=InMemorySaver())
def squarer(xs: list[int]) -> dict[str, Any]:
    futures = [square(x) for x in xs]  # all started before the first .result()
    squares = [f.result() for f in futures]
    try:
        first = square(squares[0]).result()  # a later task on an earlier one's result
    except ValueError:  # the user's own except clauses do not see a pending result
        first = -1
    return {"squares": squares, "summary": total(squares, "sum").result(), "first": first}


SQUARER = from_entrypoint(squarer, name="lg_squarer")


# -- interrupt() in functional-API tasks and in the entrypoint itself -----------------------
@task
def sign_off(part: str) -> str:
    TASK_CALLS.append(f"sign_off {part}")
    return f"{part}:{interrupt({'sign': part})}"


@task
async def prepare(text: str) -> str:
    TASK_CALLS.append("prepare")
    return text.upper()


@entrypoint(checkpointer=InMemorySaver())
async def signed(text: str) -> dict[str, Any]:
    ready = await prepare(text)
    # two tasks started together, both asking; then the function itself asks
    parts = await asyncio.gather(sign_off(f"{ready}-legal"), sign_off(f"{ready}-brand"))
    final = interrupt({"publish": parts})
    return {"parts": parts, "final": final}


SIGNED = from_entrypoint(signed, name="lg_signed")


@entrypoint(checkpointer=InMemorySaver())
def signed_sync(text: str) -> list[str]:
    return [sign_off(text).result(), sign_off(f"{text}2").result()]


SIGNED_SYNC = from_entrypoint(signed_sync, name="lg_signed_sync")


# -- orchestrator-worker: pydantic objects inside a typing_extensions TypedDict state -------
class Section(BaseModel):
    name: str
    words: int


class Report(TypedDict, total=False):
    topic: str
    sections: list[Section]
    written: Annotated[list[str], operator.add]


class SectionJob(TypedDict):
    section: Section


def _plan_sections(state: Report) -> Report:
    return {"sections": [Section(name=f"{state['topic']} {i}", words=10 * i) for i in (1, 2)]}


def _assign(state: Report) -> list[Send]:
    return [Send("write", {"section": s}) for s in state["sections"]]


def _write(job: SectionJob) -> Report:
    return {"written": [f"{job['section'].name}: {job['section'].words} words"]}


def _orchestrator() -> StateGraph[Any]:
    g = StateGraph(Report)
    g.add_node("plan", _plan_sections)
    g.add_node("write", _write)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", _assign, ["write"])
    g.add_edge("write", END)
    return g


ORCHESTRATOR = from_state_graph(_orchestrator(), name="lg_orchestrator")


# -- input and output schemas narrower than the state ---------------------------------------
class AskIn(TypedDict):
    question: str


class AskOut(TypedDict):
    answer: str


class AskState(AskIn, AskOut, total=False):
    notes: str


def _schemas() -> StateGraph[Any]:
    g = StateGraph(AskState, input_schema=AskIn, output_schema=AskOut)
    g.add_node("think", lambda s: {"notes": s["question"][::-1]})
    g.add_node("answer", lambda s: {"answer": f"{s['question']}? {s['notes']}"})
    g.add_edge(START, "think")
    g.add_edge("think", "answer")
    return g


SCHEMAS = from_state_graph(_schemas(), name="lg_schemas")

ALL = [
    NESTED_REVIEW,
    CONFIGURED,
    HANDOFF,
    SUB_REVIEW,
    PARALLEL_REVIEWS,
    SCHEMAS,
    SEQUENCE,
    FAN,
    BRANCHING,
    MAP_REDUCE,
    ORCHESTRATOR,
    PYDANTIC,
    CONTEXT,
    RETRYING,
    SUBGRAPH,
    CHAT,
    REACT,
    REVIEW,
    DOUBLER,
    SQUARER,
    SIGNED,
    SIGNED_SYNC,
]


# -- the comparisons ------------------------------------------------------------------------
def _no_ids(value: Any) -> Any:
    """Message ids LangGraph draws at random (add_messages) are set aside for comparing."""
    if isinstance(value, BaseMessage):
        return value.model_copy(update={"id": None})
    if isinstance(value, dict):
        return {k: _no_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_ids(v) for v in value]
    return value


async def _both(
    client: bridge.Client, wf: Any, builder: StateGraph[Any], *args: Any, id: str
) -> tuple[Any, Any]:
    """(LangGraph's own result, ours) for the same input."""
    context = args[1] if len(args) > 1 else None
    theirs = await builder.compile().ainvoke(args[0], context=context)
    async with client.worker(ALL):
        ours = await client.execute(wf, *args, id=id, timeout=60)
    return theirs, ours


async def test_sequence(client: bridge.Client) -> None:
    theirs, ours = await _both(client, SEQUENCE, _sequence(), {"text": "a b c"}, id="seq")
    assert ours == theirs == {"text": "a b c", "words": ["a", "b", "c"], "count": 3}
    steps = bridge.history.step_sequence(await client.history("seq"))
    assert steps == ["lg_sequence.words", "lg_sequence.count"]


async def test_input_and_output_schemas(client: bridge.Client) -> None:
    """The result is read for the output schema only, as `ainvoke` reads it."""
    theirs, ours = await _both(client, SCHEMAS, _schemas(), {"question": "why"}, id="schemas")
    assert ours == theirs == {"answer": "why? yhw"}


async def test_parallel_fan_out_and_fan_in(client: bridge.Client) -> None:
    theirs, ours = await _both(client, FAN, _fan(), {"seed": 7}, id="fan")
    assert ours == theirs
    assert ours["summary"] == "start7+a7+b7+c7"


async def test_conditional_edges_loop_and_command(client: bridge.Client) -> None:
    theirs, ours = await _both(client, BRANCHING, _branching(), {"n": 0}, id="branching")
    assert ours == theirs
    assert ours["trail"] == ["inc1", "inc2", "inc3", "inc4", "judge", "even"]


async def test_send_map_reduce(client: bridge.Client) -> None:
    topics = {"topics": ["cats", "dogs", "owls"]}
    theirs, ours = await _both(client, MAP_REDUCE, _map_reduce(), topics, id="mapreduce")
    assert ours == theirs
    assert ours["final"] == "about cats; about dogs; about owls"
    steps = bridge.history.step_sequence(await client.history("mapreduce"))
    assert steps.count("lg_map_reduce.draft") == 3


async def test_send_of_pydantic_objects_in_a_typing_extensions_state(
    client: bridge.Client,
) -> None:
    """The objects of a `typing_extensions.TypedDict` state (what LangGraph's docs import)
    are on the codec's allow-list: found by LangGraph's docs orchestrator-worker program."""
    theirs, ours = await _both(client, ORCHESTRATOR, _orchestrator(), {"topic": "owls"}, id="orch")
    assert ours == theirs
    assert sorted(ours["written"]) == ["owls 1: 10 words", "owls 2: 20 words"]


async def test_pydantic_state(client: bridge.Client) -> None:
    start = {"items": [Item(name="fig", qty=1)]}
    theirs, ours = await _both(client, PYDANTIC, _pydantic(), start, id="pydantic")
    assert ours == theirs
    assert ours["total"] == 3 and isinstance(ours["items"][1], Item)


async def test_context_schema_and_runtime(client: bridge.Client) -> None:
    theirs, ours = await _both(
        client, CONTEXT, _context(), {}, Caller(user="ann", lang="fr"), id="ctx"
    )
    assert ours == theirs == {"greeting": "bonjour ann"}


async def test_retry_on_and_max_attempts_as_in_langgraph(client: bridge.Client) -> None:
    ATTEMPTS.clear()
    theirs = await _retrying().compile().ainvoke({"key": "lg", "mode": "transient"})
    async with client.worker(ALL):
        ours = await client.execute(
            RETRYING, {"key": "ours", "mode": "transient"}, id="lg-retry-1", timeout=60
        )
    assert _drop(ours, "key") == _drop(theirs, "key") == {"mode": "transient", "out": "ok after 3"}
    assert ATTEMPTS == {"lg": 3, "ours": 3}


def _drop(state: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in keys}


async def test_retry_on_excludes_an_error_and_no_policy_runs_once(client: bridge.Client) -> None:
    ATTEMPTS.clear()
    graph = _retrying().compile()
    with pytest.raises(ValueError):
        await graph.ainvoke({"key": "lg-wrong", "mode": "wrong"})
    with pytest.raises(ConnectionError):
        await graph.ainvoke({"key": "lg-once", "mode": "once"})
    async with client.worker(ALL):
        with pytest.raises(bridge.WorkflowFailedError, match="ValueError: not retried"):
            await client.execute(RETRYING, {"key": "wrong", "mode": "wrong"}, id="r-2", timeout=60)
        with pytest.raises(bridge.WorkflowFailedError, match="ConnectionError: no policy"):
            await client.execute(RETRYING, {"key": "once", "mode": "once"}, id="r-3", timeout=60)
    # "once" counts flaky's one success and once's one failed attempt
    assert ATTEMPTS == {"lg-wrong": 1, "lg-once": 2, "wrong": 1, "once": 2}


async def test_a_compiled_subgraph_as_a_node(client: bridge.Client) -> None:
    theirs, ours = await _both(client, SUBGRAPH, _subgraph(), {"topic": "tea"}, id="sub")
    assert ours == theirs
    assert ours["notes"] == ["before", "before", "inner:TEA", "after 3"]


async def test_a_subgraph_node_hands_off_to_the_parent_graph(client: bridge.Client) -> None:
    theirs, ours = await _both(client, HANDOFF, _handoff(), {"topic": "t"}, id="handoff")
    assert ours == theirs == {"topic": "t", "notes": ["triaged", "expert after ['triaged']"]}


async def test_the_runs_config_reaches_nodes_and_routing_as_in_langgraph(
    client: bridge.Client,
) -> None:
    config: Any = {"configurable": {"user_id": "u-7", "tier": "gold"}, "recursion_limit": 5}
    theirs = await _configured().compile().ainvoke({"topic": "t"}, config)
    async with client.worker(ALL):
        ours = await client.execute(CONFIGURED, {"topic": "t"}, None, config, id="configured")
    assert ours == theirs == {"topic": "t", "notes": ["for u-7", "premium"]}
    with pytest.raises(bridge.WorkflowFailedError, match="callbacks"):
        async with client.worker(ALL):
            await client.execute(
                CONFIGURED, {"topic": "t"}, None, {"callbacks": []}, id="configured-bad"
            )


async def test_messages_a_chat_model_and_a_tool_node(client: bridge.Client) -> None:
    start = {"messages": [{"role": "user", "content": "Oslo"}]}
    theirs, ours = await _both(client, CHAT, _chat(), start, id="chat")
    assert _no_ids(ours) == _no_ids(theirs)
    kinds = [type(m).__name__ for m in ours["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert ours["messages"][1].tool_calls[0]["args"] == {"city": "Oslo"}
    assert ours["messages"][-1].content == "The forecast says: sunny in Oslo"
    steps = bridge.history.step_sequence(await client.history("chat"))
    assert steps == ["lg_chat.agent", "lg_chat.tools", "lg_chat.agent"]


async def test_create_react_agent(client: bridge.Client) -> None:
    start = {"messages": [{"role": "user", "content": "Lima"}]}
    theirs = await _react().ainvoke(start)
    async with client.worker(ALL):
        ours = await client.execute(REACT, start, id="react", timeout=60)
    assert _no_ids(ours) == _no_ids(theirs)
    assert ours["messages"][-1].content == "The forecast says: sunny in Lima"


async def test_functional_api_entrypoint_and_tasks(client: bridge.Client) -> None:
    who = Caller(user="bo", lang="fr")
    theirs = await doubler.ainvoke([1, 2, 3], context=who)
    TASK_CALLS.clear()
    async with client.worker(ALL):
        ours = await client.execute(DOUBLER, [1, 2, 3], who, id="functional", timeout=60)
    assert ours == theirs
    assert ours["item"] == Item(name="bo:2+4+6", qty=12)
    assert sorted(TASK_CALLS) == ["describe", "double 1", "double 2", "double 3"]
    steps = bridge.history.step_sequence(await client.history("functional"))
    assert steps == ["lg_doubler.double"] * 3 + ["lg_doubler.describe"]


async def test_a_sync_entrypoint_with_parallel_tasks(client: bridge.Client) -> None:
    theirs = squarer.invoke([1, 2, 3], {"configurable": {"thread_id": "sync"}})
    TASK_CALLS.clear()
    SQUARING["most"] = 0
    async with client.worker(ALL):
        ours = await client.execute(SQUARER, [1, 2, 3], id="sync-functional", timeout=60)
    assert SQUARING["most"] >= 2  # the squares started together ran in parallel
    assert ours == theirs == {"squares": [1, 4, 9], "summary": "sum=14", "first": 1}
    # each task ran once, though the function ran again after each unfinished result
    assert sorted(TASK_CALLS) == ["square 1", "square 1", "square 2", "square 3", "total"]
    events = await client.history("sync-functional")
    assert bridge.history.step_sequence(events) == ["lg_squarer.square"] * 4 + ["lg_squarer.total"]


async def test_interrupt_parks_until_the_resume_signal(client: bridge.Client) -> None:
    graph = _reviewed().compile(checkpointer=InMemorySaver())
    thread: RunnableConfig = {"configurable": {"thread_id": "t"}}
    asked = await graph.ainvoke({"text": " post "}, thread)
    theirs = await graph.ainvoke(Command(resume="yes"), thread)
    async with client.worker(ALL):
        handle = await client.start(REVIEW, {"text": " post "}, id="review")
        await wait_for_steps(client, "review", 2, timeout=60)  # draft, approve (interrupted)
        await asyncio.sleep(0.2)
        assert (await handle.describe()).status is not bridge.Status.COMPLETED
        await handle.signal(RESUME_SIGNAL, "yes")
        ours = await handle.result(timeout=60)
    assert ours == theirs
    assert ours["log"] == ["draft", "approve:yes", "publish"]
    steps = bridge.history.step_sequence(await client.history("review"))
    assert [s for s in steps if s.startswith("lg_")] == [
        "lg_review.draft",
        "lg_review.approve",
        "lg_review.approve",
        "lg_review.publish",
    ]
    question = asked["__interrupt__"][0].value
    assert question == {"question": "publish 'post'?"}


async def test_an_interrupt_inside_a_subgraph_parks_the_run(client: bridge.Client) -> None:
    graph = _review_in_a_subgraph().compile(checkpointer=InMemorySaver())
    thread: RunnableConfig = {"configurable": {"thread_id": "t"}}
    asked = await graph.ainvoke({"text": " post "}, thread)
    theirs = await graph.ainvoke(Command(resume="yes"), thread)
    rid = f"sub-review-{uuid.uuid4()}"
    INNER_DRAFTS.clear()
    async with client.worker(ALL):
        handle = await client.start(SUB_REVIEW, {"text": " post "}, id=rid)
        await wait_for_steps(client, rid, 2, timeout=60)  # intake, review (interrupted)
        await asyncio.sleep(0.2)
        assert (await handle.describe()).status is not bridge.Status.COMPLETED
        await handle.signal(RESUME_SIGNAL, "yes")
        ours = await handle.result(timeout=60)
    assert ours == theirs
    assert asked["__interrupt__"][0].value == {"question": "publish 'post'?"}
    # resumed from the subgraph's checkpoint: its node before the interrupt ran once
    assert INNER_DRAFTS == [" post "]


async def test_an_interrupt_two_subgraphs_down_resumes_both_from_their_checkpoints(
    client: bridge.Client,
) -> None:
    graph = _review_two_levels_down().compile(checkpointer=InMemorySaver())
    thread: RunnableConfig = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"text": " post "}, thread)
    theirs = await graph.ainvoke(Command(resume="yes"), thread)
    NESTED_DRAFTS.clear()
    rid = f"nested-review-{uuid.uuid4()}"
    async with client.worker(ALL):
        handle = await client.start(NESTED_REVIEW, {"text": " post "}, id=rid)
        await handle.signal(RESUME_SIGNAL, "yes")
        ours = await handle.result(timeout=60)
    assert ours == theirs
    assert ours["log"][-1] == "publish:yes"
    assert NESTED_DRAFTS == [" post "]  # the innermost node before the interrupt ran once


async def test_parallel_interrupts_are_answered_in_langgraphs_order(
    client: bridge.Client, settings: dict[str, Any], tmp_path: Path
) -> None:
    """Two nodes of one superstep interrupt: each resume answers the next pending interrupt
    in the order of their tasks (LangGraph's `get_state(config).tasks`), and the run ends
    as LangGraph's does when resumed by interrupt id with the same answers."""
    graph = _parallel_reviews().compile(checkpointer=InMemorySaver())
    thread: RunnableConfig = {"configurable": {"thread_id": "t"}}
    out = await graph.ainvoke({"text": "post"}, thread)
    asked: list[Any] = []
    while "__interrupt__" in out:
        pending = [i for t in (await graph.aget_state(thread)).tasks for i in t.interrupts]
        asked += [i.value for i in pending]
        answers = {i.id: f"ok-{i.value['ask']}" for i in pending}
        out = await graph.ainvoke(Command(resume=answers), thread)
    theirs = out
    rid = f"parallel-reviews-{uuid.uuid4()}"
    async with client.worker(ALL):
        handle = await client.start(PARALLEL_REVIEWS, {"text": "post"}, id=rid)
        for value in asked:
            await handle.signal(RESUME_SIGNAL, f"ok-{value['ask']}")
        ours = await handle.result(timeout=60)
    assert ours == theirs
    assert ours["log"] == ["brand:ok-brand0,ok-brand1", "legal:ok-legal0", "publish"]
    # each interrupted node ran again once per answer; the finished one did not run again
    steps = bridge.history.step_sequence(await client.history(rid))
    assert sorted(s for s in steps if s.startswith("lg_")) == [
        "lg_parallel_reviews.brand",
        "lg_parallel_reviews.brand",
        "lg_parallel_reviews.brand",
        "lg_parallel_reviews.legal",
        "lg_parallel_reviews.legal",
        "lg_parallel_reviews.publish",
    ]
    # replaying the finished run's history gives the same calls (no non-determinism)
    path = tmp_path / "parallel-reviews.json"
    await replay.record(client, rid, path)
    await replay.assert_replays(path, PARALLEL_REVIEWS, settings=settings)


async def _langgraph_with_answers(graph: Any, value: Any) -> tuple[Any, list[Any]]:
    """LangGraph's result, every interrupt answered `ok-<n>` by id in its task order; and
    the answers in the order given (what the bridge run is sent, one resume each)."""
    thread: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    out = await graph.ainvoke(value, thread)
    answers: list[Any] = []
    while isinstance(out, dict) and "__interrupt__" in out:
        given = {}
        for i in [i for t in (await graph.aget_state(thread)).tasks for i in t.interrupts]:
            answers.append(f"ok-{len(answers)}")
            given[i.id] = answers[-1]
        out = await graph.ainvoke(Command(resume=given), thread)
    return out, answers


@pytest.mark.parametrize(
    ("wf", "graph", "value", "calls"),
    [
        (
            SIGNED,
            signed,
            "post",
            ["prepare"] + ["sign_off POST-brand"] * 2 + ["sign_off POST-legal"] * 2,
        ),
        (SIGNED_SYNC, signed_sync, "post", ["sign_off post"] * 2 + ["sign_off post2"] * 2),
    ],
    ids=["async", "sync"],
)
async def test_interrupts_in_functional_api_tasks_park_the_run(
    client: bridge.Client,
    settings: dict[str, Any],
    tmp_path: Path,
    wf: Any,
    graph: Any,
    value: Any,
    calls: list[str],
) -> None:
    """interrupt() in a @task parks the run (parallel tasks answered in call order), and
    one in the entrypoint itself too; a finished task does not run again on a resume."""
    theirs, answers = await _langgraph_with_answers(graph, value)
    TASK_CALLS.clear()
    rid = f"{wf.name}-{uuid.uuid4()}"
    async with client.worker(ALL):
        handle = await client.start(wf, value, id=rid)
        for answer in answers:
            await handle.signal(RESUME_SIGNAL, answer)
        ours = await handle.result(timeout=60)
    assert ours == theirs
    if settings["backend"] != "temporal":  # Temporal's activities run in its worker's threads
        assert sorted(TASK_CALLS) == sorted(calls)
    path = tmp_path / "run.json"
    await replay.record(client, rid, path)
    await replay.assert_replays(path, wf, settings=settings)


async def test_a_worker_killed_while_parked_on_interrupt_loses_nothing(
    settings: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL of the worker while the run waits on `interrupt()`: another worker resumes
    it with the answer, no finished node runs again, and the final state is LangGraph's."""
    graph = _reviewed().compile(checkpointer=InMemorySaver())
    thread: RunnableConfig = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"text": " post "}, thread)
    theirs = await graph.ainvoke(Command(resume="yes"), thread)
    rid = f"review-killed-{uuid.uuid4()}"
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await client.start(REVIEW, {"text": " post "}, id=rid)
        first = workers.start("tests.adapters.test_langgraph_pregel")
        await wait_for_steps(client, rid, 2, timeout=60)  # draft, approve (interrupted)
        await asyncio.sleep(0.3)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        workers.start("tests.adapters.test_langgraph_pregel")
        await client.signal(rid, RESUME_SIGNAL, "yes")
        ours = await client.result(rid, timeout=60)
        steps = bridge.history.step_sequence(await client.history(rid))
    finally:
        workers.close()
        await client.close()
    assert ours == theirs
    assert [s for s in steps if s.startswith("lg_")] == [
        "lg_review.draft",
        "lg_review.approve",
        "lg_review.approve",
        "lg_review.publish",
    ]


# -- the codec and the refusals (no engine) -------------------------------------------------
def test_values_round_trip_exactly_without_pickle() -> None:
    gc = GraphCodec(schema_types([Basket, Caller]), where="test")
    value = {
        "messages": [HumanMessage("hi", id="h1"), AIMessage("", tool_calls=[], id="lg-a1")],
        "basket": Basket(items=[Item(name="fig", qty=1)]),
        "caller": Caller(user="ann"),
        "pair": (1, "two"),
        "ints": {1: "one"},
        "cmd": Command(goto=[Send("x", {"k": 1})], update={"a": 1}),
        "__lg__": "a user key that looks like a tag",
    }
    data = gc.encode(value)
    assert bridge.codec.loads(bridge.codec.dumps(data)) == data  # plain JSON
    assert gc.decode(data) == value


def test_an_object_whose_type_no_schema_names_is_refused() -> None:
    gc = GraphCodec(schema_types([Basket]), where="graph 'g'")
    with pytest.raises(bridge.SerializationError, match=r"graph 'g'.*Caller"):
        gc.encode({"who": Caller(user="ann")})


def _one_node(**kw: Any) -> StateGraph[Any]:
    g = StateGraph(Doc)
    g.add_node("only", _words, **kw)
    g.add_edge(START, "only")
    return g


@pytest.mark.parametrize(
    ("compile_kw", "match"),
    [
        (lambda: {"interrupt_before": ["only"]}, "interrupt_before/interrupt_after"),
        (lambda: {"store": InMemoryStore()}, "Store API is not journaled"),
        (lambda: {"cache": InMemoryCache()}, "node cache"),
    ],
)
def test_what_the_loop_cannot_journal_is_refused_before_running(
    compile_kw: Any, match: str
) -> None:
    with pytest.raises(bridge.ConfigError, match=match):
        from_state_graph(_one_node().compile(**compile_kw()), name="refused_compile")


def test_an_error_handler_is_refused_by_node() -> None:
    g = _one_node(error_handler=lambda s: {})
    with pytest.raises(bridge.ConfigError, match="node 'only' has an error handler"):
        from_state_graph(g, name="refused_handler")


def test_an_entrypoint_is_refused_with_what_to_do() -> None:
    @entrypoint()
    def flow(x: int) -> int:
        return x

    with pytest.raises(bridge.ConfigError, match="functional API @entrypoint: wrap it with"):
        from_state_graph(flow, name="refused_entrypoint")  # type: ignore[arg-type]


# -- replay: LangGraph's loop asks for the same steps in the same order ---------------------
@pytest.mark.parametrize(
    ("wf", "args"),
    [
        (FAN, ({"seed": 1},)),
        (MAP_REDUCE, ({"topics": ["x", "y", "z", "w"]},)),
        (CHAT, ({"messages": [{"role": "user", "content": "Rome"}]},)),
        (DOUBLER, ([5, 6, 7, 8], Caller(user="cy"))),
        (SQUARER, ([5, 6, 7, 8],)),
    ],
    ids=["fan", "map_reduce", "chat", "functional", "sync_functional"],
)
async def test_parallel_steps_replay_in_the_recorded_order(
    client: bridge.Client, settings: dict[str, Any], tmp_path: Path, wf: Any, args: Any
) -> None:
    run_id = f"replayed-{wf.name}"  # ids are per server on Temporal
    async with client.worker(ALL):
        await client.execute(wf, *args, id=run_id, timeout=60)
    path = tmp_path / "run.json"
    await replay.record(client, run_id, path)
    report = await replay.assert_replays(path, wf, settings=settings)
    assert report.steps > 0
