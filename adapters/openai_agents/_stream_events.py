"""Stream events as JSON, and the events of a response that was not streamed.

A streamed model call in a workflow is one journaled step whose result is the list of the
model's stream events (`_model_activity.model_call` with `stream`): the workflow's
`Runner.run_streamed` yields them from the step's result, the same events live and on
replay. A model that cannot stream (a `ScriptedModel`) gets the events the Responses API
would have sent for its answer, from `events_of()`.
"""

from __future__ import annotations

from typing import Any, cast

from agents import ModelResponse
from agents.items import TResponseStreamEvent
from openai._models import construct_type
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)
from pydantic import TypeAdapter, ValidationError

__all__ = ["decode_event", "encode_event", "events_of"]

_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)


def encode_event(event: TResponseStreamEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_unset=True)


def decode_event(data: dict[str, Any]) -> TResponseStreamEvent:
    """The event recorded as `data`. Leniently, as the openai client itself reads a stream
    (`construct`, no validation): an OpenAI-compatible server that leaves out a field the
    types require (a usage detail, say) must not fail a step the client accepted live.
    `construct_type` is the client's own reader (private to openai, so pinned by the
    version in pyproject; a test decodes an incomplete event through it)."""
    try:
        return _EVENT.validate_python(data)
    except ValidationError:
        return cast(TResponseStreamEvent, construct_type(type_=ResponseStreamEvent, value=data))


def events_of(response: ModelResponse, *, model: str) -> list[TResponseStreamEvent]:
    """The Responses API's events for `response`, text in one delta per content part."""
    seq = iter(range(1_000_000))
    final = Response(
        id=response.response_id or f"resp-{model}",
        created_at=0,
        model=model,
        object="response",
        output=list(response.output),
        parallel_tool_calls=True,
        tool_choice="auto",
        tools=[],
        status="completed",
    )
    started = final.model_copy(update={"output": [], "status": "in_progress"})
    events: list[TResponseStreamEvent] = [
        ResponseCreatedEvent(response=started, sequence_number=next(seq), type="response.created")
    ]
    for index, item in enumerate(response.output):
        events.append(
            ResponseOutputItemAddedEvent(
                item=item,
                output_index=index,
                sequence_number=next(seq),
                type="response.output_item.added",
            )
        )
        if isinstance(item, ResponseOutputMessage):
            for part_index, part in enumerate(item.content):
                text = getattr(part, "text", None)
                if text is not None:
                    events.append(
                        ResponseTextDeltaEvent(
                            content_index=part_index,
                            delta=text,
                            item_id=item.id,
                            logprobs=[],
                            output_index=index,
                            sequence_number=next(seq),
                            type="response.output_text.delta",
                        )
                    )
                events.append(
                    ResponseContentPartDoneEvent(
                        content_index=part_index,
                        item_id=item.id,
                        output_index=index,
                        part=part,
                        sequence_number=next(seq),
                        type="response.content_part.done",
                    )
                )
        events.append(
            ResponseOutputItemDoneEvent(
                item=item,
                output_index=index,
                sequence_number=next(seq),
                type="response.output_item.done",
            )
        )
    events.append(
        ResponseCompletedEvent(response=final, sequence_number=next(seq), type="response.completed")
    )
    return events
