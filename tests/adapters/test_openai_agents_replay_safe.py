"""Hooks and tracing of an agent run are not repeated when the run replays, on every backend.

The agent looks something up (an activity tool), asks to save (a tool that needs approval),
and answers. Its run parks on the approval; the worker that began it is stopped; the
approval is sent; a new worker resumes the run, which re-executes the agent loop up to the
approval from the journal on every backend (sql and langgraph re-run the workflow, Temporal
replays history on a worker that never saw it). The workflow body notes each execution, the
run's `RunHooks` and the agent's `AgentHooks` note each callback, and a `TracingProcessor`
collects every trace and span: the body ran twice, yet each hook fired once per live step
and each trace and span was reported once.

Wiring this file expects (in `adapters/openai_agents/_runner.py`): `run_agent` passes
`hooks=replay_safe(hooks)` and `_Converter.agent` sets
`durable.hooks = replay_safe_agent_hooks(agent.hooks)`; a worker start calls
`prepare_tracing()`. The fixture below calls `prepare_tracing()` as well (it is
idempotent), except in the subprocess test, which checks that the worker does it.

Agents, hooks and workflows live at module level because Temporal's sandbox re-imports this
module; what workflow code notes goes to a ledger file (passed through the sandbox). The
trace collector is made by the test, outside the sandbox, and registered on the SDK's
process-wide provider, which workflow code in the sandbox uses too.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    AgentHooks,
    RunConfig,
    RunContextWrapper,
    RunHooks,
    Span,
    Tool,
    Trace,
    TracingProcessor,
    set_tracing_disabled,
)
from agents.tracing import get_trace_provider

import bridge
from adapters.openai_agents import (
    AgentSettings,
    Script,
    ScriptedModel,
    activity_as_tool,
    approval_signal,
    configure,
    run_agent,
)
from adapters.openai_agents._hooks import replay_safe, replay_safe_agent_hooks
from adapters.openai_agents._tracing import (
    ReplaySafeProcessor,
    ReplaySafeTraceProvider,
    prepare_tracing,
)
from bridge.journal.context import JournaledContext
from bridge.workflow import _current_context
from tests import ledger
from tests.conftest import Workers, wait_for_status

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01)


@pytest.fixture(autouse=True)
def offline_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Scripted models only (and no key, so no trace ever leaves this machine)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    configure(AgentSettings(blob_url=f"sqlite:///{tmp_path}/blobs.db"))
    yield
    configure()


# -- the agent ------------------------------------------------------------------------------
@bridge.activity(retry=FAST, name="t_rs_lookup")
async def lookup(topic: str) -> str:
    """Look a topic up.

    Args:
        topic: What to look up.
    """
    return f"facts about {topic}"


@bridge.activity(retry=FAST, name="t_rs_save")
async def save(text: str) -> str:
    """Save a text.

    Args:
        text: What to save.
    """
    return "saved"


MODEL = ScriptedModel(
    [
        Script.tool_call("lookup", {"topic": "otters"}),
        Script.tool_call("save", {"text": "Otters hold hands."}),
        Script.text("Done."),
    ],
    name="t-replay-safe",
)
TOOLS = [
    activity_as_tool(lookup, name="lookup"),
    activity_as_tool(save, name="save", needs_approval=True),
]


class LedgerRunHooks(RunHooks[Any]):
    """Run hooks with a side effect: each callback is a ledger row."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _note(self, what: str) -> None:
        ledger.record(self.path, f"run.{what}")

    async def on_agent_start(self, context: Any, agent: Agent[Any]) -> None:
        self._note("on_agent_start")

    async def on_agent_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        self._note("on_agent_end")

    async def on_llm_start(self, context: Any, agent: Agent[Any], *args: Any) -> None:
        self._note("on_llm_start")

    async def on_llm_end(self, context: Any, agent: Agent[Any], response: Any) -> None:
        self._note("on_llm_end")

    async def on_tool_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool
    ) -> None:
        self._note(f"on_tool_start:{tool.name}")

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        self._note(f"on_tool_end:{tool.name}")


class LedgerAgentHooks(AgentHooks[Any]):
    """Agent hooks with a side effect: each callback is a ledger row."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _note(self, what: str) -> None:
        ledger.record(self.path, f"agent.{what}")

    async def on_start(self, context: Any, agent: Agent[Any]) -> None:
        self._note("on_start")

    async def on_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        self._note("on_end")

    async def on_llm_start(self, context: Any, agent: Agent[Any], *args: Any) -> None:
        self._note("on_llm_start")

    async def on_llm_end(self, context: Any, agent: Agent[Any], response: Any) -> None:
        self._note("on_llm_end")

    async def on_tool_start(self, context: Any, agent: Agent[Any], tool: Tool) -> None:
        self._note(f"on_tool_start:{tool.name}")

    async def on_tool_end(self, context: Any, agent: Agent[Any], tool: Tool, result: Any) -> None:
        self._note(f"on_tool_end:{tool.name}")


def make_agent(path: str) -> Agent[Any]:
    return Agent(
        name="archivist",
        instructions="Look it up, save it, answer.",
        model=MODEL,
        tools=TOOLS,
        hooks=LedgerAgentHooks(path),
    )


@bridge.workflow
async def hooked_and_traced(ctx: bridge.Context, path: str) -> str:
    """The user's code as they write it: plain hooks, tracing on; run_agent makes it safe."""
    ledger.record(path, "workflow body")
    result = await run_agent(
        make_agent(path),
        "Save what you know about otters.",
        hooks=LedgerRunHooks(path),
        run_config=RunConfig(workflow_name="replay-safe"),
    )
    return str(result.final_output)


