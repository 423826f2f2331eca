"""The workflow of the adapter's conformance scenario (`adapters.openai_agents.testing`):
an OpenAI Agents SDK agent with two tools and a ScriptedModel.

Apart from the scenario module because Temporal's sandbox re-imports the module a workflow
lives in, for every run: this one imports no pytest, and the agent, its model and tools live
at module level. The model is offline: turn 1 calls `search_web`, turn 2 calls
`extract_content` twice in parallel, turn 3 answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents import Agent, set_tracing_disabled

import bridge
from adapters.openai_agents import MODEL_CALL, Script, ScriptedModel, activity_as_tool, run_agent

set_tracing_disabled(True)  # offline: nothing may try to export traces to OpenAI

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01)
ANSWER = "Otters hold hands while they sleep."


@dataclass
class Source:
    url: str
    title: str


@bridge.activity(name="conformance.search_web", retry=FAST)
async def search_web(query: str, limit: int) -> list[Source]:
    """Search the web for pages about a topic.

    Args:
        query: What to search for.
        limit: How many results to return at most.
    """
    return [
        Source(url=f"https://example.com/{query}/{i}", title=f"{query} #{i}") for i in range(limit)
    ]


@bridge.activity(name="conformance.extract_content", retry=FAST)
async def extract_content(url: str) -> str:
    """Fetch a page and return its main text.

    Args:
        url: The page to read.
    """
    return f"the text of {url}"


MODEL = ScriptedModel(
    [
        Script.tool_call("search_web", {"query": "otters", "limit": 2}),
        Script.tool_calls(
            ("extract_content", {"url": "https://example.com/otters/0"}),
            ("extract_content", {"url": "https://example.com/otters/1"}),
        ),
        Script.text(ANSWER),
    ],
    name="conformance-research",
)

AGENT = Agent(
    name="researcher",
    instructions="Search, read each source, summarize.",
    model=MODEL,
    tools=[
        activity_as_tool(search_web, name="search_web"),
        activity_as_tool(extract_content, name="extract_content"),
    ],
)

#: The journaled steps one run makes, in journal order.
EXPECTED_STEPS = [
    MODEL_CALL,
    "conformance.search_web",
    MODEL_CALL,
    "conformance.extract_content",
    "conformance.extract_content",
    MODEL_CALL,
]


@bridge.workflow(name="conformance.research")
async def research(ctx: bridge.Context, topic: str) -> str:
    return str((await run_agent(AGENT, topic)).final_output)
