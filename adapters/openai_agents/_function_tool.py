"""Plain `@function_tool` functions of an agent run in a workflow: each call a journaled step.

An agent written for the SDK has plain function tools. Run unchanged inside a workflow they
would execute in workflow code on every replay (an email sent again after each crash), so
the durable copy of the agent (`_runner._Converter`) swaps each tool's `on_invoke_tool` for
one that runs the call as the step `openai_agents.function_tool`. The step's activity calls
the original `on_invoke_tool` with the live `ToolContext` (the user's run context included):
every backend runs a run's activities in the process that runs its workflow code, and the
workflow side hands the call over through `_live` just before the step runs. On a replay
the journaled result comes back and the function is not called.

The result keeps its type: it is journaled as JSON with the importable name of its class
(a pydantic model or dataclass defined at module level), and decoded back to that class, so
a custom `tool_use_behavior` or `StopAtTools` sees what the plain function returned.

Tools made by `agent.as_tool()` are not wrapped: the nested run is workflow code whose own
model calls are journaled steps.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext
from pydantic import BaseModel

from adapters.openai_agents._context import HandOver, HandOverMissingError, workflow_context
from bridge import codec
from bridge.activity import RetryPolicy, activity, activity_info
from bridge.errors import non_retryable

__all__ = ["FUNCTION_TOOL", "journaled_function_tool"]

FUNCTION_TOOL = "openai_agents.function_tool"

_MARK = "__bridge_journaled__"


#: Calls handed from workflow code to the step's activity, by (workflow id, call key).
_live = HandOver()


class FunctionToolUnavailableError(HandOverMissingError):
    """The step of a plain function tool ran in a process without the workflow's call."""


# The SDK calls a tool once: its own errors already reach the model as its result (its
# failure_error_function), and one that raises is final (`non_retryable`), so what raises
# here is the run's problem. A worker lost during the call (on Temporal, a heartbeat or
# start-to-close timeout that counts as an attempt) is not the tool's error: the call runs
# again, as the journal engines run an attempt whose worker died again.
# journal_start: so on_tool_start, called before the step, is not called again after a crash.
@activity(name=FUNCTION_TOOL, retry=RetryPolicy(max_attempts=3), journal_start=True)
async def function_tool_call(request: dict[str, Any]) -> dict[str, Any]:
    """Call the plain function tool the workflow handed over for this step."""
    key = (activity_info().workflow_id, request["call"])
    found = _live.get(key)
    if found is None:
        raise FunctionToolUnavailableError(
            f"the call of function tool {request['tool']!r} ({request['call']}) was not handed "
            f"over by workflow code in this process; a plain function tool runs in the worker "
            f"that runs its workflow"
        )
    invoke, tool_context = found
    try:
        output = await invoke(tool_context, request["arguments"])
    except Exception as exc:
        raise non_retryable(exc) from exc
    return _encode(output)


def journaled_function_tool(tool: FunctionTool, *, agent: str) -> FunctionTool:
    """A copy of `tool` whose every call in workflow code is the journaled step."""
    if getattr(tool.on_invoke_tool, _MARK, False):
        return tool
    original = tool.on_invoke_tool

    async def invoke(tool_context: ToolContext[Any], arguments: str) -> Any:
        ctx = workflow_context()
        if ctx is None:
            return await original(tool_context, arguments)
        call = f"{agent}/{tool.name}/{tool_context.tool_call_id}"
        request = {"tool": tool.name, "agent": agent, "call": call, "arguments": arguments}
        handed = (original, tool_context)
        key = (ctx.workflow_id, call)
        return _decode(await _live.run(ctx, key, handed, function_tool_call, request))

    setattr(invoke, _MARK, True)
    return dataclasses.replace(tool, on_invoke_tool=invoke)


def _encode(output: Any) -> dict[str, Any]:
    cls = type(output)
    typed = (isinstance(output, BaseModel) or dataclasses.is_dataclass(output)) and (
        "<locals>" not in cls.__qualname__
    )
    return {
        "value": codec.to_jsonable(output, where="function tool result"),
        "type": f"{cls.__module__}:{cls.__qualname__}" if typed else None,
    }


def _decode(record: dict[str, Any]) -> Any:
    name = record.get("type")
    if name is None:
        return record["value"]
    module, _, qualname = name.partition(":")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return codec.from_jsonable(record["value"], cls, where=f"function tool result ({name})")