@bridge.workflow
async def wrapped_by_hand(ctx: bridge.Context, path: str) -> str:
    """The same, wrapped explicitly with this file's functions (independent of the wiring)."""
    ledger.record(path, "workflow body")
    agent = make_agent(path)
    agent.hooks = replay_safe_agent_hooks(agent.hooks)
    result = await run_agent(
        agent,
        "Save what you know about otters.",
        hooks=replay_safe(LedgerRunHooks(path)),
        run_config=RunConfig(workflow_name="replay-safe"),
    )
    return str(result.final_output)


# What one live pass of the run calls: three model calls (lookup, save, answer), two tools.
# The agent starts twice: the SDK starts it again when the run resumes after the approval.
LIVE_HOOKS = {
    "run.on_agent_start": 2,
    "run.on_llm_start": 3,
    "run.on_llm_end": 3,
    "run.on_tool_start:lookup": 1,
    "run.on_tool_end:lookup": 1,
    "run.on_tool_start:save": 1,
    "run.on_tool_end:save": 1,
    "run.on_agent_end": 1,
    "agent.on_start": 2,
    "agent.on_llm_start": 3,
    "agent.on_llm_end": 3,
    "agent.on_tool_start:lookup": 1,
    "agent.on_tool_end:lookup": 1,
    "agent.on_tool_start:save": 1,
    "agent.on_tool_end:save": 1,
    "agent.on_end": 1,
}


# -- collecting spans -----------------------------------------------------------------------
class Collector(TracingProcessor):
    """Every trace and span callback, as (event, id, span type); inert once closed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.open = True
        self._lock = threading.Lock()

    def _add(self, event: str, id: str, kind: str) -> None:
        if self.open:
            with self._lock:
                self.events.append((event, id, kind))

    def on_trace_start(self, trace: Trace) -> None:
        self._add("trace_start", trace.trace_id, "trace")

    def on_trace_end(self, trace: Trace) -> None:
        self._add("trace_end", trace.trace_id, "trace")

    def on_span_start(self, span: Span[Any]) -> None:
        self._add("span_start", span.span_id, span.span_data.type)

    def on_span_end(self, span: Span[Any]) -> None:
        self._add("span_end", span.span_id, span.span_data.type)

    def shutdown(self) -> None:
        self.open = False

    def force_flush(self) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    """Tracing on, with only this collector behind the SDK's provider, for one test."""
    prepare_tracing()
    provider = get_trace_provider()
    assert isinstance(provider, ReplaySafeTraceProvider)
    guard = provider._multi_processor
    assert isinstance(guard, ReplaySafeProcessor)
    before = list(guard.inner._processors)
    was_disabled = provider._manual_disabled
    collect = Collector()
    provider.set_processors([collect])
    set_tracing_disabled(False)
    yield collect
    collect.open = False
    provider.set_processors(before)
    provider._manual_disabled = was_disabled
    provider._refresh_disabled_flag()


# -- the tests ------------------------------------------------------------------------------
async def _run_with_a_replay(
    client: bridge.Client, workflow: bridge.WorkflowDefinition[..., str], id: str, path: str
) -> str:
    async with client.worker([workflow]):
        handle = await client.start(workflow, path, id=id)
        desc = await wait_for_status(client, id, bridge.Status.WAITING)
        assert desc.waiting_for == approval_signal("save")
    # No worker holds the run now: the one that resumes it re-executes the loop so far.
    await handle.signal(approval_signal("save"), True)
    async with client.worker([workflow]):
        return await handle.result(timeout=30)


def _assert_each_reported_once(events: list[tuple[str, str, str]]) -> Counter[str]:
    """Each trace and span started once and ended once; the span types counted."""
    by_id: dict[str, list[str]] = {}
    for event, id, _kind in events:
        by_id.setdefault(id, []).append(event)
    for id, seen in by_id.items():
        kind = "trace" if seen[0].startswith("trace") else "span"
        assert seen == [f"{kind}_start", f"{kind}_end"], f"{id}: {seen}"
    return Counter(kind for event, _id, kind in events if event == "span_start")


