"""Three agents written for the plain SDK, for the crash test of unchanged agent code.

tests/adapters/test_openai_agents_crash_unchanged.py runs each body once outside any
workflow and once as a workflow on a worker subprocess it kills with SIGKILL mid-run; this
module is what that worker imports. Nothing here knows about the bridge except the
`@bridge.workflow` line around each body: `Runner.run`, `@function_tool`, `agent.as_tool()`
and `RunHooks` are used as the SDK documents them.

Side effects go to a ledger file (tests/ledger.py) named by the run's context object, so a
tool and a hook count their calls across the killed process, and the plain run and the
durable run each count into a ledger of their own. Agents and workflows live at module level
because Temporal's sandbox re-imports this module; it imports no HTTP server for the same
reason.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    ModelResponse,
    RunContextWrapper,
    RunHooks,
    Runner,
    Tool,
    function_tool,
    set_tracing_disabled,
)

import bridge
from adapters.openai_agents import AgentSettings, configure
from tests import ledger

set_tracing_disabled(True)  # no trace export: the only endpoint is the test's fake server

#: The test's directory, set for the worker subprocess: its blob store goes there (Temporal
#: has no journal file to put it next to), and a failed model call is retried quickly.
DIR_ENV = "CRASH_AGENTS_DIR"
if DIR_ENV in os.environ:
    configure(
        AgentSettings(
            model_retry=bridge.RetryPolicy(max_attempts=5, initial_interval=0.1),
            blob_url=f"sqlite:///{os.environ[DIR_ENV]}/blobs.db",
        )
    )

MODEL = "gpt-4o-mini"  # a name: the endpoint is OPENAI_BASE_URL, as for any SDK user


@dataclass
class Effects:
    """The run context: where this run's side effects are written."""

    ledger: str


# -- 1. a tool-using agent whose tool has a side effect -------------------------------------
@function_tool
async def send_note(ctx: RunContextWrapper[Effects], recipient: str, text: str) -> str:
    """Send a note to someone (a side effect: one ledger row per call).

    Args:
        recipient: Who gets the note.
        text: What the note says.
    """
    ledger.record(ctx.context.ledger, f"send_note|{recipient}|{text}")
    return f"sent to {recipient}"


messenger_agent = Agent[Effects](
    name="c_messenger",
    instructions="Send the note the user asks for, then confirm.",
    model=MODEL,
    tools=[send_note],
)


async def tool_agent(text: str, ledger_path: str) -> str:
    """The user's code: one `Runner.run` of an agent with a side-effecting tool."""
    result = await Runner.run(messenger_agent, text, context=Effects(ledger_path))
    return str(result.final_output)


# -- 2. agents as tools: the sub-agent has a side-effecting tool of its own ----------------
@function_tool
async def file_summary(ctx: RunContextWrapper[Effects], summary: str) -> str:
    """File a summary in the archive (a side effect: one ledger row per call).

    Args:
        summary: The summary to file.
    """
    ledger.record(ctx.context.ledger, f"file_summary|{summary}")
    return "filed"


summarizer_agent = Agent[Effects](
    name="c_summarizer",
    instructions="Summarize the text, file the summary, then return it.",
    model=MODEL,
    tools=[file_summary],
)
orchestrator_agent = Agent[Effects](
    name="c_orchestrator",
    instructions="Always use your tools.",
    model=MODEL,
    tools=[summarizer_agent.as_tool(tool_name="summarize", tool_description="Summarize a text.")],
)


async def agents_as_tools(text: str, ledger_path: str) -> list[str]:
    """The user's code: an orchestrator that calls a sub-agent through `as_tool()`."""
    result = await Runner.run(orchestrator_agent, text, context=Effects(ledger_path))
    tool_outputs = [str(i.output) for i in result.new_items if i.type == "tool_call_output_item"]
    return [*tool_outputs, str(result.final_output)]


# -- 3. run hooks with side effects ----------------------------------------------------------
def _said(response: ModelResponse) -> str:
    """What a model answer was, the same in every run: a tool call's name or the text."""
    parts = []
    for item in response.output:
        if item.type == "function_call":
            parts.append(f"call {item.name}")
        elif item.type == "message":
            parts.append("".join(getattr(c, "text", "") for c in item.content))
    return "; ".join(parts)


