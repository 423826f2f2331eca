"""LangGraph users' existing pieces on any bridge backend.

    from adapters.langgraph import activity_as_langchain_tool, from_entrypoint, from_state_graph

    tools = [activity_as_langchain_tool(search_web)]   # for ToolNode / create_react_agent
    pipeline = from_state_graph(builder, name="pipeline")  # a StateGraph as a workflow
    flow = from_entrypoint(my_entrypoint, name="flow")     # an @entrypoint as a workflow

    await get_state(client, run_id)                          # graph.get_state(...).values
    async for chunk in stream(client, run_id, stream_mode="updates"): ...  # graph.astream
    await resume(client, run_id, "yes")                      # Command(resume="yes")

`activity_as_langchain_tool` makes a neutral activity a LangChain tool whose calls are
journaled steps when a bridge workflow runs the agent. `from_state_graph` runs a graph with
LangGraph's own Pregel loop inside a bridge workflow, each node a journaled step, so the
graph keeps LangGraph's semantics and runs durably on the sql, langgraph or Temporal
backend; `from_entrypoint` does the same for the functional API (each `@task` a step). A
node's `interrupt(value)` parks the run until the signal `RESUME_SIGNAL` brings the answer
(`resume`). `get_state` and `stream` read a run's state and LangGraph's stream chunks from
the client, on every engine.
Imports `bridge`, LangGraph and LangChain; never a backend.
"""

from __future__ import annotations

try:
    import langgraph as _langgraph  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'adapters.langgraph needs LangGraph: pip install "durable-bridge[langgraph]"'
    ) from exc

from adapters.langgraph._client import get_state, resume, stream
from adapters.langgraph._func import from_entrypoint
from adapters.langgraph._graph import RESUME_SIGNAL, from_state_graph
from adapters.langgraph._tool import activity_as_langchain_tool

__all__ = [
    "RESUME_SIGNAL",
    "activity_as_langchain_tool",
    "from_entrypoint",
    "from_state_graph",
    "get_state",
    "resume",
    "stream",
]
