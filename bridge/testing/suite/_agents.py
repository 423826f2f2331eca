"""The agent loop with tools: an OpenAI Agents SDK agent on a ScriptedModel."""

from __future__ import annotations

import json
from typing import Any

import pytest

import bridge
from bridge.testing.suite._support import new_id, result_of

__all__ = ["test_agent_loop_with_tools"]


@pytest.mark.asyncio
async def test_agent_loop_with_tools(
    bridge_client: bridge.Client, bridge_scripted_model: Any
) -> None:
    """Each model turn and each tool call is one journaled step; no turn is asked twice."""
    from bridge.testing import _agent_workflows as agents_wf

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
    expected_sources = [
        {"url": "https://example.com/otters/0", "title": "otters #0"},
        {"url": "https://example.com/otters/1", "title": "otters #1"},
    ]
    assert outputs and json.loads(outputs[0]) == expected_sources, (
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
