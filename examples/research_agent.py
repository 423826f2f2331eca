"""The seeds' research agent as one OpenAI Agents SDK `Agent`, durable on any backend.

The seed's Temporal workflow searches the web, extracts the content of each source and has an
LLM summarize it. Here the model drives the same steps as an agent: its tools are bridge
activities (`activity_as_tool`), each call a journaled step with the seed's retry policies,
and every model call is a journaled step too. Saving the report needs a person's approval:
the run parks until `bridge signal ID approval:save_report true` (or `false`) arrives.

Offline by default: `OFFLINE_MODEL` is a ScriptedModel that reads the tool results and writes
the summary itself, and the search and the pages come from a small local corpus. With
OPENAI_API_KEY set the same agent runs on `gpt-4o-mini` (RESEARCH_MODEL overrides the name).
The second page fails its first fetch (the seeds' injected failure), so the history shows a
retried step that did not repeat anything before it.

Run it with `bridge demo` (which approves the save itself), or with a worker and
`bridge start examples.research_agent:research '"durable execution"'`.

Nothing heavy happens at import (no I/O; the agent is built on first use): Temporal's sandbox
re-imports this module for every run.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from agents import Agent, set_tracing_disabled
from pydantic import BaseModel

import bridge
from adapters.openai_agents import Script, ScriptedModel, activity_as_tool, run_agent

__all__ = [
    "OFFLINE_MODEL",
    "ResearchResult",
    "extract_content",
    "research",
    "research_agent",
    "save_report",
    "search_web",
]

#: Where `save_report` writes, relative to the working directory (next to the journal).
DEMO_DB = Path(".bridge") / "demo.db"

INSTRUCTIONS = (
    "You are a research assistant. Search the web for the topic, extract the content of "
    "each source you found (call extract_content for all of them at once), write a short "
    "summary of what the sources say, save it with save_report, then answer with the "
    "summary, the source URLs and the saved report's id (null if saving was refused)."
)

_CORPUS = {
    "https://temporal.io/blog/durable-execution": (
        "Durable execution records every step of a workflow so that a crash resumes it "
        "where it stopped instead of starting over."
    ),
    "https://docs.dbos.dev/architecture": (
        "A journal of steps in an ordinary database is enough to make a Python function "
        "durable: each step's output is written before the next step starts."
    ),
    "https://langchain-ai.github.io/langgraph/persistence": (
        "Checkpointers save an agent's state after each node, which gives crash recovery, "
        "time travel and human-in-the-loop pauses."
    ),
}


class ResearchResult(BaseModel):
    """What the agent answers with (its structured output)."""

    summary: str
    sources: list[str]
    report_id: int | None


@bridge.activity(
    retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.2),
    timeout=timedelta(seconds=30),
)
async def search_web(query: str, max_results: int) -> list[str]:
    """Search the web and return the URLs of relevant pages.

    Args:
        query: What to search for.
        max_results: How many URLs to return at most.
    """
    # Offline stand-in for a search API: every query finds the local corpus.
    return list(_CORPUS)[:max_results]


@bridge.activity(
    retry=bridge.RetryPolicy(max_attempts=2, initial_interval=0.2),
    timeout=timedelta(seconds=60),
)
async def extract_content(url: str) -> str:
    """Fetch a page and return its main text.

    Args:
        url: The page to read.
    """
    info = bridge.activity_info()
    if url == list(_CORPUS)[1] and info.attempt == 1:
        # The seeds' injected failure: the first fetch of this page fails, the retry works.
        raise ConnectionError(f"injected failure: connection reset while fetching {url}")
    return _CORPUS.get(url, f"No readable content at {url}.")


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.2))
def save_report(topic: str, summary: str, sources: list[str], *, idempotency_key: str) -> int:
    """Save the research report and return its id.

    Args:
        topic: The topic researched.
        summary: The summary of the sources.
        sources: The URLs the summary is based on.
    """
    DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(DEMO_DB) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS research_reports ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " idempotency_key TEXT NOT NULL UNIQUE,"
            " topic TEXT NOT NULL, summary TEXT NOT NULL, sources TEXT NOT NULL)"
        )
        # A retry or a replay passes the same key: one row per approved save, whatever happens.
        conn.execute(
            "INSERT OR IGNORE INTO research_reports (idempotency_key, topic, summary, sources)"
            " VALUES (?, ?, ?, ?)",
            (idempotency_key, topic, summary, json.dumps(sources)),
        )
        row = conn.execute(
            "SELECT id FROM research_reports WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
    conn.close()
    return int(row[0])


# -- the offline model: reads the tool results, as a model would --------------------------
def _outputs(items: list[Any]) -> dict[str, str]:
    """Tool results by call id."""
    return {i["call_id"]: i["output"] for i in items if i.get("type") == "function_call_output"}


def _calls(items: list[Any], tool: str) -> list[dict[str, Any]]:
    return [i for i in items if i.get("type") == "function_call" and i.get("name") == tool]


def _topic(items: list[Any]) -> str:
    return next(str(i["content"]) for i in items if i.get("role") == "user")


def _search(items: list[Any]) -> Any:
    return Script.tool_call("search_web", {"query": _topic(items), "max_results": 3})


def _extract_each(items: list[Any]) -> Any:
    # The model reads a tool's result as the SDK shows it: str() of the list of URLs.
    urls = ast.literal_eval(_outputs(items)[_calls(items, "search_web")[-1]["call_id"]])
    return Script.tool_calls(*(("extract_content", {"url": u}) for u in urls))


def _summarize_and_save(items: list[Any]) -> Any:
    outputs = _outputs(items)
    pages = _calls(items, "extract_content")
    sources = [json.loads(c["arguments"])["url"] for c in pages]
    texts = [outputs[c["call_id"]] for c in pages]
    summary = " ".join(text.split(". ")[0].rstrip(".") + "." for text in texts)
    arguments = {"topic": _topic(items), "summary": summary, "sources": sources}
    return Script.tool_call("save_report", arguments)


def _answer(items: list[Any]) -> Any:
    saved = _calls(items, "save_report")[-1]
    answer = _outputs(items)[saved["call_id"]]
    arguments = json.loads(saved["arguments"])
    return Script.output(
        ResearchResult(
            summary=arguments["summary"],
            sources=arguments["sources"],
            report_id=int(answer) if answer.isdigit() else None,
        )
    )


OFFLINE_MODEL = ScriptedModel(
    [_search, _extract_each, _summarize_and_save, _answer], name="research-offline"
)

#: The real model's name when a key is set, else None (offline). Read at import: workflow code
#: may not read the environment (Temporal's sandbox refuses it, and a replay must not depend
#: on the worker's environment).
ONLINE_MODEL = (
    os.environ.get("RESEARCH_MODEL", "gpt-4o-mini") if os.environ.get("OPENAI_API_KEY") else None
)
if ONLINE_MODEL is None:
    set_tracing_disabled(True)  # offline: nothing may try to export traces to OpenAI


@functools.cache
def research_agent() -> Agent[Any]:
    """The agent, built on first use (a real model's name when a key is set)."""
    model: str | ScriptedModel = ONLINE_MODEL or OFFLINE_MODEL
    return Agent(
        name="researcher",
        instructions=INSTRUCTIONS,
        model=model,
        output_type=ResearchResult,
        tools=[
            activity_as_tool(search_web),
            activity_as_tool(extract_content),
            activity_as_tool(save_report, needs_approval=True),
        ],
    )


@bridge.workflow
async def research(ctx: bridge.Context, topic: str) -> ResearchResult:
    """Search, extract each source, summarize, and save once a person approves."""
    result = await run_agent(research_agent(), topic, max_turns=10)
    return result.final_output
