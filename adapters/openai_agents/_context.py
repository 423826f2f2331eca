"""Which durable agent run, and which workflow, the code running now belongs to.

`run_agent` sets the current run; tools and the durable model find it here instead of the
user threading `ctx` through the Agents SDK. A tool called by an agent that was started with
the plain `Runner.run` inside a workflow still finds the workflow through bridge's own
`current_context()`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from adapters.openai_agents._blobs import ConversationChain
from bridge.activity import activity_info
from bridge.errors import OutsideWorkflowError
from bridge.workflow import Context, current_context

__all__ = ["AgentRun", "HandOver", "current_run", "workflow_context"]


@dataclass(eq=False)
class AgentRun:
    """One durable agent run: its workflow and what it has sent by reference."""

    ctx: Context
    chain: ConversationChain = field(default_factory=ConversationChain)


_current_run: contextvars.ContextVar[AgentRun | None] = contextvars.ContextVar(
    "bridge_openai_agents_run", default=None
)


def current_run() -> AgentRun | None:
    return _current_run.get()


def set_current_run(run: AgentRun | None) -> contextvars.Token[AgentRun | None]:
    return _current_run.set(run)


def reset_current_run(token: contextvars.Token[AgentRun | None]) -> None:
    # A Temporal run evicted from a stopped worker's cache is closed later by the garbage
    # collector, in another Context, where the token does not apply and nothing is to reset.
    with contextlib.suppress(ValueError):
        _current_run.reset(token)


def _in_activity() -> bool:
    try:
        activity_info()
    except OutsideWorkflowError:
        return False
    return True


def workflow_context() -> Context | None:
    """The workflow Context of the code running now; None outside workflow code.

    An activity attempt is not workflow code even when a backend runs it in the workflow's
    task (the sql executor does), so a tool called from inside an activity is "outside".
    """
    if _in_activity():
        return None
    run = current_run()
    return run.ctx if run is not None else current_context()


class HandOver:
    """Live objects handed from workflow code to the step it is running, in this process.

    Keyed by (workflow id, name), each entry a tuple of objects. An entry lives while at
    least one step of its key runs, so two concurrent steps of the same server or session
    share it and the table does not grow with the runs a worker has served.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], list[Any]] = {}

    @contextlib.contextmanager
    def holding(self, key: tuple[str, str], value: tuple[Any, ...]) -> Iterator[None]:
        """Make `value` findable under `key` for the duration of the block."""
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = [value, 1]
        else:
            entry[0], entry[1] = value, entry[1] + 1
        try:
            yield
        finally:
            entry = self._entries[key]
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[key]

    def get(self, key: tuple[str, str]) -> tuple[Any, ...] | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]
