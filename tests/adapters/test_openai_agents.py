"""The OpenAI Agents SDK adapter: one Agent definition, durable on every backend.

Agents, models and tools live at module level because Temporal's sandbox re-imports this
module to run its workflows; every model is a ScriptedModel (offline), counted per run.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    ModelRetrySettings,
    ModelSettings,
    Runner,
    RunResult,
    UserError,
    function_tool,
    handoff,
    set_tracing_disabled,
)
from pydantic import BaseModel

import adapters.openai_agents
import bridge
from adapters.openai_agents import (
    AgentSettings,
    Script,
    ScriptedModel,
    ScriptedModelProvider,
    activity_as_tool,
    approval_signal,
    blob_store,
    configure,
    current_settings,
    run_agent,
)
from adapters.openai_agents._blobs import canonical
from bridge.errors import OutsideWorkflowError
from bridge.history import EventType
from tests.conftest import BACKENDS, ROOT, settings_env, wait_for_status

set_tracing_disabled(True)  # offline: no trace export to OpenAI

MODEL_CALL = "openai_agents.model_call"
FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01)


@pytest.fixture(autouse=True)
def offline_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Scripted models only, quick model retries, blobs in this test's directory."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    configure(
        AgentSettings(
            model_retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.05, backoff=2.0),
            blob_url=f"sqlite:///{tmp_path}/blobs.db",
        )
    )
    yield
    configure()


def tool_outputs(model: ScriptedModel, workflow_id: str) -> list[str]:
    """The tool results the model was shown in its last call of run `workflow_id`."""
    last = [c for c in model.calls if c.workflow_id == workflow_id][-1]
    return [i["output"] for i in last.input if i.get("type") == "function_call_output"]


def last_output(items: list[Any]) -> str:
    return next(i["output"] for i in reversed(items) if i.get("type") == "function_call_output")


def by_step(history: list[bridge.HistoryEvent]) -> list[bridge.HistoryEvent]:
    """Events in journal order. Concurrent steps (the SDK runs a turn's tool calls together)
    finish in any order, and Temporal's history lists them as they finished; their step
    indices are the same on every backend."""
    steps = sorted((e for e in history if e.step is not None), key=lambda e: e.step or 0)
    return steps + [e for e in history if e.step is None]


# -- the research agent: tools, parallel tool calls, JSON results --------------------------
@dataclass
class Source:
    url: str
    title: str


@bridge.activity(retry=FAST, name="t_search_web")
async def search_web(query: str, limit: int) -> list[Source]:
    """Search the web for pages about a topic.

    Args:
        query: What to search for.
        limit: How many results to return at most.
    """
    return [
        Source(url=f"https://example.com/{query}/{i}", title=f"{query} #{i}") for i in range(limit)
    ]


@bridge.activity(retry=FAST, name="t_extract_content")
async def extract_content(url: str) -> str:
    """Fetch a page and return its main text.

    Args:
        url: The page to read.
    """
    return f"the text of {url}"


RESEARCH_MODEL = ScriptedModel(
    [
        Script.tool_call("search_web", {"query": "otters", "limit": 2}),
        Script.tool_calls(
            ("extract_content", {"url": "https://example.com/otters/0"}),
            ("extract_content", {"url": "https://example.com/otters/1"}),
        ),
        Script.text("Otters hold hands while they sleep."),
    ],
    name="t-research",
)
research_agent = Agent(
    name="researcher",
    instructions="Search, read each source, summarize.",
    model=RESEARCH_MODEL,
    tools=[
        activity_as_tool(search_web, name="search_web"),
        activity_as_tool(extract_content, name="extract_content"),
    ],
)


@bridge.workflow(name="t_research")
async def research(ctx: bridge.Context, topic: str) -> str:
    return str((await run_agent(research_agent, topic)).final_output)


async def test_same_agent_same_history_on_every_backend(request: pytest.FixtureRequest) -> None:
    trajectories = {}
    for name in BACKENDS:
        id = f"research-{name}"
        async with await bridge.connect(request.getfixturevalue(f"{name}_settings")) as client:
            async with client.worker([research]):
                result = await client.execute(research, "otters", id=id, timeout=60)
            history = await client.history(id)
        assert result == "Otters hold hands while they sleep.", name
        assert bridge.history.step_sequence(history) == [
            MODEL_CALL,
            "t_search_web",
            MODEL_CALL,
            "t_extract_content",
            "t_extract_content",
            MODEL_CALL,
        ], name
        # One model call per turn, none repeated.
        assert RESEARCH_MODEL.invocations(id) == [0, 1, 2], name
        # Results reach the model as with the plain SDK: the typed result (decoded from the
        # journal back to list[Source]) as text.
        outputs = tool_outputs(RESEARCH_MODEL, id)
        sources = [Source(f"https://example.com/otters/{i}", f"otters #{i}") for i in (0, 1)]
        assert outputs[0] == str(sources)
        assert outputs[1:] == [
            "the text of https://example.com/otters/0",
            "the text of https://example.com/otters/1",
        ]
        # The agent's spec (instructions, tool schemas) is journaled once, then by reference.
        calls = [e for e in history if e.type is EventType.STEP_COMPLETED and e.name == MODEL_CALL]
        specs = [c.args["request"]["spec"] for c in calls]
        assert "value" in specs[0] and all(set(s) == {"key"} for s in specs[1:]), name
        assert specs[0]["value"]["tools"][0]["params_json_schema"]["required"] == [
            "query",
            "limit",
        ]
        trajectories[name] = bridge.history.normalize(by_step(history))
    first = next(iter(trajectories.values()))
    for name, trajectory in trajectories.items():
        assert trajectory == first, f"{name} differs from {BACKENDS[0]}"


# -- human approval through `bridge signal` -------------------------------------------------
SAVED: list[str] = []


@bridge.activity(retry=FAST, name="t_save_report")
async def save_report(title: str, body: str, *, idempotency_key: str) -> int:
    """Save the report and return its id.

    Args:
        title: The report's title.
        body: The report's text.
    """
    SAVED.append(idempotency_key)
    return len(SAVED)


def _after_approval(items: list[Any]) -> Any:
    said = last_output(items)
    return Script.text(f"Saved as report {said}." if said.isdigit() else f"Not saved: {said}")


APPROVAL_MODEL = ScriptedModel(
    [
        Script.tool_call("save_report", {"title": "Otters", "body": "They hold hands."}),
        _after_approval,
    ],
    name="t-approval",
)
approval_agent = Agent(
    name="writer",
    instructions="Write the report, then save it.",
    model=APPROVAL_MODEL,
    tools=[activity_as_tool(save_report, name="save_report", needs_approval=True)],
)


@bridge.workflow
async def write_and_save(ctx: bridge.Context) -> str:
    return str((await run_agent(approval_agent, "Report on otters, then save it.")).final_output)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("true", "Saved as report {n}."),
        ('{"approved": false, "message": "Not today."}', "Not saved: Not today."),
    ],
    ids=["approved", "rejected"],
)
async def test_approval_waits_for_bridge_signal_from_another_process(
    client: bridge.Client, settings: dict[str, Any], payload: str, expected: str
) -> None:
    id = f"approval-{client.backend_name}-{'yes' if payload == 'true' else 'no'}"
    saved_before = len(SAVED)
    async with client.worker([write_and_save]):
        handle = await client.start(write_and_save, id=id)
        desc = await wait_for_status(client, id, bridge.Status.WAITING)
        assert desc.waiting_for == approval_signal("save_report") == "approval:save_report"
        assert not [k for k in SAVED if k.startswith(id)]  # nothing saved while it waits
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.cli",
            "signal",
            id,
            "approval:save_report",
            payload,
            cwd=ROOT,
            env=settings_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        result = await handle.result(timeout=30)
    saved = [k for k in SAVED if k.startswith(id)]
    if payload == "true":
        assert result == expected.format(n=saved_before + 1)
        assert len(saved) == 1
    else:
        assert result == expected
        assert saved == []  # rejection took the other path: the tool never ran
    history = await client.history(id)
    assert [e.result for e in history if e.type is EventType.SIGNAL_RECEIVED] == [
        True if payload == "true" else {"approved": False, "message": "Not today."}
    ]
    assert APPROVAL_MODEL.invocations(id) == [0, 1]


@bridge.workflow
async def write_and_save_within(ctx: bridge.Context, seconds: float) -> str:
    agent_result = await run_agent(
        approval_agent, "Report on otters, then save it.", approval_timeout=seconds
    )
    return str(agent_result.final_output)


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_no_approval_in_time_rejects_the_call(client: bridge.Client) -> None:
    async with client.worker([write_and_save_within]):
        result = await client.execute(write_and_save_within, 0.3, id="late-1", timeout=30)
    assert result == "Not saved: No approval for tool 'save_report' arrived within 0.3 seconds."
    assert not [k for k in SAVED if k.startswith("late-1")]
    types = [e.type for e in await client.history("late-1")]
    assert EventType.SIGNAL_TIMED_OUT in types


# -- a changed agent does not silently diverge from its journal ----------------------------
DRIFT_MODEL = ScriptedModel(
    [
        Script.tool_call("save_report", {"title": "Drift", "body": "b"}),
        Script.text("done"),
    ],
    name="t-drift",
)
drift_agent = Agent(
    name="writer",
    instructions="Version 1.",
    model=DRIFT_MODEL,
    tools=[activity_as_tool(save_report, name="save_report", needs_approval=True)],
)


@bridge.workflow
async def drifting(ctx: bridge.Context) -> str:
    return str((await run_agent(drift_agent, "save it")).final_output)


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_changed_agent_blocks_the_run_instead_of_failing_it(
    client: bridge.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client.worker([drifting]):
        handle = await client.start(drifting, id="drift-1")
        await wait_for_status(client, "drift-1", bridge.Status.WAITING)
        # New code while the run is parked: its first model call would now be different.
        monkeypatch.setattr(drift_agent, "instructions", "Version 2.")
        await handle.signal("approval:save_report", True)
        with pytest.raises(bridge.WorkflowBlockedError, match=r"step 0.*Version 2\."):
            await handle.result(timeout=30)
    # Put the old code back and restart the worker: the run resumes from its journal.
    monkeypatch.setattr(drift_agent, "instructions", "Version 1.")
    async with client.worker([drifting]):
        while (await handle.describe()).blocked:  # the worker unblocks it as it starts
            await asyncio.sleep(0.02)
        assert await handle.result(timeout=30) == "done"
    assert DRIFT_MODEL.invocations("drift-1") == [0, 1]


# -- tool failures --------------------------------------------------------------------------
ATTEMPTS: dict[str, list[float]] = {}


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=4, initial_interval=0.05, backoff=2.0))
async def flaky_lookup(key: str) -> str:
    """Look a key up in a service that fails twice before it answers.

    Args:
        key: The key to look up.
    """
    info = bridge.activity_info()
    ATTEMPTS.setdefault(info.workflow_id, []).append(time.monotonic())
    if info.attempt < 3:
        raise ConnectionError(f"service unavailable (attempt {info.attempt})")
    return f"value of {key}"


@bridge.activity(retry=FAST)
async def charge_card(amount_cents: int) -> str:
    """Charge the customer's card.

    Args:
        amount_cents: The amount to charge, in cents.
    """
    raise bridge.NonRetryableError(f"card declined for {amount_cents} cents")


def _echo_last_output(items: list[Any]) -> Any:
    return Script.text(f"The tool said: {last_output(items)}")


FAILURE_MODEL = ScriptedModel(
    [
        Script.tool_call("flaky_lookup", {"key": "k1"}),
        Script.tool_call("charge_card", {"amount_cents": 500}),
        Script.tool_call("search_web", {"limit": 1}),  # `query` missing: not the schema
        _echo_last_output,
    ],
    name="t-failures",
)
failure_agent = Agent(
    name="clerk",
    instructions="Look up, charge, search.",
    model=FAILURE_MODEL,
    tools=[
        activity_as_tool(flaky_lookup),
        activity_as_tool(charge_card),
        activity_as_tool(search_web, name="search_web"),
    ],
)


@bridge.workflow
async def failing_tools(ctx: bridge.Context) -> str:
    return str((await run_agent(failure_agent, "Do the three things.")).final_output)


async def test_tool_failures_reach_the_model_as_the_sdk_reports_them(
    client: bridge.Client,
) -> None:
    id = f"failures-{client.backend_name}"
    async with client.worker([failing_tools]):
        result = await client.execute(failing_tools, id=id, timeout=60)
    history = await client.history(id)
    lookup, charge, search = tool_outputs(FAILURE_MODEL, id)

    # Retryable: retried with the activity's backoff, then the model got the value.
    assert lookup == "value of k1"
    gaps = [b - a for a, b in itertools.pairwise(ATTEMPTS[id])]
    assert len(gaps) == 2 and gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps  # 0.05 s, doubling
    failed = [e for e in history if e.type is EventType.STEP_FAILED and e.name == "flaky_lookup"]
    assert [(e.attempt, e.details["will_retry"]) for e in failed] == [(1, True), (2, True)]

    # Non-retryable: one attempt, then a tool error result, as the SDK words one.
    assert charge.startswith("An error occurred while running the tool. Please try again.")
    assert "NonRetryableError: card declined for 500 cents" in charge
    final = [e for e in history if e.type is EventType.STEP_FAILED and e.name == "charge_card"]
    assert [(e.attempt, e.details["will_retry"]) for e in final] == [(1, False)]

    # Arguments that do not match the schema: a tool error for the model, no step at all.
    assert search.startswith("An error occurred while running the tool.")
    assert "Invalid JSON input for tool search_web" in search
    assert "t_search_web" not in bridge.history.step_sequence(history)

    # None of it crashed the run: the model saw the last error and answered.
    assert result == f"The tool said: {search}"
    assert history[-1].type is EventType.WORKFLOW_COMPLETED


# -- model failures -------------------------------------------------------------------------
RATE_LIMITED_MODEL = ScriptedModel(
    [Script.failing(Script.text("fine after a while"), times=2, status=429)], name="t-429"
)
REFUSING_MODEL = ScriptedModel(
    [Script.failing(Script.text("never"), times=1, status=400)], name="t-400"
)


@bridge.workflow
async def ask(ctx: bridge.Context, model_name: str) -> str:
    agent = Agent(name="asker", model=model_name)
    return str((await run_agent(agent, "hello")).final_output)


async def test_model_rate_limits_are_retried_with_backoff(client: bridge.Client) -> None:
    id = f"rate-limited-{client.backend_name}"
    async with client.worker([ask]):
        assert await client.execute(ask, "t-429", id=id, timeout=60) == "fine after a while"
    history = await client.history(id)
    failed = [e for e in history if e.type is EventType.STEP_FAILED]
    assert [(e.name, e.error["error_type"]) for e in failed] == [(MODEL_CALL, "RateLimitError")] * 2
    assert all(e.details["will_retry"] for e in failed)
    assert RATE_LIMITED_MODEL.invocations(id) == [0, 0, 0]


async def test_a_refused_model_call_fails_at_once(client: bridge.Client) -> None:
    id = f"refused-{client.backend_name}"
    async with client.worker([ask]):
        with pytest.raises(bridge.WorkflowFailedError) as info:
            await client.execute(ask, "t-400", id=id, timeout=60)
    assert "HTTP 400" in str(info.value) and "t-400" in str(info.value)
    assert REFUSING_MODEL.invocations(id) == [0]


async def test_an_unknown_model_name_fails_with_what_to_do(client: bridge.Client) -> None:
    async with client.worker([ask]):
        with pytest.raises(bridge.WorkflowFailedError) as info:
            await client.execute(ask, "no-such-model", id=f"unknown-{client.backend_name}")
    assert "OPENAI_API_KEY" in str(info.value) and "no-such-model" in str(info.value)


PROVIDED_MODEL = ScriptedModel([Script.text("from the provider")], name="t-provided")


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_a_configured_provider_answers_for_model_names(
    client: bridge.Client, tmp_path: Path
) -> None:
    configure(
        AgentSettings(blob_url=f"sqlite:///{tmp_path}/blobs.db"),
        model_provider=ScriptedModelProvider(PROVIDED_MODEL),
    )
    async with client.worker([ask]):
        assert await client.execute(ask, "gpt-4o-mini", id="provided-1") == "from the provider"
    # The journal holds the name: with OPENAI_API_KEY and no provider, the same agent would
    # call gpt-4o-mini itself.
    call = next(e for e in await client.history("provided-1") if e.name == MODEL_CALL)
    assert call.args["request"]["model"] == "gpt-4o-mini"


@pytest.fixture
def compatible_server() -> Iterator[Any]:
    # Imported here, not at module level: Temporal's sandbox re-imports this module and
    # refuses http.server classes in it.
    from tests.openai_compatible import serve

    with serve() as server:
        yield server


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_a_base_url_makes_the_same_agent_call_a_real_endpoint(
    client: bridge.Client, tmp_path: Path, compatible_server: Any
) -> None:
    configure(
        AgentSettings(
            base_url=compatible_server.base_url,
            model_retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.05),
            blob_url=f"sqlite:///{tmp_path}/blobs.db",
        )
    )
    async with client.worker([ask]):
        result = await client.execute(ask, "local-model", id="endpoint-1", timeout=60)
    assert result == "hello from the server"
    requests = compatible_server.requests
    assert [path for path, _ in requests] == ["/v1/chat/completions"] * 2
    assert requests[-1][1]["model"] == "local-model"
    assert requests[-1][1]["messages"][-1] == {"role": "user", "content": "hello"}
    # The 429 was the OpenAI client's own RateLimitError, retried by the activity's policy.
    failed = [e for e in await client.history("endpoint-1") if e.type is EventType.STEP_FAILED]
    assert [(e.error["error_type"], e.details["will_retry"]) for e in failed] == [
        ("RateLimitError", True)
    ]


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_model_settings_come_from_bridge_toml(
    client: bridge.Client, tmp_path: Path, compatible_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `[agents]` table configures a worker with no code: endpoint, retries, blobs."""
    (tmp_path / "bridge.toml").write_text(
        "[agents]\n"
        f'base_url = "{compatible_server.base_url}"\n'
        "model_max_attempts = 2\n"
        "model_initial_interval = 0.05\n"
        "model_timeout = 9.5\n"
        f'blob_url = "sqlite:///{tmp_path}/toml-blobs.db"\n'
    )
    monkeypatch.chdir(tmp_path)
    configure()  # no arguments: read the configuration
    settings = current_settings()
    assert settings.model_retry == bridge.RetryPolicy(
        max_attempts=2, initial_interval=0.05, backoff=2.0, max_interval=30.0
    )
    assert settings.model_timeout == 9.5
    async with client.worker([ask]):
        result = await client.execute(ask, "local-model", id="toml-1", timeout=60)
    assert result == "hello from the server"
    failed = [e for e in await client.history("toml-1") if e.type is EventType.STEP_FAILED]
    assert [e.details["will_retry"] for e in failed] == [True]
    assert (tmp_path / "toml-blobs.db").exists()

    monkeypatch.setenv("BRIDGE_AGENTS_MODEL_MAX_ATTEMPTS", "7")
    configure()
    assert current_settings().model_retry.max_attempts == 7
    (tmp_path / "bridge.toml").write_text("[agents]\nmodel_retries = 3\n")
    with pytest.raises(bridge.ConfigError, match=r"unknown setting `agents.model_retries`"):
        configure()
    (tmp_path / "bridge.toml").unlink()  # the fixture's teardown configures from it again


@bridge.workflow
async def ask_with_settings(ctx: bridge.Context) -> str:
    agent = Agent(
        name="asker",
        model="t-429",
        model_settings=ModelSettings(
            temperature=0.2, timeout=7.5, retry=ModelRetrySettings(max_retries=4)
        ),
    )
    return str((await run_agent(agent, "hello")).final_output)


@pytest.mark.parametrize("backend_name", ["sql"])
async def test_model_retries_and_timeout_belong_to_the_activity(client: bridge.Client) -> None:
    async with client.worker([ask_with_settings]):
        await client.execute(ask_with_settings, id="settings-1", timeout=60)
    first = next(e for e in await client.history("settings-1") if e.name == MODEL_CALL)
    request = first.args["request"]
    # The SDK would retry and time out in workflow code by wall clock: both are taken out of
    # what it sees; the timeout bounds each attempt of the activity instead.
    assert request["spec"]["value"]["model_settings"] == {"temperature": 0.2}
    assert request["timeout"] == 7.5


# -- handoffs and structured output ---------------------------------------------------------
class Verdict(BaseModel):
    answer: str
    confidence: float


HANDOFF_MODEL = ScriptedModel(
    [Script.handoff("specialist"), Script.output(Verdict(answer="42", confidence=0.9))],
    name="t-handoff",
)
specialist = Agent(name="specialist", model=HANDOFF_MODEL, output_type=Verdict)
triage = Agent(name="triage", model=HANDOFF_MODEL, handoffs=[handoff(specialist)])


@bridge.workflow
async def triaged(ctx: bridge.Context, question: str) -> tuple[str, Verdict]:
    result = await run_agent(triage, question)
    if not isinstance(result, RunResult):  # the SDK's own result type, as Runner.run gives
        raise TypeError(f"run_agent returned a {type(result).__name__}")
    return result.last_agent.name, result.final_output


async def test_handoff_then_structured_output(client: bridge.Client) -> None:
    id = f"handoff-{client.backend_name}"
    async with client.worker([triaged]):
        last, verdict = await client.execute(triaged, "what is it?", id=id, timeout=60)
    assert last == "specialist"
    assert verdict == Verdict(answer="42", confidence=0.9)
    assert HANDOFF_MODEL.invocations(id) == [0, 1]
    calls = [c for c in HANDOFF_MODEL.calls if c.workflow_id == id]
    # The model saw the handoff on the first turn and the specialist's output type on the second.
    assert calls[0].handoffs == ["transfer_to_specialist"] and calls[0].output_type is None
    assert calls[1].handoffs == [] and calls[1].output_type == "Verdict"


# -- plain function tools -------------------------------------------------------------------
@function_tool
async def word_count(text: str) -> int:
    """Count the words of a text (async: the SDK runs a sync tool in a thread, which
    Temporal's workflow sandbox forbids)."""
    return len(text.split())


PLAIN_MODEL = ScriptedModel(
    [
        Script.tool_call("word_count", {"text": "one two three"}),
        Script.handoff("counter"),
        Script.tool_call("word_count", {"text": "four five"}),
        Script.text("done"),
    ],
    name="t-plain",
)
counter = Agent(name="counter", model=PLAIN_MODEL, tools=[word_count])
plain_agent = Agent(name="plain", model=PLAIN_MODEL, tools=[word_count], handoffs=[counter])


@bridge.workflow
async def counting(ctx: bridge.Context) -> str:
    return str((await run_agent(plain_agent, "count")).final_output)


async def test_plain_function_tool_is_a_journaled_step(client: bridge.Client) -> None:
    id = f"plain-{client.backend_name}"
    async with client.worker([counting]):
        assert await client.execute(counting, id=id, timeout=60) == "done"
    # The model saw what it sees from the plain SDK: the int result as text.
    outputs = tool_outputs(PLAIN_MODEL, id)
    assert (outputs[0], outputs[-1]) == ("3", "2")
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps.count("openai_agents.function_tool") == 2, steps


# -- outside a workflow ---------------------------------------------------------------------
async def test_run_agent_outside_a_workflow_is_refused() -> None:
    with pytest.raises(OutsideWorkflowError, match="outside a bridge workflow"):
        await run_agent(research_agent, "otters")


async def test_activity_tool_outside_a_workflow_is_strict_unless_told() -> None:
    model = ScriptedModel(
        [Script.tool_call("extract_content", {"url": "https://x"}), Script.text("ok")],
        name="t-outside",
    )
    strict = Agent(
        name="a", model=model, tools=[activity_as_tool(extract_content, name="extract_content")]
    )
    with pytest.raises(UserError, match=r"outside a bridge workflow.*strict=False"):
        await Runner.run(strict, "read it")
    lenient = Agent(
        name="a",
        model=model,
        tools=[activity_as_tool(extract_content, name="extract_content", strict=False)],
    )
    result = await Runner.run(lenient, "read it")
    assert result.final_output == "ok"
    assert model.calls[-1].input[-1]["output"] == "the text of https://x"


def test_activity_as_tool_rejects_what_it_cannot_use() -> None:
    with pytest.raises(bridge.NotRegisteredError, match=r"decorate it with @bridge\.activity"):
        activity_as_tool(word_count)  # type: ignore[arg-type]
    with pytest.raises(bridge.ConfigError, match="pass name="):
        activity_as_tool(extract_content, name="extract content")


# -- the journal grows linearly with the conversation ---------------------------------------
@bridge.activity(retry=FAST)
async def take_note(n: int) -> str:
    """Write down note number n.

    Args:
        n: The note's number.
    """
    return f"note {n}: " + "lorem ipsum " * 20


TURNS = 200
LONG_MODEL = ScriptedModel(
    [Script.tool_call("take_note", {"n": n}) for n in range(TURNS)] + [Script.text("done")],
    name="t-long",
)
long_agent = Agent(
    name="note-taker",
    instructions="Take notes until told to stop. " * 20,
    model=LONG_MODEL,
    tools=[activity_as_tool(take_note)],
)


@bridge.workflow
async def long_conversation(ctx: bridge.Context) -> str:
    return str((await run_agent(long_agent, "take notes", max_turns=TURNS + 5)).final_output)


# The step records are built by the adapter and are the same on every backend (see the
# trajectory test), so measuring them once, on the embedded executor, is enough.
@pytest.mark.parametrize("backend_name", ["sql"])
async def test_a_200_turn_conversation_grows_the_journal_linearly(client: bridge.Client) -> None:
    async with client.worker([long_conversation]):
        assert await client.execute(long_conversation, id="long-1", timeout=120) == "done"
    steps = [e for e in await client.history("long-1") if e.type is EventType.STEP_COMPLETED]
    assert len(steps) == 2 * TURNS + 1
    sizes = [len(canonical(e.args)) + len(canonical(e.result)) for e in steps]
    model_args = [len(canonical(e.args)) for e in steps if e.name == MODEL_CALL]

    # No model-call record grows with the conversation: the last is no bigger than the second
    # (the first also carries the agent's spec once).
    assert max(model_args[1:]) <= model_args[1] * 1.2, model_args[:3] + model_args[-3:]
    # So the whole journal is linear: a quarter of the turns takes a quarter of the space.
    quarter = sum(sizes[: 2 * TURNS // 4])
    assert sum(sizes) < 4.5 * quarter, (quarter, sum(sizes))
    # What copying the conversation into every step would have cost, for comparison.
    copied = sum(len(canonical(c.input)) for c in LONG_MODEL.calls if c.workflow_id == "long-1")
    assert sum(sizes) * 10 < copied, (sum(sizes), copied)
    # The blob store holds each item once: about one final conversation, not 200 of them.
    final_conversation = len(canonical(LONG_MODEL.calls[-1].input))
    _count, stored = blob_store().stats()
    assert stored < 2 * final_conversation, (stored, final_conversation)


# -- the public surface ---------------------------------------------------------------------
ADAPTER_ALL = [
    "AgentSettings",
    "BlobMissingError",
    "BlobStore",
    "DurableModel",
    "MODEL_CALL",
    "ModelNotFoundError",
    "NonRetryableModelError",
    "Reply",
    "Script",
    "ScriptError",
    "ScriptedCall",
    "ScriptedModel",
    "ScriptedModelProvider",
    "activity_as_tool",
    "approval_signal",
    "blob_store",
    "configure",
    "current_settings",
    "run_agent",
]


def test_adapter_all_is_pinned() -> None:
    assert sorted(adapters.openai_agents.__all__) == sorted(ADAPTER_ALL)
    for name in ADAPTER_ALL:
        assert getattr(adapters.openai_agents, name, None) is not None, name


def test_adapter_imports_no_backend() -> None:
    from tests.core.test_public_api import _offending, _py_files

    files = _py_files("adapters", "openai_agents")
    assert any(p.name == "_runner.py" for p in files)
    assert _offending(files, ("backends", "temporalio", "langgraph")) == []
