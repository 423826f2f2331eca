"""An agent workflow for the crash test, importable by worker subprocesses.

The tools and the model count their calls in files under $AGENTS_TEST_DIR (a ledger of tool
calls, the ScriptedModel's invocation counter), so the test can count across a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agents import Agent, set_tracing_disabled

import bridge
from adapters.openai_agents import (
    AgentSettings,
    Script,
    ScriptedModel,
    activity_as_tool,
    configure,
    run_agent,
)
from tests import ledger

# Offline: nothing may try to export traces to OpenAI.
set_tracing_disabled(True)

TEST_DIR_ENV = "AGENTS_TEST_DIR"
if TEST_DIR_ENV in os.environ:
    # A worker subprocess of a test: conversation blobs in the test's directory (on the sql
    # backend they would go next to the journal anyway; Temporal has no journal file).
    configure(AgentSettings(blob_url=f"sqlite:///{os.environ[TEST_DIR_ENV]}/blobs.db"))
FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01)


def files_dir() -> Path:
    return Path(os.environ[TEST_DIR_ENV])


@bridge.activity(retry=FAST)
async def find_pages(query: str, *, idempotency_key: str) -> list[str]:
    """Search the web and return the URLs of relevant pages.

    Args:
        query: What to search for.
    """
    await asyncio.to_thread(ledger.record, files_dir() / "ledger.db", f"search|{idempotency_key}")
    return [f"https://example.com/{query.replace(' ', '-')}"]


@bridge.activity(retry=FAST)
async def read_page(url: str, *, idempotency_key: str) -> str:
    """Fetch a page and return its main text. Waits for the test's gate file first.

    Args:
        url: The page to fetch.
    """
    while not (files_dir() / "gate").exists():
        await asyncio.sleep(0.02)
    await asyncio.to_thread(ledger.record, files_dir() / "ledger.db", f"fetch|{idempotency_key}")
    return f"The text of {url}."


CRASH_MODEL = ScriptedModel(
    [
        Script.tool_call("find_pages", {"query": "durable agents"}),
        Script.tool_call("read_page", {"url": "https://example.com/durable-agents"}),
        Script.text("Durable agents resume where they stopped."),
    ],
    name="crash-agent",
    counter_path=(
        str(Path(os.environ[TEST_DIR_ENV]) / "model_calls.db")
        if TEST_DIR_ENV in os.environ
        else None
    ),
)

crash_agent = Agent(
    name="researcher",
    instructions="Search, read the best page, answer in one sentence.",
    model=CRASH_MODEL,
    tools=[activity_as_tool(find_pages), activity_as_tool(read_page)],
)


@bridge.workflow
async def crash_research(ctx: bridge.Context, question: str) -> str:
    result = await run_agent(crash_agent, question)
    return str(result.final_output)
