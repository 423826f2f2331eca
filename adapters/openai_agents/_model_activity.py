"""The model call as a bridge activity: `openai_agents.model_call`, run by the worker.

Its argument is a JSON request built by the workflow-side `DurableModel` (see `_model.py`):
model name, references to the agent's spec and to the conversation (`_blobs.py`), and
the few per-call values. Its result is the `ModelResponse` as JSON, journaled once, so a
resumed agent reads it back instead of paying for the call again.

This mirrors `temporalio.openai_agents`' `ModelActivity.invoke_model_activity`: tools and
handoffs cross as schema-only descriptors and are rebuilt here with no-op bodies (the model
only sees their schemas; they run in the workflow), the OpenAI client is built with
`max_retries=0` so the activity's policy owns retrying, and an `APIStatusError` is sorted
into retryable (408, 409, 429, 5xx, or `x-should-retry: true`) and non-retryable. What it
adds: conversation by reference instead of in every payload, and the same activity on every
backend (on Temporal it is served by the backend's neutral activity shim, so the
`OpenAIAgentsPlugin` and its data converter are not needed: every payload is plain JSON).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

from agents import (
    AgentOutputSchemaBase,
    CodeInterpreterTool,
    FileSearchTool,
    FunctionTool,
    Handoff,
    HostedMCPTool,
    ImageGenerationTool,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    Tool,
    Usage,
    WebSearchTool,
)
from agents.items import TResponseOutputItem, TResponseStreamEvent
from openai import APIStatusError

from adapters.openai_agents import _config
from adapters.openai_agents._errors import NonRetryableModelError
from adapters.openai_agents._stream_events import encode_event
from bridge import codec
from bridge.activity import ActivityDefinition, activity
from bridge.errors import RetryAfter

__all__ = [
    "HOSTED_TOOLS",
    "MODEL_CALL",
    "decode_response",
    "describe_handoff",
    "describe_output_schema",
    "describe_tool",
    "encode_response",
    "install_model_call",
    "model_call",
    "model_call_activity",
]

MODEL_CALL = "openai_agents.model_call"

#: Tools the model provider runs itself: they cross as their own (JSON) dataclass fields.
HOSTED_TOOLS: dict[str, type[Any]] = {
    "web_search": WebSearchTool,
    "file_search": FileSearchTool,
    "code_interpreter": CodeInterpreterTool,
    "image_generation": ImageGenerationTool,
    "hosted_mcp": HostedMCPTool,
}
_RETRYABLE_STATUS = frozenset({408, 409, 429})


async def model_call(request: dict[str, Any]) -> dict[str, Any]:
    """Call the model named in `request` with the conversation it refers to."""
    store = _config.blob_store()
    spec = store.resolve_ref(request["spec"])
    conversation = request["input"]
    model_input: str | list[Any] = (
        conversation["text"] if "text" in conversation else store.resolve_conversation(conversation)
    )
    model = _config.resolve_model(request.get("model"), request.get("source"))
    arguments: dict[str, Any] = dict(
        system_instructions=spec["system_instructions"],
        input=model_input,
        model_settings=codec.from_jsonable(
            spec["model_settings"], ModelSettings, where="model settings"
        ),
        tools=[_tool_shell(t) for t in spec["tools"]],
        output_schema=_OutputSchemaShell(spec["output_schema"]) if spec["output_schema"] else None,
        handoffs=[_handoff_shell(h) for h in spec["handoffs"]],
        tracing=ModelTracing(request.get("tracing", ModelTracing.DISABLED.value)),
        previous_response_id=request.get("previous_response_id"),
        conversation_id=request.get("conversation_id"),
        prompt=spec.get("prompt"),
    )
    timeout = request.get("timeout")
    try:
        if request.get("stream"):
            # The whole stream is the step's result: the workflow yields these events, the
            # same live and on replay (see _stream_events.py).
            collect = _collect(model.stream_response(**arguments))
            return {"events": await (asyncio.wait_for(collect, timeout) if timeout else collect)}
        call = model.get_response(**arguments)
        response = await (asyncio.wait_for(call, timeout) if timeout else call)
    except APIStatusError as exc:
        _raise_for_status(exc, request.get("model"))
    return encode_response(response)


async def _collect(stream: AsyncIterator[TResponseStreamEvent]) -> list[dict[str, Any]]:
    return [encode_event(event) async for event in stream]


def _raise_for_status(exc: APIStatusError, model: str | None) -> NoReturn:
    """Let retryable answers propagate (the policy retries them); fail the rest at once."""
    should_retry = exc.response.headers.get("x-should-retry")
    status = exc.status_code
    retryable = should_retry == "true" or (
        should_retry != "false" and (status in _RETRYABLE_STATUS or status >= 500)
    )
    if retryable:
        wait = retry_after_seconds(exc.response.headers)
        if wait is not None:
            # The provider said when to come back: wait that long, not the policy's backoff.
            raise RetryAfter(wait, f"HTTP {status} from model {model!r}: {exc.message}") from exc
        raise exc
    raise NonRetryableModelError(
        f"the model API refused the call to model {model!r} with HTTP {status}: {exc.message}; "
        f"retrying cannot fix this (check the model name, the request and the API key)"
    ) from exc


#: The longest wait a Retry-After header is taken for (a bad header must not park a run).
_MAX_RETRY_AFTER_S = 600.0


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI's), or `retry-after` as seconds or an HTTP
    date; None when there is none or it cannot be read."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return min(max(float(ms) / 1000, 0.0), _MAX_RETRY_AFTER_S)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            secs = float(value)
        except ValueError:
            secs = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        return min(max(secs, 0.0), _MAX_RETRY_AFTER_S)
    except (TypeError, ValueError, OverflowError):
        return None


def install_model_call(settings: _config.AgentSettings) -> ActivityDefinition[..., Any]:
    """(Re-)register the model-call activity with the retry policy and timeout of `settings`."""
    global _definition
    # journal_start: the SDK calls on_llm_start before the call; a crash during the call
    # must not make the resumed run call it again (`_hooks.py`).
    _definition = activity(
        name=MODEL_CALL,
        retry=settings.model_retry,
        timeout=settings.model_timeout,
        journal_start=True,
    )(model_call)
    return _definition


_definition: ActivityDefinition[..., Any] = install_model_call(_config.current_settings())


def model_call_activity() -> ActivityDefinition[..., Any]:
    """The model-call activity as configured now (workflow code runs it with `ctx.run`)."""
    return _definition


# -- responses ------------------------------------------------------------------------------
def encode_response(response: ModelResponse) -> dict[str, Any]:
    """JSON of a ModelResponse; output items keep only the fields that were set, as the SDK
    itself does when it turns them into the next turn's input."""
    return {
        "output": [item.model_dump(mode="json", exclude_unset=True) for item in response.output],
        "usage": codec.to_jsonable(response.usage, Usage, where="model response usage"),
        "response_id": response.response_id,
        "request_id": response.request_id,
    }


