"""A neutral activity as a LangChain tool, for LangGraph's agents and `ToolNode`."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import create_model

from adapters.langgraph._context import workflow_context
from bridge.activity import ActivityDefinition, as_activity
from bridge.errors import OutsideWorkflowError

__all__ = ["activity_as_langchain_tool"]


def activity_as_langchain_tool(
    activity: ActivityDefinition[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
) -> BaseTool:
    """A StructuredTool that runs `activity`.

    Called from workflow code (an agent graph that a bridge workflow runs), each call is a
    journaled step of the activity, `ctx.run(activity, ...)`: its result is recorded once
    and replayed after a crash, with the activity's retry policy, timeout and idempotency
    key, on whichever backend runs the workflow. Called anywhere else (a plain LangGraph
    app, or inside another activity) it calls the activity's function directly.

    The tool's argument schema is the activity's signature; its name and description
    default to the activity's name and docstring.
    """
    defn = as_activity(activity, what="activity_as_langchain_tool")
    params = defn.shape.signature.parameters
    fields: dict[str, Any] = {
        p: (
            defn.shape.hints[p],
            ... if params[p].default is inspect.Parameter.empty else params[p].default,
        )
        for p in defn.shape.params
    }
    args_schema = create_model(f"{defn.name}_arguments", **fields)

    async def call(**kwargs: Any) -> Any:
        ctx = workflow_context()
        if ctx is not None:
            return await ctx.run(defn, **kwargs)
        return await _direct(defn, kwargs)

    def call_sync(**kwargs: Any) -> Any:
        if workflow_context() is not None:
            raise OutsideWorkflowError(
                f"tool {defn.name!r} was called synchronously from a bridge workflow, which "
                f"cannot journal it; call it with `ainvoke` (LangGraph does in async graphs)"
            )
        return asyncio.run(_direct(defn, kwargs)) if defn.is_async else _direct_sync(defn, kwargs)

    return StructuredTool.from_function(
        func=call_sync,
        coroutine=call,
        name=name or defn.name,
        description=description or inspect.getdoc(defn.fn) or f"Run the {defn.name} activity.",
        args_schema=args_schema,
    )


def _with_key(defn: ActivityDefinition[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Outside a workflow there is no step to derive an idempotency key from: a fresh one."""
    if defn.wants_idempotency_key:
        return {**kwargs, "idempotency_key": f"langchain-tool:{uuid.uuid4()}"}
    return kwargs


async def _direct(defn: ActivityDefinition[..., Any], kwargs: dict[str, Any]) -> Any:
    if defn.is_async:
        return await defn.fn(**_with_key(defn, kwargs))
    return await asyncio.to_thread(defn.fn, **_with_key(defn, kwargs))


def _direct_sync(defn: ActivityDefinition[..., Any], kwargs: dict[str, Any]) -> Any:
    return defn.fn(**_with_key(defn, kwargs))
