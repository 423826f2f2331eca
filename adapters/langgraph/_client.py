"""A graph run seen from the client: its state, its stream of node updates, its resume.

LangGraph users read a run with `graph.get_state(config)` and `graph.stream(...)` and answer
an `interrupt()` with `graph.invoke(Command(resume=...), config)`. A graph run by a bridge
workflow lives in the engine instead, so these read it through the engine, on every
backend: the workflow publishes LangGraph's own chunks through query handlers
(`STATE_QUERY`, `STREAM_QUERY`, see `_graph.py`), `stream` follows the run's history to
learn when a node's step has finished, and `resume` is the signal the parked node waits for.

Values are decoded with the graph's codec when the graph workflow is defined in this
process (looked up by the run's workflow name); otherwise they are returned as the JSON
data the query answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from adapters.langgraph._codec import GraphCodec
from adapters.langgraph._graph import RESUME_SIGNAL, STATE_QUERY, STREAM_QUERY, codec_of
from bridge.client import Client
from bridge.history import EventType

__all__ = ["get_state", "resume", "stream"]

StreamMode = Literal["updates", "values"]

#: The history events after which the run may have emitted new chunks.
_PROGRESS = frozenset(
    {
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.SIGNAL_WAITING,
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
    }
)


async def get_state(client: Client, id: str) -> Any:
    """The state of graph run `id` now: what LangGraph's `get_state(config).values` gives
    for the same run (every state channel after the last finished superstep), the final
    state once the run has ended.

    Answered by the run's query handler, so it needs what a query needs on the engine (on
    Temporal, a worker of the task queue; on sql/langgraph, the workflow defined in this
    process when no worker of this process is running it).
    """
    data = await client.query(id, STATE_QUERY)
    return _decode(await _codec(client, id), id, data)


async def stream(
    client: Client, id: str, *, stream_mode: StreamMode = "updates", poll: float = 0.5
) -> AsyncIterator[Any]:
    """LangGraph's stream of graph run `id`: the chunks `graph.astream(input,
    stream_mode=...)` yields for the same run, those so far first, until the run ends.

    "updates": `{node_name: writes}` for each finished node; "values": the state after
    each superstep (the input's first). The chunks are LangGraph's own, kept by the run;
    this follows the run's history (`client.follow`, polled every `poll` seconds) and asks
    the run for the chunks it has not yet given after each finished step. A finished run's
    chunks are read at once. On sql/langgraph, asking a run that another process executes
    replays its journal in this process, once per finished step.
    """
    if stream_mode not in ("updates", "values"):
        raise ValueError(f"stream_mode {stream_mode!r}: use 'updates' or 'values'")
    seen = 0
    gc = await _codec(client, id)

    async def fresh() -> list[Any]:
        nonlocal seen
        data = await client.query(id, STREAM_QUERY, stream_mode, seen)
        seen += len(data)
        return [_decode(gc, id, chunk) for chunk in data]

    if not (await client.describe(id)).status.is_terminal:
        async for event in client.follow(id, poll=poll):
            if event.type in _PROGRESS:
                for chunk in await fresh():
                    yield chunk
    for chunk in await fresh():  # what the last step gave, and all of a finished run
        yield chunk


async def resume(client: Client, id: str, value: Any) -> None:
    """Answer the `interrupt(...)` graph run `id` is parked on with `value`: what
    `graph.invoke(Command(resume=value), config)` does in LangGraph.

    The node that called `interrupt()` runs again from its start and `interrupt()` returns
    `value` there. When several interrupts are pending (parallel nodes of one superstep,
    where LangGraph wants `Command(resume={interrupt_id: value, ...})`), each resume answers
    the next one in the order of their tasks (LangGraph's `get_state(config).tasks`; its
    `__interrupt__` list is in the order the nodes finished), and the
    nodes run again once all are answered, as LangGraph resumes them together.
    It is the signal `RESUME_SIGNAL` (`bridge signal ID langgraph.resume
    VALUE` from a shell does the same), kept by the engine until the run waits for it, so
    it may be sent before the run has parked. `value` must be JSON data.
    """
    await client.signal(id, RESUME_SIGNAL, value)


async def _codec(client: Client, id: str) -> GraphCodec | None:
    return codec_of((await client.describe(id)).name)


def _decode(gc: GraphCodec | None, id: str, data: Any) -> Any:
    return data if gc is None else gc.decode(data, where=f"graph run {id!r}")
