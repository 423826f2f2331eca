"""`run_agent`: the Agents SDK's `Runner.run`, inside a bridge workflow, durable.

It takes `Runner.run`'s arguments and returns its `RunResult`, so adopting it is a one-line
change. Before running, the agent graph (handoffs included) is copied with every model
replaced by a `DurableModel`, so each model call is the journaled step
`openai_agents.model_call`; tools made with `activity_as_tool` are journaled steps of their
own. On a replay the loop runs again over the recorded answers: same calls, same order, no
model or tool paid for twice.

Tools with `needs_approval` pause the run: the SDK returns the pending approvals, and each
becomes `ctx.wait_for_signal("approval:<tool>")`, which parks the run (for days if need be)
until `bridge signal ID approval:<tool> true` (or `false`, or
`{"approved": false, "message": "why"}`) arrives. A rejection reaches the model as the
tool's result, as in the SDK.

`Runner.run_streamed` in workflow code streams too: each model call is one journaled step
whose result is the model's stream events, yielded when the call has finished and the same
on every replay. A session's reads and writes (`_session.py`) and an agent's MCP requests
(`_mcp.py`) are journaled steps too.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from agents import (
    Agent,
    AgentsException,
    FunctionTool,
    Handoff,
    Model,
    ModelSettings,
    MultiProvider,
    RunConfig,
    RunContextWrapper,
    RunHooks,
    RunResult,
    RunResultStreaming,
    RunState,
    Session,
    Tool,
    TResponseInputItem,
    UserError,
)
from agents.items import ToolApprovalItem
from agents.models import get_default_model_settings
from agents.run import DEFAULT_MAX_TURNS, AgentRunner
from agents.run_error_handlers import RunErrorHandlers

from adapters.openai_agents._config import register_source
from adapters.openai_agents._context import (
    AgentRun,
    reset_current_run,
    set_current_run,
    workflow_context,
)
from adapters.openai_agents._function_tool import journaled_function_tool
from adapters.openai_agents._hooks import replay_safe, replay_safe_agent_hooks
from adapters.openai_agents._mcp import durable_mcp_server
from adapters.openai_agents._model import DurableModel
from adapters.openai_agents._scripted import ScriptedModel
from adapters.openai_agents._session import durable_session
from adapters.openai_agents._tool import activity_of
from bridge.activity import seconds
from bridge.errors import BridgeError, OutsideWorkflowError
from bridge.workflow import Context

__all__ = ["BridgeAgentRunner", "approval_signal", "run_agent"]

log = logging.getLogger("bridge.openai_agents")


def approval_signal(tool_name: str) -> str:
    """The signal that answers an approval request of tool `tool_name`."""
    return f"approval:{tool_name}"


class BridgeAgentRunner(AgentRunner):
    """The SDK's default runner in a process that runs bridge workflows (see `_install.py`).

    `Runner.run` from workflow code is `run_agent`; from anywhere else it is the runner that
    was the default before (the SDK's own, or one a user installed), so plain SDK code and
    unit tests behave exactly as without the bridge.
    """

    def __init__(self, *, fallback: AgentRunner | None = None) -> None:
        super().__init__()
        self._fallback = fallback if fallback is not None else AgentRunner()

    async def run(
        self,
        starting_agent: Agent[Any],
        input: str | list[TResponseInputItem] | RunState[Any],
        **kwargs: Any,
    ) -> RunResult:
        if workflow_context() is None:
            return await self._fallback.run(starting_agent, input, **kwargs)
        return await run_agent(starting_agent, input, **kwargs)

    def run_sync(
        self,
        starting_agent: Agent[Any],
        input: str | list[TResponseInputItem] | RunState[Any],
        **kwargs: Any,
    ) -> RunResult:
        if workflow_context() is not None:
            raise UserError(
                f"Runner.run_sync(agent {starting_agent.name!r}) was called from workflow "
                f"code, which already runs in an event loop; use `await Runner.run(...)`"
            )
        return self._fallback.run_sync(starting_agent, input, **kwargs)

    def run_streamed(
        self,
        starting_agent: Agent[Any],
        input: str | list[TResponseInputItem] | RunState[Any],
        **kwargs: Any,
    ) -> RunResultStreaming:
        ctx = workflow_context()
        if ctx is None:
            return self._fallback.run_streamed(starting_agent, input, **kwargs)
        session = durable_session(kwargs.get("session"), agent=starting_agent.name)
        run = AgentRun(ctx=ctx)
        converter = _Converter(run, _run_config(kwargs.get("run_config")))
        agent = converter.agent(starting_agent)
        options = {
            **kwargs,
            "session": session,
            "run_config": converter.run_config,
            "hooks": replay_safe(kwargs.get("hooks")),
        }
        # The streamed loop runs in a task the SDK creates now, so it inherits this run.
        token = set_current_run(run)
        try:
            return AgentRunner().run_streamed(agent, input, **options)
        finally:
            reset_current_run(token)


async def run_agent(
    starting_agent: Agent[Any],
    input: str | list[TResponseInputItem] | RunState[Any],
    *,
    context: Any = None,
    max_turns: int | None = DEFAULT_MAX_TURNS,
    hooks: RunHooks[Any] | None = None,
    run_config: RunConfig | dict[str, Any] | None = None,
    error_handlers: RunErrorHandlers[Any] | None = None,
    previous_response_id: str | None = None,
    auto_previous_response_id: bool = False,
    conversation_id: str | None = None,
    session: Session | None = None,
    approval_timeout: float | timedelta | None = None,
) -> RunResult:
    """Run `starting_agent` like `Runner.run`, every model and activity tool call journaled.

    Call it from an `@bridge.workflow`. `approval_timeout` bounds each wait for an approval
    signal; when it passes the tool call is rejected (default: wait as long as it takes).
    Model calls are retried and timed out by the worker's `AgentSettings` (the activity's
    policy), so `ModelSettings.retry` is not used here; `ModelSettings.timeout` bounds one
    attempt. SDK tracing and the run's hooks work as in the SDK, replay-safe: spans and
    hook calls of steps answered from the journal are not made again (`_tracing.py`,
    `_hooks.py`).
    """
    ctx = workflow_context()
    if ctx is None:
        raise OutsideWorkflowError(
            f"run_agent(agent {starting_agent.name!r}) was called outside a bridge workflow; "
            f"call it from an @bridge.workflow function, which journals its model and tool "
            f"calls (outside a workflow, use agents.Runner.run)"
        )
    session = durable_session(session, agent=starting_agent.name)
    wait = seconds(approval_timeout, what="run_agent approval_timeout")
    run = AgentRun(ctx=ctx)
    token = set_current_run(run)
    try:
        converter = _Converter(run, _run_config(run_config))
        agent = converter.agent(starting_agent)
        options: dict[str, Any] = {
            "context": context,
            "max_turns": max_turns,
            "hooks": replay_safe(hooks),
            "run_config": converter.run_config,
            "error_handlers": error_handlers,
            "previous_response_id": previous_response_id,
            "auto_previous_response_id": auto_previous_response_id,
            "conversation_id": conversation_id,
            "session": session,
        }
        # AgentRunner itself, not Runner.run: a process-wide runner swap (Temporal's
        # OpenAIAgentsPlugin installs one) must not take over a bridge run.
        runner = AgentRunner()
        result = await runner.run(agent, input, **options)
        while result.interruptions:
            state = result.to_state()
            for item in result.interruptions:
                approved, message = await _decision(ctx, item, wait)
                if approved:
                    state.approve(item)
                else:
                    state.reject(item, rejection_message=message)
            result = await runner.run(agent, state, **options)
        return result
    except AgentsException as exc:
        # The SDK wraps what a tool raised ("Error running tool ..."); a bridge error in
        # there (a NonDeterminismError above all) must reach the backend as itself.
        cause = _bridge_cause(exc)
        if cause is not None:
            raise cause from exc
        raise
    finally:
        reset_current_run(token)


def _run_config(run_config: RunConfig | dict[str, Any] | None) -> RunConfig | None:
    """`RunOptions` allows a dict for the run config, as the SDK's own runner does."""
    if isinstance(run_config, dict):
        return RunConfig(**run_config)
    return run_config