def decode_response(data: dict[str, Any]) -> ModelResponse:
    output_adapter = codec.adapter(TResponseOutputItem)
    output = []
    for item in data["output"]:
        try:
            output.append(output_adapter.validate_python(item))
        except ValueError:
            # The API's answers drift ahead of the SDK's types (a new field or variant): keep
            # the item as the OpenAI client itself would, instead of failing a recorded step.
            from openai._models import construct_type

            output.append(construct_type(type_=TResponseOutputItem, value=item))
    return ModelResponse(
        output=output,
        usage=codec.from_jsonable(data["usage"], Usage, where="model response usage"),
        response_id=data.get("response_id"),
        request_id=data.get("request_id"),
    )


# -- descriptors of what the model sees -----------------------------------------------------
def describe_tool(tool: Tool) -> dict[str, Any]:
    """What the model needs of a tool: its schema, never its body."""
    if isinstance(tool, FunctionTool):
        return {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "params_json_schema": tool.params_json_schema,
            "strict_json_schema": tool.strict_json_schema,
        }
    for kind, cls in HOSTED_TOOLS.items():
        if type(tool) is cls:
            fields = codec.to_jsonable(tool, cls, where=f"hosted tool {tool.name!r}")
            return {"type": kind, "fields": fields}
    raise TypeError(
        f"tool {getattr(tool, 'name', tool)!r} ({type(tool).__name__}) cannot be sent to a "
        f"durable model call; use function tools (activity_as_tool) or hosted tools "
        f"({', '.join(c.__name__ for c in HOSTED_TOOLS.values())})"
    )


async def _not_here(*_args: Any) -> Any:
    raise RuntimeError("tools and handoffs run in the workflow, never in the model activity")


def _tool_shell(data: dict[str, Any]) -> Tool:
    if data["type"] == "function":
        return FunctionTool(
            name=data["name"],
            description=data["description"],
            params_json_schema=data["params_json_schema"],
            on_invoke_tool=_not_here,
            strict_json_schema=data["strict_json_schema"],
        )
    cls = HOSTED_TOOLS[data["type"]]
    return codec.from_jsonable(data["fields"], cls, where=f"hosted tool {data['type']}")


def describe_handoff(handoff: Handoff[Any, Any]) -> dict[str, Any]:
    return {
        "tool_name": handoff.tool_name,
        "tool_description": handoff.tool_description,
        "input_json_schema": handoff.input_json_schema,
        "agent_name": handoff.agent_name,
        "strict_json_schema": handoff.strict_json_schema,
    }


def _handoff_shell(data: dict[str, Any]) -> Handoff[Any, Any]:
    return Handoff(
        tool_name=data["tool_name"],
        tool_description=data["tool_description"],
        input_json_schema=data["input_json_schema"],
        on_invoke_handoff=_not_here,
        agent_name=data["agent_name"],
        strict_json_schema=data["strict_json_schema"],
    )


def describe_output_schema(schema: AgentOutputSchemaBase) -> dict[str, Any]:
    plain = schema.is_plain_text()
    return {
        "name": schema.name(),
        "plain_text": plain,
        "json_schema": None if plain else schema.json_schema(),
        "strict": schema.is_strict_json_schema(),
    }


class _OutputSchemaShell(AgentOutputSchemaBase):
    """The output type as the model sees it; the workflow validates the answer itself."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def is_plain_text(self) -> bool:
        return bool(self._data["plain_text"])

    def name(self) -> str:
        return str(self._data["name"])

    def json_schema(self) -> dict[str, Any]:
        schema = self._data["json_schema"]
        if schema is None:
            raise TypeError("a plain-text output type has no JSON schema")
        return dict(schema)

    def is_strict_json_schema(self) -> bool:
        return bool(self._data["strict"])

    def validate_json(self, json_str: str) -> Any:
        raise RuntimeError("the workflow validates the model's output, not the model activity")
