"""`activity_as_tool`: a bridge activity as an Agents SDK `FunctionTool`, one step per call.

The tool is built by the SDK's own `function_tool` on a wrapper with the activity's
signature and docstring, so the JSON schema, argument validation and error reporting are
the SDK's: arguments the model gets wrong come back to it as a tool error, exactly as for
any function tool. What the wrapper adds over `temporalio.openai_agents.workflow.activity_as_tool`:

- the call is `ctx.run(activity, ...)` on whichever backend runs the workflow, with the
  activity's own retry policy and timeout, and needs no separate worker registration;
- the result is journaled as JSON and decoded back to the activity's declared return type
  before the SDK sees it, so `tool_use_behavior` functions, `StopAtTools` and what the model
  reads are exactly as with the plain function (live or replayed);
- outside a workflow it refuses to run by default, because silently running a "durable"
  tool non-durably is the bug users report against peer integrations (strict=False opts in).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.tool import ToolErrorFunction, default_tool_error_function

from adapters.openai_agents._context import workflow_context
from bridge._execute import run_attempt
from bridge.activity import ActivityDefinition, as_activity
from bridge.errors import (
    ConfigError,
    NonDeterminismError,
    NotRegisteredError,
    OutsideWorkflowError,
    SerializationError,
    StorageError,
)

__all__ = ["activity_as_tool", "activity_of"]

# What OpenAI accepts as a function name.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MARK = "__bridge_activity__"

# Errors that say the run itself is broken, not the tool call: they must stop the run (a
# NonDeterminismError must reach the backend so it can keep the journal) instead of being
# turned into a message for the model.
_FATAL = (
    OutsideWorkflowError,
    NonDeterminismError,
    StorageError,
    NotRegisteredError,
    SerializationError,
)


def activity_as_tool(
    activity: ActivityDefinition[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool = True,
    needs_approval: bool
    | Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]] = False,
    failure_error_function: ToolErrorFunction | None = default_tool_error_function,
    strict_json_schema: bool = True,
    is_enabled: bool = True,
) -> FunctionTool:
    """A FunctionTool whose every call runs `activity` as a journaled step.

    - `name` / `description`: what the model sees (default: the activity's name and its
      docstring; argument descriptions come from the docstring too).
    - `strict`: outside a workflow, raise (True) or call the activity directly (False).
    - `needs_approval`: pause for a person before the call; in `run_agent` that is a wait
      for the signal `approval:<tool name>` (see `run_agent`).
    - `failure_error_function`: how a failed call (retries exhausted, non-retryable, bad
      arguments) is told to the model; None makes such a failure end the run instead.
    - `strict_json_schema`: the SDK's strict schema mode (recommended).
    """
    defn = as_activity(activity, what="activity_as_tool")
    tool_name = name or defn.name
    if not _TOOL_NAME.match(tool_name):
        raise ConfigError(
            f"activity_as_tool({defn.name!r}): {tool_name!r} is not a valid tool name (letters, "
            f"digits, '_' and '-', at most 64); pass name='...'"
        )

    @functools.wraps(defn.fn)
    async def invoke(*args: Any, **kwargs: Any) -> Any:
        ctx = workflow_context()
        if ctx is None:
            if strict:
                raise OutsideWorkflowError(
                    f"tool {tool_name!r} (bridge activity {defn.name!r}) was called outside a "
                    f"bridge workflow, where it would not be journaled; run the agent with "
                    f"adapters.openai_agents.run_agent inside an @bridge.workflow, or build the "
                    f"tool with activity_as_tool(..., strict=False) to allow plain calls"
                )
            data = defn.shape.encode_args(args, kwargs)
            # Outside any workflow there is no worker, so no interceptor chain to apply.
            out = await run_attempt(
                defn,
                data,
                workflow_id=f"plain-{uuid.uuid4().hex[:12]}",
                step=0,
                attempt=1,
                interceptors=(),
            )
            return defn.shape.decode_result(out)
        return await ctx.run(defn, *args, **kwargs)

    # The schema is the activity's (minus the idempotency key the runtime supplies).
    invoke.__signature__ = defn.shape.signature  # type: ignore[attr-defined]
    setattr(invoke, _MARK, defn)
    return function_tool(
        invoke,
        name_override=tool_name,
        description_override=description,
        failure_error_function=(
            None if failure_error_function is None else _stop_on_fatal(failure_error_function)
        ),
        strict_mode=strict_json_schema,
        needs_approval=needs_approval,
        is_enabled=is_enabled,
    )


def activity_of(tool: Any) -> ActivityDefinition[..., Any] | None:
    """The activity behind a tool made by `activity_as_tool`, else None."""
    return getattr(getattr(tool, "__wrapped__", None), _MARK, None)


def _stop_on_fatal(report: ToolErrorFunction) -> ToolErrorFunction:
    def handle(ctx: RunContextWrapper[Any], error: Exception) -> Any:
        if isinstance(error, _FATAL):
            raise error
        return report(ctx, error)

    return handle
