"""Agent code written for the plain SDK, unchanged inside a workflow, on every backend.

Each scenario is a coroutine that uses the SDK as its documentation shows (`Runner.run`,
handoffs, `agent.as_tool()`, a guardrail's own agent, `asyncio.gather` of runs, structured
output, a custom `tool_use_behavior`, instructions from the run context, run hooks,
`Runner.run_streamed`). The test runs it once outside any workflow, then as the body of an
`@bridge.workflow` on the backend under test, both against the same deterministic
OpenAI-compatible server (tests/fake_openai.py), and checks that the outputs are equal and
that every request the server received in the durable run is a journaled model call.

Agents and workflows live at module level because Temporal's sandbox re-imports this module;
the server is imported inside its fixture, since the sandbox refuses http.server classes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from agents import (
    Agent,
    FunctionToolResult,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    ModelSettings,
    RunContextWrapper,
    RunHooks,
    Runner,
    ToolsToFinalOutputResult,
    TResponseInputItem,
    function_tool,
    input_guardrail,
    set_tracing_disabled,
)
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

import bridge
from adapters.openai_agents import AgentSettings, configure
from bridge.history import EventType

set_tracing_disabled(True)  # no trace export: there is no network

MODEL_CALL = "openai_agents.model_call"
Request = tuple[str, dict[str, Any]]


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake endpoint, reached the way a user configures the SDK: OPENAI_BASE_URL."""
    from tests.fake_openai import serve

    with serve() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        configure(
            AgentSettings(
                model_retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.05),
                blob_url=f"sqlite:///{tmp_path}/blobs.db",
            )
        )
        yield server
        configure()


# -- handoffs -------------------------------------------------------------------------------
french_agent = Agent(name="p_french", instructions="You only speak French.")
spanish_agent = Agent(name="p_spanish", instructions="You only speak Spanish.")
triage_agent = Agent(
    name="p_triage",
    instructions="Hand off to the agent that speaks the user's language.",
    handoffs=[french_agent, spanish_agent],
)


async def handoffs(text: str) -> dict[str, Any]:
    result = await Runner.run(triage_agent, text)
    return {"agent": result.last_agent.name, "output": result.final_output}


def expect_handoffs(result: dict[str, Any], requests: list[Request]) -> None:
    assert result["agent"] == "p_french"  # the server calls the first tool it is offered
    assert len(requests) == 2


# -- agents as tools ------------------------------------------------------------------------
summarizer_agent = Agent(name="p_summarizer", instructions="Summarize the text.")
orchestrator_agent = Agent(
    name="p_orchestrator",
    instructions="Always use your tools.",
    tools=[
        summarizer_agent.as_tool(tool_name="summarize", tool_description="Summarize a text."),
    ],
)


async def agents_as_tools(text: str) -> list[str]:
    result = await Runner.run(orchestrator_agent, text)
    tool_outputs = [str(i.output) for i in result.new_items if i.type == "tool_call_output_item"]
    return [*tool_outputs, str(result.final_output)]


def expect_agents_as_tools(result: list[str], requests: list[Request]) -> None:
    assert result[0].startswith("Reply to: input: ")  # the nested agent answered
    assert len(requests) == 3  # orchestrator, summarizer, orchestrator


# -- a guardrail that runs an agent -------------------------------------------------------
class HomeworkVerdict(BaseModel):
    reasoning: str
    is_homework: bool


homework_checker = Agent(
    name="p_homework_checker",
    instructions="Decide whether the user asks you to do their homework.",
    output_type=HomeworkVerdict,
)


# Not in parallel: with the agent's first model call racing the guardrail, whether that call
# reaches the server before the tripwire cancels it would be up to the scheduler.
@input_guardrail(run_in_parallel=False)
async def no_homework(
    context: RunContextWrapper[Any], agent: Agent[Any], input: str | list[TResponseInputItem]
) -> GuardrailFunctionOutput:
    verdict = (await Runner.run(homework_checker, input, context=context.context)).final_output
    return GuardrailFunctionOutput(
        output_info=verdict.reasoning, tripwire_triggered=verdict.is_homework
    )


tutor_agent = Agent(name="p_tutor", instructions="Help students.", input_guardrails=[no_homework])


async def guardrail(text: str) -> str:
    try:
        result = await Runner.run(tutor_agent, text)
    except InputGuardrailTripwireTriggered as exc:
        return f"refused: {exc.guardrail_result.output.output_info}"
    return f"answered: {result.final_output}"


def expect_guardrail(result: str, requests: list[Request]) -> None:
    assert result.startswith("refused: reasoning: ")
    assert len(requests) == 1  # only the checker's call: the tutor never ran


# -- parallel runs ------------------------------------------------------------------------
translator_agent = Agent(name="p_translator", instructions="Translate to Spanish.")


