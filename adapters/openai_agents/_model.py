"""The workflow side of a durable model call: `DurableModel`, an Agents SDK `Model`.

`run_agent` gives every agent a `DurableModel` in place of its model. Its `get_response`
encodes the request (conversation and agent spec by reference, see `_blobs.py`) and runs it
as the journaled step `openai_agents.model_call`; on a replay the recorded response comes
back and no model is called. The model itself is chosen in the worker, by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents import (
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    Tool,
    TResponseInputItem,
)
from agents.items import TResponseStreamEvent
from openai.types.responses.response_prompt_param import ResponsePromptParam

from adapters.openai_agents._context import AgentRun
from adapters.openai_agents._model_activity import (
    decode_response,
    describe_handoff,
    describe_output_schema,
    describe_tool,
    model_call_activity,
)
from adapters.openai_agents._stream_events import decode_event
from bridge import codec

__all__ = ["DurableModel"]


class DurableModel(Model):
    """Runs each `get_response` (and each `stream_response`) as the journaled step
    `openai_agents.model_call`."""

    def __init__(
        self,
        *,
        model_name: str | None,
        run: AgentRun,
        timeout: float | None,
        source: dict[str, str] | None = None,
    ) -> None:
        self.model_name = model_name
        #: Where the worker finds a model that is not resolved by name (`_config.resolve_model`).
        self.source = source
        self._run = run
        self._timeout = timeout
        #: Whether the last call's answer came from the journal (None: no call yet). The
        #: replay-safe hooks decide `on_llm_end` and `on_agent_end` by it (`_hooks.py`).
        self.last_replayed: bool | None = None

    def _request(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> dict[str, Any]:
        chain = self._run.chain
        spec = {
            "system_instructions": system_instructions,
            "model_settings": codec.adapter(ModelSettings).dump_python(
                model_settings, mode="json", exclude_none=True
            ),
            "tools": [describe_tool(t) for t in tools],
            "handoffs": [describe_handoff(h) for h in handoffs],
            "output_schema": describe_output_schema(output_schema) if output_schema else None,
            "prompt": codec.to_jsonable(prompt, where="model prompt") if prompt else None,
        }
        conversation = (
            {"text": input}
            if isinstance(input, str)
            else chain.conversation(codec.to_jsonable(input, where="model input items"))
        )
        request: dict[str, Any] = {
            "model": self.model_name,
            "spec": chain.ref(spec),
            "input": conversation,
        }
        # Only what is set, so the journal shows what matters.
        optional = {
            "previous_response_id": previous_response_id,
            "conversation_id": conversation_id,
            "timeout": self._timeout,
            "source": self.source,
            "tracing": None if tracing is ModelTracing.DISABLED else tracing.value,
        }
        request.update({k: v for k, v in optional.items() if v is not None})
        return request

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        request = self._request(*args, **kwargs)
        data = await self._run.ctx.run(model_call_activity(), request)
        self.last_replayed = self._run.ctx.last_step_replayed()
        return decode_response(data)

    async def stream_response(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[TResponseStreamEvent]:
        """The model's stream events, recorded whole as one journaled step: they arrive when
        the call has finished (not token by token), the same on every replay."""
        request = {**self._request(*args, **kwargs), "stream": True}
        data = await self._run.ctx.run(model_call_activity(), request)
        self.last_replayed = self._run.ctx.last_step_replayed()
        for event in data["events"]:
            yield decode_event(event)
