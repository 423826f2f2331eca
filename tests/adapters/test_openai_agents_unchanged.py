"""SDK agent code, unchanged, inside a bridge workflow: `Runner.run` is durable by itself.

No `run_agent` here: the workflows call the SDK's own `Runner.run`, as an agent written for
the SDK does, and every model call (nested `agent.as_tool()` runs included) and every plain
`@function_tool` call must be a journaled step on every backend, with the results the plain
SDK gives. Module-level agents and workflows: Temporal's sandbox re-imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionToolResult,
    Model,
    ModelProvider,
    ModelResponse,
    RawResponsesStreamEvent,
    RunConfig,
    RunContextWrapper,
    Runner,
    ToolsToFinalOutputResult,
    UserError,
    function_tool,
    set_tracing_disabled,
)
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

import bridge
from adapters.openai_agents import AgentSettings, Script, ScriptedModel, configure

set_tracing_disabled(True)  # offline: no trace export to OpenAI

MODEL_CALL = "openai_agents.model_call"
FUNCTION_TOOL = "openai_agents.function_tool"

#: Where the plain tool logs its calls (a side effect to count): a file, because on Temporal
#: the tool is the sandbox's copy of this module, whose globals are not the test's.
WEATHER_LOG = "U_WEATHER_LOG"


def weather_calls() -> list[str]:
    return Path(os.environ[WEATHER_LOG]).read_text().split()


@pytest.fixture(autouse=True)
def offline_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    configure(
        AgentSettings(
            model_retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.05),
            blob_url=f"sqlite:///{tmp_path}/blobs.db",
        )
    )
    log = tmp_path / "weather.log"
    log.write_text("")
    monkeypatch.setenv(WEATHER_LOG, str(log))
    yield
    configure()


class Weather(BaseModel):
    city: str
    temperature_c: int


@function_tool
async def get_weather(city: str) -> Weather:
    """The weather in a city."""
    with open(os.environ[WEATHER_LOG], "a") as log:
        log.write(f"{city}\n")
    return Weather(city=city, temperature_c=21)


def weather_report(
    context: RunContextWrapper[Any], results: list[FunctionToolResult]
) -> ToolsToFinalOutputResult:
    """A custom tool_use_behavior: it reads the tool's typed result, as in the SDK's
    forcing_tool_use example."""
    weather = results[0].output
    return ToolsToFinalOutputResult(
        is_final_output=True, final_output=f"{weather.city}: {weather.temperature_c} C"
    )


# -- nested runs, plain tools, typed results ------------------------------------------------
def _translator_script() -> list[Any]:
    return [Script.text("bonjour")]


def _orchestrator_script() -> list[Any]:
    return [
        Script.tool_call("translate_to_french", {"input": "hello"}),
        Script.tool_call("get_weather", {"city": "Paris"}),
        Script.text("done: bonjour, Paris"),
    ]


TRANSLATOR = ScriptedModel(_translator_script(), name="u-translator")
ORCHESTRATOR = ScriptedModel(_orchestrator_script(), name="u-orchestrator")
translator = Agent(name="translator", instructions="Translate to French.", model=TRANSLATOR)
orchestrator = Agent(
    name="orchestrator",
    instructions="Use your tools.",
    model=ORCHESTRATOR,
    tools=[
        translator.as_tool(tool_name="translate_to_french", tool_description="Translate."),
        get_weather,
    ],
)
WEATHER_MODEL = ScriptedModel([Script.tool_call("get_weather", {"city": "Tokyo"})], name="u-w")
weather_agent = Agent(
    name="weather",
    model=WEATHER_MODEL,
    tools=[get_weather],
    tool_use_behavior=weather_report,
)


@bridge.workflow(name="u_orchestrate")
async def orchestrate(ctx: bridge.Context, text: str) -> str:
    result = await Runner.run(orchestrator, text)
    return str(result.final_output)


@bridge.workflow(name="u_weather")
async def weather(ctx: bridge.Context) -> str:
    result = await Runner.run(weather_agent, "What's the weather in Tokyo?")
    return str(result.final_output)


async def test_runner_run_unchanged_is_journaled_nested_runs_included(
    client: bridge.Client,
) -> None:
    id = f"orchestrate-{client.backend_name}"
    async with client.worker([orchestrate]):
        assert await client.execute(orchestrate, "hello", id=id, timeout=60) == (
            "done: bonjour, Paris"
        )
    steps = bridge.history.step_sequence(await client.history(id))
    # The orchestrator's three turns, the nested translator run's one, the plain tool's call.
    assert steps.count(MODEL_CALL) == 4, steps
    assert steps.count(FUNCTION_TOOL) == 1, steps
    assert ORCHESTRATOR.invocations(id) == [0, 1, 2]
    assert weather_calls() == ["Paris"]


async def test_a_tool_result_keeps_its_type_for_tool_use_behavior(client: bridge.Client) -> None:
    id = f"weather-{client.backend_name}"
    async with client.worker([weather]):
        assert await client.execute(weather, id=id, timeout=60) == "Tokyo: 21 C"
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps == [MODEL_CALL, FUNCTION_TOOL], steps


async def test_outside_a_workflow_runner_run_is_the_plain_sdk() -> None:
    plain_model = ScriptedModel(_orchestrator_script(), name="u-plain-orchestrator")
    plain_translator = translator.clone(model=ScriptedModel(_translator_script(), name="u-pt"))
    agent = orchestrator.clone(
        model=plain_model,
        tools=[
            plain_translator.as_tool(tool_name="translate_to_french", tool_description="T."),
            get_weather,
        ],
    )
    result = await Runner.run(agent, "hello")
    assert result.final_output == "done: bonjour, Paris"
    assert weather_calls() == ["Paris"]
    assert plain_model.invocations() == [0, 1, 2]


# -- any Model and ModelProvider -------------------------------------------------------------
class OwnModel(Model):
    """A user's own Model class (not a ScriptedModel, which is resolved by name). The tests
    see it called through the journal: on Temporal the object that answers is the sandbox's
    copy of this module's, not the one the test holds."""

    def __init__(self, reply: str) -> None:
        self.inner = ScriptedModel([Script.text(reply)], name=f"own-{reply}")

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return await self.inner.get_response(*args, **kwargs)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.stream_response(*args, **kwargs)