async def parallel(text: str) -> list[str]:
    results = await asyncio.gather(
        *(Runner.run(translator_agent, f"{text} (try {n})") for n in range(3))
    )
    return [str(r.final_output) for r in results]


def expect_parallel(result: list[str], requests: list[Request]) -> None:
    assert result == [f"Reply to: good morning (try {n})" for n in range(3)]
    assert len(requests) == 3


# -- structured output --------------------------------------------------------------------
class Part(BaseModel):
    name: str
    count: int


class Inspection(BaseModel):
    title: str
    mood: Literal["calm", "stormy"]
    urgent: bool
    score: float
    parts: list[Part]
    note: str | None


inspector_agent = Agent(name="p_inspector", instructions="Inspect.", output_type=Inspection)


async def structured(text: str) -> dict[str, Any]:
    result = await Runner.run(inspector_agent, text)
    assert isinstance(result.final_output, Inspection)
    return result.final_output.model_dump()


def expect_structured(result: dict[str, Any], requests: list[Request]) -> None:
    assert result["mood"] == "calm" and result["urgent"] is True
    assert result["parts"] == [{"name": "name: the boiler", "count": 1}]


# -- a custom tool_use_behavior over a typed tool result ------------------------------------
class Forecast(BaseModel):
    city: str
    sky: str


@function_tool
async def get_forecast(city: str) -> Forecast:
    """The weather forecast of a city.

    Args:
        city: The city's name.
    """
    return Forecast(city=city, sky="clear")


async def first_forecast(
    context: RunContextWrapper[Any], results: list[FunctionToolResult]
) -> ToolsToFinalOutputResult:
    forecast = results[0].output  # the tool's own return value, not its JSON
    return ToolsToFinalOutputResult(
        is_final_output=True, final_output=f"{forecast.city} is {forecast.sky}"
    )


forecaster_agent = Agent(
    name="p_forecaster",
    instructions="Use the forecast tool.",
    tools=[get_forecast],
    tool_use_behavior=first_forecast,
    model_settings=ModelSettings(tool_choice="get_forecast"),
)


async def tool_use_behavior(text: str) -> str:
    return str((await Runner.run(forecaster_agent, text)).final_output)


def expect_tool_use_behavior(result: str, requests: list[Request]) -> None:
    assert result == "city: weather in Lyon? is clear"
    assert len(requests) == 1


# -- instructions from the run context ----------------------------------------------------
@dataclass
class Persona:
    style: str


def persona_instructions(wrapper: RunContextWrapper[Persona], agent: Agent[Persona]) -> str:
    return f"Answer as a {wrapper.context.style}."


chatter_agent = Agent[Persona](name="p_chatter", instructions=persona_instructions)


async def dynamic_instructions(text: str) -> str:
    return str(
        (await Runner.run(chatter_agent, text, context=Persona(style="pirate"))).final_output
    )


def expect_dynamic_instructions(result: str, requests: list[Request]) -> None:
    assert [body.get("instructions") for _, body in requests] == ["Answer as a pirate."]


