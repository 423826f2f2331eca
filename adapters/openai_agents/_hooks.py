"""Run and agent hooks that are not called again for steps answered from the journal.

A durable run re-executes the agent loop on every replay (sql and langgraph re-run the
workflow from the top whenever it resumes; Temporal replays history on a new worker), and
the SDK calls the hooks as the loop passes them. A hook with a side effect (a metric, a
message, a row) would then repeat it once per replay. `replay_safe(hooks)` and
`replay_safe_agent_hooks(agent.hooks)` wrap the user's hooks so that each callback reaches
them only when the workflow runs live (`bridge.Context.is_replaying` is False); outside a
workflow, and inside an activity, every callback is forwarded.

Which step a callback belongs to:

- `on_agent_start`/`on_start` and `on_llm_start` fire before the model-call step is taken,
  so `is_replaying` then says whether that step is already journaled. `on_tool_start` fires
  before an activity tool's step is taken: the same.
- The matching end (`on_llm_end`, `on_tool_end`) follows where that step's answer came
  from (`Context.last_step_replayed`), not `is_replaying` after it: the last journaled
  step is answered from the journal although the code after it runs live (its end hook
  ran before the crash), and on Temporal a step in flight when a worker died was
  scheduled in replayed history but is answered live (its end hook never ran). A start
  and its end can therefore disagree, exactly when the process died between them.
- `on_agent_end`/`on_end` and `on_handoff` follow the model call whose answer produced the
  final output or chose the handoff: the agent's latest model call.

A start hook fires before its step is taken, so a crash during the step would fire it again
on the resumed run, whose code reaches that point live: the model call, plain function
tool and MCP tool call steps are therefore declared `journal_start=True` (their start is
written before the first attempt, and the resumed run sees the step as begun). An
`activity_as_tool` activity is the user's: its `on_tool_start` is at-least-once unless it
is declared so too. A crash between a callback and the next journal write can still repeat
it once: hooks are not steps.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, AgentHooks, ModelResponse, RunContextWrapper, RunHooks, Tool
from agents.items import TResponseInputItem
from agents.run_context import AgentHookContext

from adapters.openai_agents._context import workflow_context

__all__ = ["replay_safe", "replay_safe_agent_hooks"]


class _Gate:
    """Decides, per callback, whether the user's hook runs; remembers starts for their ends."""

    def __init__(self) -> None:
        self._llm: dict[int, bool] = {}  # id(agent) -> was its latest model call replayed
        self._tools: dict[Any, bool] = {}  # tool call -> was its start replayed

    @staticmethod
    def replaying_now() -> bool:
        ctx = workflow_context()
        return ctx is not None and ctx.is_replaying

    def llm_start(self, agent: Any) -> bool:
        replaying = self._llm[id(agent)] = self.replaying_now()
        return not replaying

    def after_llm(self, agent: Any) -> bool:
        """For callbacks that follow `agent`'s latest model call (its end, the agent's end,
        a handoff it chose): they run when that call was answered live. A durable agent's
        model knows where its last answer came from; otherwise its start decides."""
        answered = getattr(getattr(agent, "model", None), "last_replayed", None)
        if answered is not None:
            return not answered
        replaying = self._llm.get(id(agent))
        return not (self.replaying_now() if replaying is None else replaying)

    def tool_start(self, context: Any, agent: Any, tool: Any) -> bool:
        replaying = self._tools[_tool_key(context, agent, tool)] = self.replaying_now()
        return not replaying

    def tool_end(self, context: Any, agent: Any, tool: Any) -> bool:
        """Runs when the tool's step was answered live. The SDK calls it in the task that
        invoked the tool, right after, so the context still knows where that step's answer
        came from; outside a workflow (a plain run) the start decides."""
        replaying = self._tools.pop(_tool_key(context, agent, tool), None)
        ctx = workflow_context()
        if ctx is not None:
            return not ctx.last_step_replayed()
        return not (self.replaying_now() if replaying is None else replaying)


