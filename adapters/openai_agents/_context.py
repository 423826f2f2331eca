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
from bridge.activity import ActivityDefinition, activity_info
from bridge.errors import ActivityError, NonRetryableError, OutsideWorkflowError
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


#: The error types of `HandOverMissingError` and its subclasses, as an `ActivityError`
#: names them.
_MISSING: set[str] = {"HandOverMissingError"}
#: How many times a step is asked for when its attempts keep missing their handover.
_HANDOVER_TRIES = 3


class HandOverMissingError(OutsideWorkflowError, NonRetryableError):
    """A step that needs live objects of workflow code ran in a process without them."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _MISSING.add(cls.__name__)


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

    async def run(
        self,
        ctx: Context,
        key: tuple[str, str],
        value: tuple[Any, ...],
        step: ActivityDefinition[..., Any],
        request: dict[str, Any],
    ) -> Any:
        """`ctx.run(step, request)` with `value` handed over while it runs, and run again
        (a new step) when an attempt ran in a process that had no handover.

        That happens on Temporal when the worker that ran the workflow died during the
        step: the server gives the step's retry to another worker before any workflow task
        makes that worker replay the workflow (and hold the handover). The attempt fails
        with `HandOverMissingError`, final, which brings a workflow task: the workflow,
        now replayed in the worker that takes it, asks for the step again. The failure is
        journaled, so a replay takes the same path.
        """
        with self.holding(key, value):
            for _ in range(_HANDOVER_TRIES - 1):
                try:
                    return await ctx.run(step, request)
                except ActivityError as exc:
                    if exc.error_type not in _MISSING:
                        raise
            return await ctx.run(step, request)