# -- run hooks ----------------------------------------------------------------------------
class Recorder(RunHooks[Any]):
    """Every hook the SDK calls, in order, with what a user would log."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def on_agent_start(self, context: Any, agent: Agent[Any]) -> None:
        self.events.append(f"agent start {agent.name}")

    async def on_llm_start(self, context: Any, agent: Agent[Any], *args: Any) -> None:
        self.events.append(f"llm start, {context.usage.requests} requests so far")

    async def on_llm_end(self, context: Any, agent: Agent[Any], response: Any) -> None:
        self.events.append(f"llm end, {context.usage.total_tokens} tokens so far")

    async def on_tool_start(self, context: Any, agent: Agent[Any], tool: Any) -> None:
        self.events.append(f"tool start {tool.name} {context.tool_arguments}")

    async def on_tool_end(self, context: Any, agent: Agent[Any], tool: Any, result: Any) -> None:
        self.events.append(f"tool end {tool.name}: {result!r}")

    async def on_agent_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        self.events.append(f"agent end {agent.name}: {output}")


planner_agent = Agent(name="p_planner", instructions="Plan the trip.", tools=[get_forecast])


async def hooks(text: str) -> list[str]:
    recorder = Recorder()
    result = await Runner.run(planner_agent, text, hooks=recorder)
    return [*recorder.events, str(result.final_output)]


def expect_hooks(result: list[str], requests: list[Request]) -> None:
    assert result[0] == "agent start p_planner"
    assert "tool end get_forecast: Forecast(city='city: a trip to Oslo', sky='clear')" in result
    assert len(requests) == 2


# -- streaming ----------------------------------------------------------------------------
async def streamed(text: str) -> dict[str, Any]:
    result = Runner.run_streamed(triage_agent, text)
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent)
    ]
    return {"printed": "".join(deltas), "output": result.final_output}


def expect_streamed(result: dict[str, Any], requests: list[Request]) -> None:
    assert result["printed"] == result["output"] == "Reply to: bonsoir"
    assert len(requests) == 2


# -- the same bodies as workflows -----------------------------------------------------------
@bridge.workflow(name="p_handoffs")
async def handoffs_wf(ctx: bridge.Context, text: str) -> dict[str, Any]:
    return await handoffs(text)


@bridge.workflow(name="p_agents_as_tools")
async def agents_as_tools_wf(ctx: bridge.Context, text: str) -> list[str]:
    return await agents_as_tools(text)


@bridge.workflow(name="p_guardrail")
async def guardrail_wf(ctx: bridge.Context, text: str) -> str:
    return await guardrail(text)


@bridge.workflow(name="p_parallel")
async def parallel_wf(ctx: bridge.Context, text: str) -> list[str]:
    return await parallel(text)


@bridge.workflow(name="p_structured")
async def structured_wf(ctx: bridge.Context, text: str) -> dict[str, Any]:
    return await structured(text)


@bridge.workflow(name="p_tool_use_behavior")
async def tool_use_behavior_wf(ctx: bridge.Context, text: str) -> str:
    return await tool_use_behavior(text)


@bridge.workflow(name="p_dynamic_instructions")
async def dynamic_instructions_wf(ctx: bridge.Context, text: str) -> str:
    return await dynamic_instructions(text)


@bridge.workflow(name="p_hooks")
async def hooks_wf(ctx: bridge.Context, text: str) -> list[str]:
    return await hooks(text)


@bridge.workflow(name="p_streamed")
async def streamed_wf(ctx: bridge.Context, text: str) -> dict[str, Any]:
    return await streamed(text)


@dataclass(frozen=True)
class Scenario:
    body: Callable[[str], Awaitable[Any]]
    workflow: bridge.WorkflowDefinition[..., Any]
    text: str
    expect: Callable[[Any, list[Request]], None]


SCENARIOS = {
    "handoffs": Scenario(handoffs, handoffs_wf, "bonsoir", expect_handoffs),
    "agents_as_tools": Scenario(
        agents_as_tools, agents_as_tools_wf, "a long text", expect_agents_as_tools
    ),
    "guardrail_agent": Scenario(guardrail, guardrail_wf, "solve 2x + 5 = 11", expect_guardrail),
    "parallel_runs": Scenario(parallel, parallel_wf, "good morning", expect_parallel),
    "structured_output": Scenario(structured, structured_wf, "the boiler", expect_structured),
    "tool_use_behavior": Scenario(
        tool_use_behavior, tool_use_behavior_wf, "weather in Lyon?", expect_tool_use_behavior
    ),
    "dynamic_instructions": Scenario(
        dynamic_instructions, dynamic_instructions_wf, "a joke", expect_dynamic_instructions
    ),
    "run_hooks": Scenario(hooks, hooks_wf, "a trip to Oslo", expect_hooks),
    "run_streamed": Scenario(streamed, streamed_wf, "bonsoir", expect_streamed),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_plain_agent_code_is_durable_unchanged(
    scenario: str, client: bridge.Client, fake_server: Any, backend_name: str
) -> None:
    case = SCENARIOS[scenario]
    plain = await case.body(case.text)
    plain_requests = list(fake_server.requests)
    case.expect(plain, plain_requests)

    id = f"{scenario}-{uuid.uuid4().hex[:8]}"
    async with client.worker([case.workflow]):
        durable = await client.execute(case.workflow, case.text, id=id, timeout=90)
    durable_requests = fake_server.requests[len(plain_requests) :]
    history = await client.history(id)
    calls = [e for e in history if e.type is EventType.STEP_COMPLETED and e.name == MODEL_CALL]

    assert durable == plain
    case.expect(durable, durable_requests)
    # Every request the server saw is a journaled model call, and there were as many as in
    # the plain run: none made outside the journal, none paid for twice.
    assert len(durable_requests) == len(calls) == len(plain_requests)


def test_fake_server_answers_are_valid_openai_objects() -> None:
    """The fake's answers pass strict validation by the openai types, streamed or not, so a
    failure above is never the fake's shape."""
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    from tests import fake_openai

    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    for tools in ([tool], []):
        body = {"model": "m", "input": [{"role": "user", "content": "hi"}], "tools": tools}
        reply = fake_openai.decide("/v1/responses", body)
        assert (reply.tool is not None) == bool(tools)
        Response.model_validate(fake_openai._response(body, reply))
        for event in fake_openai._response_events(body, reply):
            TypeAdapter(ResponseStreamEvent).validate_python(event)
        ChatCompletion.model_validate(fake_openai._chat_completion(body, reply))
        for chunk in fake_openai._chat_chunks(body, reply):
            ChatCompletionChunk.model_validate(chunk)