def _tool_key(context: Any, agent: Any, tool: Any) -> Any:
    """One tool call: its call id when the SDK gives a ToolContext (function tools, which
    may run side by side in a turn), else the tool of that agent (one call at a time)."""
    call_id = getattr(context, "tool_call_id", None)
    if call_id:
        return call_id
    return (id(agent), getattr(tool, "name", id(tool)))


class _GatedStepHooks:
    """The callbacks `RunHooks` and `AgentHooks` share, with the same signatures: around a
    model call and a tool call. `inner` is the user's hooks object."""

    inner: Any
    _gate: _Gate

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        if self._gate.llm_start(agent):
            await self.inner.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        if self._gate.after_llm(agent):
            await self.inner.on_llm_end(context, agent, response)

    async def on_tool_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool
    ) -> None:
        if self._gate.tool_start(context, agent, tool):
            await self.inner.on_tool_start(context, agent, tool)

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        if self._gate.tool_end(context, agent, tool):
            await self.inner.on_tool_end(context, agent, tool, result)


class _ReplaySafeRunHooks(_GatedStepHooks, RunHooks[Any]):
    """The user's `RunHooks`, called only for steps that run live."""

    def __init__(self, inner: RunHooks[Any]) -> None:
        self.inner = inner
        self._gate = _Gate()

    async def on_agent_start(self, context: AgentHookContext[Any], agent: Agent[Any]) -> None:
        if _Gate.replaying_now():
            return
        await self.inner.on_agent_start(context, agent)

    async def on_agent_end(
        self, context: AgentHookContext[Any], agent: Agent[Any], output: Any
    ) -> None:
        if self._gate.after_llm(agent):
            await self.inner.on_agent_end(context, agent, output)

    async def on_handoff(
        self, context: RunContextWrapper[Any], from_agent: Agent[Any], to_agent: Agent[Any]
    ) -> None:
        if self._gate.after_llm(from_agent):
            await self.inner.on_handoff(context, from_agent, to_agent)


class _ReplaySafeAgentHooks(_GatedStepHooks, AgentHooks[Any]):
    """The user's `AgentHooks` of one agent, called only for steps that run live."""

    def __init__(self, inner: AgentHooks[Any]) -> None:
        self.inner = inner
        self._gate = _Gate()

    async def on_start(self, context: AgentHookContext[Any], agent: Agent[Any]) -> None:
        if _Gate.replaying_now():
            return
        await self.inner.on_start(context, agent)

    async def on_end(self, context: AgentHookContext[Any], agent: Agent[Any], output: Any) -> None:
        if self._gate.after_llm(agent):
            await self.inner.on_end(context, agent, output)

    async def on_handoff(
        self, context: RunContextWrapper[Any], agent: Agent[Any], source: Agent[Any]
    ) -> None:
        # Called on the agent handed to; the model call that chose it was `source`'s.
        if self._gate.after_llm(source):
            await self.inner.on_handoff(context, agent, source)


def replay_safe(hooks: RunHooks[Any] | None) -> RunHooks[Any] | None:
    """`hooks` (a `Runner.run(hooks=...)` argument) called only for steps that run live.

    None stays None, and hooks already wrapped are returned as they are, so a caller can
    wrap without checking. Make one per run: the wrapper remembers which steps it let by.
    """
    if hooks is None or isinstance(hooks, _ReplaySafeRunHooks):
        return hooks
    return _ReplaySafeRunHooks(hooks)


def replay_safe_agent_hooks(hooks: AgentHooks[Any] | None) -> AgentHooks[Any] | None:
    """An agent's `hooks` called only for steps that run live; see `replay_safe`."""
    if hooks is None or isinstance(hooks, _ReplaySafeAgentHooks):
        return hooks
    return _ReplaySafeAgentHooks(hooks)