class OwnProvider(ModelProvider):
    def __init__(self) -> None:
        self.model = OwnModel("from the provider")

    def get_model(self, model_name: str | None) -> Model:
        if model_name != "house-model":
            raise ValueError(f"no model {model_name!r} here")
        return self.model


OWN_MODEL = OwnModel("from my model")
own_model_agent = Agent(name="own", model=OWN_MODEL)
PROVIDER = OwnProvider()
provided_agent = Agent(name="provided", model="house-model")


@bridge.workflow(name="u_own_model")
async def own_model(ctx: bridge.Context) -> str:
    return str((await Runner.run(own_model_agent, "hi")).final_output)


@bridge.workflow(name="u_own_provider")
async def own_provider(ctx: bridge.Context) -> str:
    config = RunConfig(model_provider=PROVIDER, tracing_disabled=True)
    return str((await Runner.run(provided_agent, "hi", run_config=config)).final_output)


async def test_a_model_object_on_the_agent_is_called_as_a_journaled_step(
    client: bridge.Client,
) -> None:
    id = f"own-model-{client.backend_name}"
    async with client.worker([own_model]):
        assert await client.execute(own_model, id=id, timeout=60) == "from my model"
    history = await client.history(id)
    assert bridge.history.step_sequence(history) == [MODEL_CALL]
    request = next(e.args["request"] for e in history if e.name == MODEL_CALL and e.args)
    assert request["source"] == {
        "object": "tests.adapters.test_openai_agents_unchanged.OwnModel@agent:own"
    }