class LedgerHooks(RunHooks[Effects]):
    """Run hooks with a side effect each: a ledger row per model call and per tool call, at
    its start and at its end (a start hook fires before the step, so a crash during the
    step is what would make it fire twice)."""

    async def on_llm_start(
        self,
        context: RunContextWrapper[Effects],
        agent: Agent[Effects],
        system_prompt: str | None,
        input_items: list[Any],
    ) -> None:
        ledger.record(context.context.ledger, f"on_llm_start|{agent.name}|{len(input_items)}")

    async def on_tool_start(
        self, context: RunContextWrapper[Effects], agent: Agent[Effects], tool: Tool
    ) -> None:
        call = getattr(context, "tool_call_id", "")
        ledger.record(context.context.ledger, f"on_tool_start|{agent.name}|{tool.name}|{call}")

    async def on_llm_end(
        self, context: RunContextWrapper[Effects], agent: Agent[Effects], response: ModelResponse
    ) -> None:
        ledger.record(context.context.ledger, f"on_llm_end|{agent.name}|{_said(response)}")

    async def on_tool_end(
        self, context: RunContextWrapper[Effects], agent: Agent[Effects], tool: Tool, result: Any
    ) -> None:
        ledger.record(context.context.ledger, f"on_tool_end|{agent.name}|{tool.name}|{result}")


@function_tool
async def check_stock(item: str) -> str:
    """How many of an item are in stock.

    Args:
        item: The item's name.
    """
    return f"3 of {item}"


clerk_agent = Agent[Effects](
    name="c_clerk",
    instructions="Check the stock, then answer.",
    model=MODEL,
    tools=[check_stock],
)


async def hooked_agent(text: str, ledger_path: str) -> str:
    """The user's code: `Runner.run` with `RunHooks` that write a ledger."""
    result = await Runner.run(clerk_agent, text, context=Effects(ledger_path), hooks=LedgerHooks())
    return str(result.final_output)


# -- 4. a tool that is still running when its worker dies ----------------------------------
#: The file `deliver` waits for before its side effect (in the run's ledger's folder).
GATE = "deliver.gate"


@function_tool
async def deliver(ctx: RunContextWrapper[Effects], recipient: str) -> str:
    """Deliver a parcel (waits for the gate file, then one ledger row).

    Args:
        recipient: Who gets the parcel.
    """
    Path(ctx.context.ledger).with_name("deliver.started").touch()
    gate = Path(ctx.context.ledger).with_name(GATE)
    while not gate.exists():
        await asyncio.sleep(0.02)
    ledger.record(ctx.context.ledger, f"deliver|{recipient}")
    return f"delivered to {recipient}"


courier_agent = Agent[Effects](
    name="c_courier",
    instructions="Deliver the parcel the user asks for, then confirm.",
    model=MODEL,
    tools=[deliver],
)


async def courier(text: str, ledger_path: str) -> str:
    """The user's code: `Runner.run` with a tool that takes a while."""
    result = await Runner.run(courier_agent, text, context=Effects(ledger_path))
    return str(result.final_output)


# -- the same bodies as workflows ------------------------------------------------------------
@bridge.workflow(name="c_courier")
async def courier_wf(ctx: bridge.Context, text: str, ledger_path: str) -> str:
    return await courier(text, ledger_path)


@bridge.workflow(name="c_tool_agent")
async def tool_agent_wf(ctx: bridge.Context, text: str, ledger_path: str) -> str:
    return await tool_agent(text, ledger_path)


@bridge.workflow(name="c_agents_as_tools")
async def agents_as_tools_wf(ctx: bridge.Context, text: str, ledger_path: str) -> list[str]:
    return await agents_as_tools(text, ledger_path)


@bridge.workflow(name="c_hooked_agent")
async def hooked_agent_wf(ctx: bridge.Context, text: str, ledger_path: str) -> str:
    return await hooked_agent(text, ledger_path)
