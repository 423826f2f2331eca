"""The adapter's scenario for the conformance suite: an agent loop with tools, on every backend.

The harness (`bridge.testing`) knows no adapter. It loads the plugins of the `bridge.testing`
entry-point group, and this module is the adapter's: its `bridge_test_scenarios` hook hands
the suite this module, whose `__all__` names the scenario and the fixture it uses. A project
that runs the suite (`from bridge.testing.suite import *`) with this package installed runs
`test_agent_loop_with_tools` once per backend under test, like the suite's own scenarios.

Offline: the agent's model is a `ScriptedModel` (`_scenario_workflows.py`, kept apart because
Temporal's sandbox re-imports a workflow's module for every run).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import bridge
from adapters.openai_agents import AgentSettings, ScriptedModel, configure
from adapters.openai_agents import _scenario_workflows as agents_wf
from bridge.plugins import hookimpl
from bridge.testing.scenario import new_id, result_of

__all__ = ["bridge_scripted_model", "test_agent_loop_with_tools"]


@hookimpl
def bridge_test_scenarios() -> list[ModuleType]:
    return [sys.modules[__name__]]


@pytest.fixture
def bridge_scripted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ScriptedModel]:
    """The scenario's ScriptedModel, with this process's agents made offline: no OpenAI key,
    quick model retries, conversation blobs in the test's directory."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    configure(
        AgentSettings(
            model_retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.05, backoff=2.0),
            blob_url=f"sqlite:///{tmp_path}/blobs.db",
        )
    )
    yield agents_wf.MODEL
    configure()


@pytest.mark.asyncio
async def test_agent_loop_with_tools(
    bridge_client: bridge.Client, bridge_scripted_model: ScriptedModel
) -> None:
    """Each model turn and each tool call is one journaled step; no turn is asked twice."""
    run = new_id("agent")
    scenario = "agent loop with tools"
    async with bridge_client.worker([agents_wf.research]):
        await bridge_client.start(agents_wf.research, "otters", id=run)
        result = await result_of(bridge_client, run, scenario=scenario, timeout=60)
    assert result == agents_wf.ANSWER, f"{scenario}: final output {result!r}"
    turns = bridge_scripted_model.invocations(run)
    assert turns == [0, 1, 2], (
        f"{scenario}: the model was asked for turns {turns}, expected [0, 1, 2]"
    )
    last = [c for c in bridge_scripted_model.calls if c.workflow_id == run][-1]
    outputs = [i["output"] for i in last.input if i.get("type") == "function_call_output"]
    # What the plain SDK shows the model for a tool returning list[Source]: the result itself
    # (decoded back to its type from the journal), as text.
    expected_sources = str(
        [agents_wf.Source(f"https://example.com/otters/{i}", f"otters #{i}") for i in range(2)]
    )
    assert outputs and outputs[0] == expected_sources, (
        f"{scenario}: the search tool's result reached the model as {outputs[:1]}"
    )
    assert outputs[1:] == [
        "the text of https://example.com/otters/0",
        "the text of https://example.com/otters/1",
    ], f"{scenario}: the page tool's results reached the model as {outputs[1:]}"
    if "history_export" in bridge_client.backend.capabilities:
        history = await bridge_client.history(run)
        in_order = sorted((e for e in history if e.step is not None), key=lambda e: e.step or 0)
        steps = bridge.history.step_sequence(in_order)
        assert steps == agents_wf.EXPECTED_STEPS, (
            f"{scenario}: journaled steps {steps}, expected {agents_wf.EXPECTED_STEPS}"
        )