@pytest.mark.parametrize("workflow", [hooked_and_traced, wrapped_by_hand], ids=["wired", "by-hand"])
async def test_hooks_and_spans_of_replayed_steps_are_not_repeated(
    client: bridge.Client,
    tmp_path: Path,
    collector: Collector,
    workflow: bridge.WorkflowDefinition[..., str],
) -> None:
    path = str(tmp_path / "effects.db")
    id = f"replay-safe-{workflow.name}-{client.backend_name}"
    assert await _run_with_a_replay(client, workflow, id, path) == "Done."
    counts = ledger.counts(path)
    assert counts.pop("workflow body") == 2  # the run did replay, on this backend too
    assert dict(counts) == LIVE_HOOKS
    assert MODEL.invocations(id) == [0, 1, 2]

    # One live pass, as Temporal reports it when nothing replays: one trace (the run resumed
    # after the approval continues the trace of the run that asked), a task and an agent
    # span per Runner.run, a turn per model call, a function span per tool call (save has
    # one where it asked for approval and one where it ran).
    spans = _assert_each_reported_once(collector.events)
    traces = {id for event, id, _ in collector.events if event == "trace_start"}
    assert len(traces) == 1
    assert spans == Counter({"task": 2, "agent": 2, "turn": 3, "function": 3})


async def test_replay_safe_hooks_forward_everything_outside_a_workflow(tmp_path: Path) -> None:
    """Outside a workflow nothing replays: the wrappers are transparent."""
    path = str(tmp_path / "plain.db")
    hooks = replay_safe(LedgerRunHooks(path))
    agent_hooks = replay_safe_agent_hooks(LedgerAgentHooks(path))
    assert hooks is not None and agent_hooks is not None
    assert replay_safe(hooks) is hooks and replay_safe_agent_hooks(agent_hooks) is agent_hooks
    assert replay_safe(None) is None and replay_safe_agent_hooks(None) is None
    agent = make_agent(path)
    wrapper = RunContextWrapper(context=None)
    await hooks.on_agent_start(wrapper, agent)  # type: ignore[arg-type]
    await hooks.on_llm_start(wrapper, agent, None, [])
    await hooks.on_llm_end(wrapper, agent, None)  # type: ignore[arg-type]
    await agent_hooks.on_tool_start(wrapper, agent, TOOLS[0])
    await agent_hooks.on_tool_end(wrapper, agent, TOOLS[0], "x")
    assert dict(ledger.counts(path)) == {
        "run.on_agent_start": 1,
        "run.on_llm_start": 1,
        "run.on_llm_end": 1,
        "agent.on_tool_start:lookup": 1,
        "agent.on_tool_end:lookup": 1,
    }


def test_span_ids_in_a_workflow_are_the_same_on_every_execution(collector: Collector) -> None:
    """A replay makes the spans of the first execution again with the same ids, so a span
    begun before a crash and ended after it is one span to the processors; another run of
    the same workflow id (a later start) gets other ids, and outside a workflow ids stay
    random."""
    provider = get_trace_provider()

    def ids(ctx: bridge.Context) -> list[str]:
        token = _current_context.set(ctx)
        try:
            return [provider.gen_trace_id(), provider.gen_span_id(), provider.gen_span_id()]
        finally:
            _current_context.reset(token)

    def execution(started_at: float) -> JournaledContext:
        return JournaledContext(
            workflow_id="ids-1",
            journal=None,  # type: ignore[arg-type]  # never written to here
            steps=[],
            started_at=started_at,
            attempt=1,
        )

    first = ids(execution(1000.0))
    assert first == ids(execution(1000.0))  # a replay of the same run
    assert len(set(first)) == 3
    assert set(first).isdisjoint(ids(execution(2000.0)))  # the id reused by a later run
    assert provider.gen_span_id() != provider.gen_span_id()


# -- Temporal's sandbox ---------------------------------------------------------------------
ANSWER_MODEL = ScriptedModel([Script.text("Hello.")], name="t-traced-by-default")


@bridge.workflow
async def traced_by_default(ctx: bridge.Context) -> str:
    """Tracing on, no `set_tracing_disabled` anywhere in this module: no user line."""
    agent = Agent(name="answerer", instructions="Answer.", model=ANSWER_MODEL)
    return str((await run_agent(agent, "hi", run_config=RunConfig())).final_output)


@pytest.mark.parametrize("backend_name", ["temporal"])
async def test_a_fresh_worker_traces_inside_temporal_sandbox(
    client: bridge.Client, workers: Workers
) -> None:
    """Root cause: the SDK made its trace provider lazily, on first use, so in a fresh worker
    that was workflow code in the sandbox, where building the default exporter's HTTP client
    imports truststore, which calls the refused `platform.system()`. A worker start now makes
    the provider (`prepare_tracing`) outside the sandbox. A fresh process, because the
    provider is process-wide and this one's is made already."""
    workers.start("tests.adapters.test_openai_agents_replay_safe")
    handle = await client.start(traced_by_default, id="traced-by-default")
    assert await asyncio.wait_for(handle.result(timeout=30), 40) == "Hello."
