"""MCP servers of an SDK agent, unchanged, inside a bridge workflow: every request a step.

A small stdio MCP server (mcp's own `MCPServer`, run as a subprocess by the SDK's
`MCPServerStdio`) keeps notes and writes each note, and each start of its process, to a
ledger file: the side effects the tests count. The workflow waits for a signal after the
agent's run, which makes sql and langgraph run the workflow code again from the top: the
journal must answer the tool listing and the tool call, so no note is taken twice.
Module-level agents and workflows: Temporal's sandbox re-imports this module.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.mcp import MCPServerStdio

import bridge
from adapters.openai_agents import Script, ScriptedModel
from tests.conftest import BACKENDS, wait_for_status

set_tracing_disabled(True)  # offline: no trace export to OpenAI

MODEL_CALL = "openai_agents.model_call"
LIST_TOOLS = "openai_agents.mcp_list_tools"
CALL_TOOL = "openai_agents.mcp_call_tool"
MCP_REQUEST = "openai_agents.mcp_request"

#: The MCP server: `python -c NOTES_SERVER <ledger>`.
NOTES_SERVER = '''
import sys
from mcp.server.mcpserver import MCPServer

ledger = sys.argv[1]
with open(ledger, "a") as log:
    log.write("start\\n")
server = MCPServer("notes")


@server.tool()
def add_note(text: str) -> str:
    """Keep a note."""
    with open(ledger, "a") as log:
        log.write(f"note {text}\\n")
    return f"noted: {text}"


@server.prompt()
def house_style() -> str:
    """How notes are written here."""
    return "Write notes in capitals."


server.run()
'''


def notes_server(ledger: str) -> MCPServerStdio:
    return MCPServerStdio(
        params={"command": sys.executable, "args": ["-c", NOTES_SERVER, ledger]},
        name="notes",
        client_session_timeout_seconds=30,
    )


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


def _take_note(items: list[Any]) -> Any:
    said = next(i["content"] for i in reversed(items) if i.get("role") == "user")
    return Script.tool_call("add_note", {"text": said.removeprefix("Note: ")})


def _report(items: list[Any]) -> Any:
    output = next(i["output"] for i in reversed(items) if i.get("type") == "function_call_output")
    # The SDK hands an MCP tool's text content to the model as input_text parts.
    text = output if isinstance(output, str) else "".join(part["text"] for part in output)
    return Script.text(f"done: {text}")


NOTE_MODEL = ScriptedModel([_take_note, _report], name="mcp-notes")


async def take_note(ledger: str, text: str) -> str:
    """SDK code: an agent with an MCP server, run with `Runner.run`."""
    server = notes_server(ledger)
    agent = Agent(
        name="notetaker", instructions="Take notes.", model=NOTE_MODEL, mcp_servers=[server]
    )
    return str((await Runner.run(agent, f"Note: {text}")).final_output)


@bridge.workflow(name="mcp_note")
async def note(ctx: bridge.Context, ledger: str, text: str) -> str:
    """The server is not connected by workflow code (Temporal's sandbox could not): each
    step connects it for its one request."""
    said = await take_note(ledger, text)
    await ctx.wait_for_signal("go")
    return said


@bridge.workflow(name="mcp_note_connected")
async def note_connected(ctx: bridge.Context, ledger: str, text: str) -> str:
    """As in the SDK's examples: the workflow code opens the connection itself."""
    server = notes_server(ledger)
    async with server:
        agent = Agent(name="notetaker", model=NOTE_MODEL, mcp_servers=[server])
        said = str((await Runner.run(agent, f"Note: {text}")).final_output)
        await ctx.wait_for_signal("go")
    return said


async def _run_past_a_signal(
    client: bridge.Client, workflow: Any, id: str, ledger: Path, text: str
) -> str:
    async with client.worker([workflow]):
        handle = await client.start(workflow, str(ledger), text, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING, timeout=60)
        await handle.signal("go", True)
        return str(await handle.result(timeout=60))


async def test_an_mcp_tool_call_is_a_journaled_step_and_is_not_repeated(
    client: bridge.Client, tmp_path: Path
) -> None:
    id = f"mcp-note-{client.backend_name}-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "notes.log"
    assert await _run_past_a_signal(client, note, id, ledger, "otters") == "done: noted: otters"
    history = await client.history(id)
    steps = bridge.history.step_sequence(history)
    # Each turn lists the tools (as the SDK asks each turn), the first calls one.
    assert steps == [LIST_TOOLS, MODEL_CALL, CALL_TOOL, LIST_TOOLS, MODEL_CALL], steps
    # One process per step, none on the replay after the signal; one note.
    assert ledger_lines(ledger) == ["start", "start", "note otters", "start"]
    call = next(e for e in history if e.name == CALL_TOOL and e.args)
    assert call.args["request"]["arguments"] == {"text": "otters"}
    listed = next(e for e in history if e.name == LIST_TOOLS and e.result)
    assert [t["name"] for t in listed.result["result"]] == ["add_note"]
    assert NOTE_MODEL.invocations(id) == [0, 1]


async def test_a_server_connected_by_workflow_code_is_opened_again_on_replay_not_called(
    client: bridge.Client, tmp_path: Path
) -> None:
    """`async with server:` in workflow code, as the SDK's examples write it, on every
    engine. sql and langgraph run workflow code in the worker's own loop, so the connection
    is the workflow's: the run resumed after the signal connects again (a second start) and
    reads both steps from the journal (still one note). Temporal's sandbox refuses the
    connection, so there `connect()` in workflow code does nothing and each step connects
    the server for its own call (one start per step, none on the replay)."""
    id = f"mcp-connected-{client.backend_name}-{uuid.uuid4().hex[:8]}"
    ledger = tmp_path / "notes.log"
    out = await _run_past_a_signal(client, note_connected, id, ledger, "herons")
    assert out == "done: noted: herons"
    if client.backend_name == "temporal":
        assert ledger_lines(ledger) == ["start", "start", "note herons", "start"]
    else:
        assert ledger_lines(ledger) == ["start", "note herons", "start"]
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps == [LIST_TOOLS, MODEL_CALL, CALL_TOOL, LIST_TOOLS, MODEL_CALL], steps


# -- prompts are journaled too: dynamic instructions read them through the durable agent ----
async def house_style(context: Any, agent: Agent[Any]) -> str:
    prompt = await agent.mcp_servers[0].get_prompt("house_style")
    return prompt.messages[0].content.text


STYLE_MODEL = ScriptedModel([Script.text("OK")], name="mcp-style")


@bridge.workflow(name="mcp_style")
async def styled(ctx: bridge.Context, ledger: str) -> str:
    agent = Agent(
        name="styled",
        instructions=house_style,
        model=STYLE_MODEL,
        mcp_servers=[notes_server(ledger)],
    )
    return str((await Runner.run(agent, "hi")).final_output)


@pytest.mark.parametrize("backend_name", BACKENDS[:1], indirect=True)
async def test_a_prompt_read_by_dynamic_instructions_is_a_journaled_step(
    client: bridge.Client, tmp_path: Path
) -> None:
    id = f"mcp-style-{uuid.uuid4().hex[:8]}"
    async with client.worker([styled]):
        assert await client.execute(styled, str(tmp_path / "notes.log"), id=id, timeout=60) == "OK"
    history = await client.history(id)
    assert bridge.history.step_sequence(history) == [LIST_TOOLS, MCP_REQUEST, MODEL_CALL]
    assert STYLE_MODEL.calls[-1].system_instructions == "Write notes in capitals."
