"""The one Temporal workflow type that runs every neutral workflow.

Temporal's sandbox imports this module afresh for every run, so it is kept small: the work
lives in `_context.py`, which is passed through. On that import, inside the sandbox, it
imports the modules of the workflows this process serves, so their code is loaded (and
checked) by the sandbox too, before the run starts and outside its runtime restrictions.
"""

# No `from __future__ import annotations` here: temporalio reads the signal handler's type
# hints for every run (this module is imported afresh each time), and string annotations
# would be evaluated through the sandbox's module proxies each time.
from collections import deque
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from backends.temporal import _context, _registry

__all__ = ["BridgeWorkflow"]

if workflow.unsafe.in_sandbox():
    _registry.import_served_modules()


@workflow.defn(dynamic=True)
class BridgeWorkflow:
    """Runs the neutral workflow named by the Temporal workflow type."""

    def __init__(self) -> None:
        # Signals queue per name until a wait takes them, so one sent early is kept.
        self._signals: dict[str, deque[Any]] = {}

    @workflow.signal(dynamic=True)
    def _on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        payload = workflow.payload_converter().from_payload(args[0].payload) if args else None
        self._signals.setdefault(name, deque()).append(payload)

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        return await _context.execute(self._signals, args)