async def test_a_run_config_model_provider_resolves_the_names(client: bridge.Client) -> None:
    id = f"own-provider-{client.backend_name}"
    async with client.worker([own_provider]):
        assert await client.execute(own_provider, id=id, timeout=60) == "from the provider"
    history = await client.history(id)
    assert bridge.history.step_sequence(history) == [MODEL_CALL]
    request = next(e.args["request"] for e in history if e.name == MODEL_CALL and e.args)
    assert request["model"] == "house-model" and set(request["source"]) == {"provider"}


# -- streaming --------------------------------------------------------------------------------
STREAM_MODEL = ScriptedModel(
    [Script.tool_call("get_weather", {"city": "Oslo"}), Script.text("Oslo is mild today.")],
    name="u-stream",
)
streaming_agent = Agent(name="streamer", model=STREAM_MODEL, tools=[get_weather])


async def stream_text(agent: Agent[Any]) -> str:
    """What the SDK's routing example does: print the text deltas of a streamed run."""
    result = Runner.run_streamed(agent, input="Weather in Oslo?")
    deltas = []
    async for event in result.stream_events():
        if isinstance(event, RawResponsesStreamEvent) and isinstance(
            event.data, ResponseTextDeltaEvent
        ):
            deltas.append(event.data.delta)
    return f"{''.join(deltas)}|{result.final_output}"


@bridge.workflow(name="u_streamed")
async def streamed(ctx: bridge.Context) -> str:
    return await stream_text(streaming_agent)


async def test_run_streamed_unchanged_streams_from_journaled_steps(client: bridge.Client) -> None:
    id = f"streamed-{client.backend_name}"
    async with client.worker([streamed]):
        out = await client.execute(streamed, id=id, timeout=60)
    assert out == "Oslo is mild today.|Oslo is mild today."
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps == [MODEL_CALL, FUNCTION_TOOL, MODEL_CALL], steps
    assert weather_calls() == ["Oslo"]
    # The same program outside a workflow (the plain SDK) gives the same.
    plain = streaming_agent.clone(model=ScriptedModel(STREAM_MODEL.steps, name="u-stream-p"))
    assert await stream_text(plain) == out


# -- refusals name what is refused and what to do -------------------------------------------
@bridge.workflow(name="u_run_sync")
async def run_sync_inside(ctx: bridge.Context) -> str:
    try:
        Runner.run_sync(own_model_agent, "hi")
    except UserError as exc:
        return str(exc)
    return "not refused"


async def test_run_sync_in_a_workflow_is_refused_clearly(client: bridge.Client) -> None:
    async with client.worker([run_sync_inside]):
        refused = await client.execute(run_sync_inside, id="run-sync", timeout=60)
        assert "Runner.run_sync" in refused and "await Runner.run" in refused


def test_a_streamed_event_missing_a_required_field_is_read_as_the_client_reads_it() -> None:
    """An OpenAI-compatible server may leave out what the openai types require (here the
    response's created_at, model, tools...): the client accepts such a stream live, so the
    journaled events must decode too, nested objects included."""
    from adapters.openai_agents._stream_events import decode_event

    message = {
        "type": "message",
        "id": "m",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
    }
    event = decode_event(
        {
            "type": "response.completed",
            "sequence_number": 1,
            "response": {"id": "r", "object": "response", "output": [message]},
        }
    )
    assert event.type == "response.completed"
    assert event.response.output[0].content[0].text == "hi"


def test_temporals_openai_agents_integration_is_not_a_dependency() -> None:
    """Issue 14 point 9: one model-call activity, runner and tracing guard serve every
    engine (docs/architecture.md says why), so `temporalio-openai-agents` is not declared,
    and nothing here imports it."""
    import tomllib

    from tests.conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not any("temporalio-openai-agents" in dep for deps in extras.values() for dep in deps)
    for path in (ROOT / "adapters").rglob("*.py"):
        source = path.read_text()
        assert "import temporalio.openai_agents" not in source, path
        assert "from temporalio.openai_agents" not in source, path
        assert "temporalio.contrib.openai_agents import" not in source, path