def _bridge_cause(exc: BaseException) -> BridgeError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BridgeError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# -- approvals ------------------------------------------------------------------------------
async def _decision(
    ctx: Context, item: ToolApprovalItem, wait: float | None
) -> tuple[bool, str | None]:
    """(approved, rejection message) from the approval signal of `item`'s tool."""
    tool = item.tool_name or "tool"
    name = approval_signal(tool)
    while True:
        payload = await ctx.wait_for_signal(name, timeout=wait)
        if payload is None and wait is not None:
            return False, f"No approval for tool {tool!r} arrived within {wait:g} seconds."
        if isinstance(payload, bool):
            return payload, None
        if isinstance(payload, dict) and isinstance(payload.get("approved"), bool):
            message = payload.get("message")
            return payload["approved"], message if isinstance(message, str) else None
        # A typo must not take a path the person did not choose: wait for a proper answer.
        log.warning(
            "workflow %s: ignored signal %r with payload %r; send true, false or "
            '{"approved": false, "message": "why"}',
            ctx.workflow_id,
            name,
            payload,
        )


# -- the durable copy of an agent graph -----------------------------------------------------
class _Converter:
    """Copies agents (following handoffs, cycles included) with durable models."""

    def __init__(self, run: AgentRun, run_config: RunConfig | None) -> None:
        self._run = run
        self._seen: dict[int, Agent[Any]] = {}
        rc = run_config or RunConfig()
        # A provider given in the run config resolves this run's model names, as in the SDK
        # (the SDK's default MultiProvider leaves them to the worker's configuration).
        self._provider: dict[str, str] | None = None
        if type(rc.model_provider) is not MultiProvider:
            self._provider = register_source(_type_key(rc.model_provider), rc.model_provider)
        self._override: tuple[str | None, dict[str, str] | None] | None = None
        self._override_is_model = False
        if rc.model is not None:
            self._override = self._model(rc.model, key="run_config")
            self._override_is_model = isinstance(rc.model, Model)
        rc_settings = rc.model_settings
        self._rc_timeout = rc_settings.timeout if rc_settings is not None else None
        self.run_config = dataclasses.replace(
            rc,
            model=None,  # every agent carries its durable model (with this name) instead
            model_settings=_without_retry(rc_settings) if rc_settings is not None else None,
        )

    def _model(
        self, model: str | Model | None, *, key: str
    ) -> tuple[str | None, dict[str, str] | None]:
        """What a durable call journals: a model name, and where the worker finds the model
        when it is not the worker's to resolve by name (a Model object on the agent, or the
        run config's provider), never a client object."""
        if isinstance(model, ScriptedModel):
            return model.name, None
        if isinstance(model, Model):
            name = getattr(model, "model", None)
            return (
                name if isinstance(name, str) else type(model).__name__,
                register_source(f"{_type_key(model)}@{key}", model),
            )
        return model, self._provider

    def agent(self, agent: Agent[Any]) -> Agent[Any]:
        known = self._seen.get(id(agent))
        if known is not None:
            return known
        if isinstance(agent.model, DurableModel):
            return agent
        name, source = (
            self._override
            if self._override is not None
            else self._model(agent.model, key=f"agent:{agent.name}")
        )
        settings = self._settings(agent)
        durable = dataclasses.replace(agent)
        durable.hooks = replay_safe_agent_hooks(agent.hooks)
        self._seen[id(agent)] = durable  # before the handoffs: they may lead back here
        durable.model = DurableModel(
            model_name=name,
            source=source,
            run=self._run,
            timeout=self._rc_timeout if self._rc_timeout is not None else settings.timeout,
        )
        durable.model_settings = _without_retry(settings)
        durable.handoffs = [self._handoff(h) for h in agent.handoffs]
        durable.tools = [self._tool(t, agent) for t in agent.tools]
        durable.mcp_servers = [durable_mcp_server(s) for s in agent.mcp_servers]
        return durable

    def _settings(self, agent: Agent[Any]) -> ModelSettings:
        """The settings the SDK would resolve for `agent` (its implicit per-model defaults
        follow the model *name*, which the durable copy no longer has)."""
        if isinstance(agent.model, Model):
            implicit = ModelSettings()
        else:
            implicit = get_default_model_settings(agent.model)
        if agent.model_settings != implicit:
            return agent.model_settings
        if self._override is not None:
            return (
                ModelSettings()
                if self._override_is_model
                else get_default_model_settings(self._override[0])
            )
        return implicit

    def _handoff(self, handoff: Agent[Any] | Handoff[Any, Any]) -> Agent[Any] | Handoff[Any, Any]:
        if isinstance(handoff, Agent):
            return self.agent(handoff)
        original = handoff.on_invoke_handoff

        async def on_invoke(context: RunContextWrapper[Any], args: str) -> Agent[Any]:
            return self.agent(await original(context, args))

        return dataclasses.replace(handoff, on_invoke_handoff=on_invoke)

    def _tool(self, tool: Tool, agent: Agent[Any]) -> Tool:
        """Plain function tools become journaled steps; activity tools already are, and an
        `agent.as_tool()` runs a nested run whose model calls are journaled themselves."""
        if (
            not isinstance(tool, FunctionTool)
            or activity_of(tool) is not None
            or tool._is_agent_tool
        ):
            return tool
        return journaled_function_tool(tool, agent=agent.name)


def _type_key(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _without_retry(settings: ModelSettings) -> ModelSettings:
    """Retries and the per-call timeout belong to the model-call activity: left in the
    settings, the SDK would retry and time out inside workflow code, by wall clock."""
    if settings.retry is None and settings.timeout is None:
        return settings
    return dataclasses.replace(settings, retry=None, timeout=None)
