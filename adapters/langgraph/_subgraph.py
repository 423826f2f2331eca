"""A compiled subgraph used as a node: run inside its node's step, with LangGraph's own
checkpointer, and resumed after an `interrupt()` from the checkpoint it was left at.

The subgraph's loop runs in the step with an in-memory checkpointer, so an `interrupt()` in
one of its nodes ends the step with the subgraph's `__interrupt__`. The step then returns
the subgraph's checkpoint (the latest one and its pending writes, in LangGraph's own
serializer's bytes, base64 in the journal) with the interrupt; the workflow hands it back
to the step that runs again with the answer, which restores it and resumes the subgraph
with `Command(resume=...)`, as LangGraph resumes a subgraph from its own checkpoint: the
subgraph's nodes that finished before the interrupt do not run again.

The latest checkpoint of every namespace is carried, so a subgraph nested in the subgraph
resumes from its own checkpoint as well. A step journaled before checkpoints were kept (no
checkpoint with the answers) runs the subgraph from its start and feeds it every answer in
order, as it did then.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_RUNTIME, INTERRUPT
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime
from langgraph.types import Command

from bridge.activity import activity_info

__all__ = ["run_subgraph"]


async def run_subgraph(
    graph: Pregel,
    value: Any,
    runtime: Runtime[Any],
    resume: Sequence[Any],
    saved: dict[str, Any] | None,
) -> tuple[Any, dict[str, Any] | None]:
    """Run `graph` on `value` (or resume it from `saved` with the last of `resume`); its
    output and, when it ended interrupted, the checkpoint to resume it from."""
    saver = InMemorySaver()
    sub = graph.copy(update={"checkpointer": saver})
    config: RunnableConfig = {
        "configurable": {"thread_id": activity_info().workflow_id, CONFIG_KEY_RUNTIME: runtime}
    }
    if saved is not None and resume:
        _restore(saver, config, saved)
        out = await sub.ainvoke(await _answer(sub, config, resume[-1]), config)
    else:
        out = await sub.ainvoke(value, config)
        for answer in resume:  # a step journaled before checkpoints were kept
            if not _interrupted(out):
                break
            out = await sub.ainvoke(await _answer(sub, config, answer), config)
    return out, (_dump(saver, config) if _interrupted(out) else None)


def _interrupted(out: Any) -> bool:
    return isinstance(out, dict) and INTERRUPT in out


async def _answer(sub: Pregel, config: RunnableConfig, answer: Any) -> Command[Any]:
    """`Command(resume=...)` answering the subgraph's first pending interrupt in task order
    (by its id when several are pending, as LangGraph then requires)."""
    state = await sub.aget_state(config)
    pending = [asked for task in state.tasks for asked in task.interrupts]
    if len(pending) > 1:
        return Command(resume={pending[0].id: answer})
    return Command(resume=answer)


def _dump(saver: InMemorySaver, config: RunnableConfig) -> dict[str, Any]:
    """The subgraph's latest checkpoint of each namespace (its own, and those of subgraphs
    nested in it, each under `node:task` names) with their pending writes, as JSON data."""
    typed = saver.serde.dumps_typed
    thread: RunnableConfig = {"configurable": {"thread_id": config["configurable"]["thread_id"]}}
    latest: dict[str, Any] = {}
    for found in saver.list(thread):  # newest first within each namespace
        ns = found.config["configurable"].get("checkpoint_ns", "")
        latest.setdefault(ns, found)
    return {
        "namespaces": [
            {
                "ns": ns,
                "checkpoint": _text(typed(found.checkpoint)),
                "metadata": _text(typed(found.metadata)),
                "writes": [[t, channel, _text(typed(v))] for t, channel, v in found.pending_writes],
            }
            for ns, found in latest.items()
        ]
    }


def _restore(saver: InMemorySaver, config: RunnableConfig, saved: dict[str, Any]) -> None:
    """Put a `_dump` back into a fresh checkpointer, each namespace's checkpoint as its
    latest (a dump of one namespace, without `namespaces`, is the subgraph's own)."""
    loads = saver.serde.loads_typed
    for entry in saved.get("namespaces", [{**saved, "ns": ""}]):
        checkpoint = loads(_typed(entry["checkpoint"]))
        metadata = loads(_typed(entry["metadata"]))
        at_ns: RunnableConfig = {
            "configurable": {**config["configurable"], "checkpoint_ns": entry["ns"]}
        }
        at = saver.put(at_ns, checkpoint, metadata, checkpoint["channel_versions"])
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task, channel, data in entry["writes"]:
            by_task.setdefault(task, []).append((channel, loads(_typed(data))))
        for task, writes in by_task.items():
            saver.put_writes(at, writes, task)


def _text(typed: tuple[str, bytes]) -> list[str]:
    return [typed[0], base64.b64encode(typed[1]).decode("ascii")]


def _typed(text: list[str]) -> tuple[str, bytes]:
    return text[0], base64.b64decode(text[1])
