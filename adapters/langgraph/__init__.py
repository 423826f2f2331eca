"""LangGraph users' existing pieces on any bridge backend.

    from adapters.langgraph import activity_as_langchain_tool, from_state_graph

    tools = [activity_as_langchain_tool(search_web)]   # for ToolNode / create_react_agent
    pipeline = from_state_graph(builder, name="pipeline")  # a StateGraph as a workflow

`activity_as_langchain_tool` makes a neutral activity a LangChain tool whose calls are
journaled steps when a bridge workflow runs the agent. `from_state_graph` turns a
`StateGraph` (nodes, edges, conditional edges) into a bridge workflow whose every node is a
journaled step, so the graph runs unchanged on the sql, Temporal or LangGraph backend.
Imports `bridge`, LangGraph and LangChain; never a backend.
"""

from __future__ import annotations

try:
    import langgraph as _langgraph  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'adapters.langgraph needs LangGraph: pip install "durable-bridge[langgraph]"'
    ) from exc

from adapters.langgraph._graph import from_state_graph
from adapters.langgraph._tool import activity_as_langchain_tool

__all__ = ["activity_as_langchain_tool", "from_state_graph"]
