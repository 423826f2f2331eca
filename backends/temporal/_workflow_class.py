"""The one Temporal workflow class that runs every neutral workflow, defined once a process.

Temporal's sandbox re-imports a workflow class's module for every run, so that module state
of one run cannot leak into another. This class has no state outside its instances, and
running `@workflow.defn` again for each run was the largest part of bridge's per-run
sandbox cost (profiled: about 0.07 ms a run, on top of what raw temporalio pays). So it is
defined here, in a module the sandbox passes through, and names `_workflow` as its module:
that is the small module the sandbox re-imports per run, which imports the served workflow
modules into the sandbox and hands back this same class.
"""

# No `from __future__ import annotations` here: temporalio reads the signal handler's type
# hints, and string annotations would be evaluated again on every look.
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from backends.temporal import _context
from backends.temporal._converter import decode_payload

__all__ = ["BridgeWorkflow"]

#: The module the sandbox re-imports for every run (see the module docstring).
RELOADED_MODULE = "backends.temporal._workflow"


@workflow.defn(dynamic=True)
class BridgeWorkflow:
    """Runs the neutral workflow named by the Temporal workflow type."""

    def __init__(self) -> None:
        # Signals queue per name until a wait takes them, so one sent early is kept; query
        # handlers are those the workflow code has set so far.
        self._state = _context.RunState()

    @workflow.signal(dynamic=True)
    def _on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        payload = decode_payload(args[0].payload, workflow.payload_converter) if args else None
        self._state.add_signal(name, payload)

    @workflow.query(dynamic=True)
    def _on_query(self, name: str, args: Sequence[RawValue]) -> Any:
        """Every query but Temporal's own (`__stack_trace`, ...): a native Temporal query,
        answered by the handler `ctx.set_query_handler` set, read-only (Temporal refuses
        commands from a query). An unknown name fails the query naming the run's queries."""
        decoded = [decode_payload(a.payload, workflow.payload_converter) for a in args]
        return self._state.answer(name, decoded)

    @workflow.update(dynamic=True)
    async def _on_update(self, name: str, args: Sequence[RawValue]) -> Any:
        """Every update: a native Temporal update, run by the handler
        `ctx.set_update_handler` set; Temporal journals its acceptance and outcome and
        answers a repeated update id with the first outcome."""
        decoded = [decode_payload(a.payload, workflow.payload_converter) for a in args]
        return await self._state.apply(name, decoded)

    @_on_update.validator
    def _validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        """The update's validator (and an unknown name's refusal), before anything is
        journaled: a rejected update leaves no event in the run's history."""
        decoded = [decode_payload(a.payload, workflow.payload_converter) for a in args]
        self._state.validate(name, decoded)

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        return await _context.execute(self._state, args)


# Where the sandbox looks for the class (temporalio reads `cls.__module__` for every run).
BridgeWorkflow.__module__ = RELOADED_MODULE
