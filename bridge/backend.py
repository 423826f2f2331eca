"""The contract between the neutral client and an engine, plus the shapes both sides share.

A backend is a small object that starts, signals, cancels and describes runs, and makes
workers. `bridge.Client` does the engine-independent work (argument encoding, registration
checks, result decoding) so every backend receives already-validated JSON data.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from bridge.config import Settings
from bridge.history import HistoryEvent
from bridge.workflow import WorkflowDefinition

__all__ = ["Backend", "Status", "Worker", "WorkflowDescription"]


class Status(enum.StrEnum):
    PENDING = "PENDING"  # waiting for a worker
    RUNNING = "RUNNING"  # a worker holds it
    WAITING = "WAITING"  # suspended on a timer or a signal; no worker holds it
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


@dataclass(frozen=True)
class WorkflowDescription:
    """The state of one run. `result` is JSON data (the client decodes it to its type)."""

    id: str
    name: str
    status: Status
    created_at: datetime
    updated_at: datetime
    backend: str
    result: Any = None
    error: dict[str, Any] | None = None
    waiting_for: str | None = None
    #: Stopped by a NonDeterminismError: kept, not failed, until fixed code resumes it.
    blocked: bool = False


class Worker(abc.ABC):
    """Runs workflows for a backend. Use `async with worker:` or `await worker.run()`."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Run until `stop()` is called."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    async def __aenter__(self) -> Worker:
        import asyncio

        self._background = asyncio.ensure_future(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        await self._background


class Backend(abc.ABC):
    """One engine. Arguments and results cross this boundary as JSON-compatible data."""

    name: ClassVar[str]
    #: What this engine supports; the compatibility harness skips scenarios it lacks.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def start(
        self, workflow: WorkflowDefinition[..., Any], args: dict[str, Any], *, id: str
    ) -> bool:
        """Start a run unless `id` exists; True when this call created it."""

    @abc.abstractmethod
    async def describe(self, id: str) -> WorkflowDescription: ...

    @abc.abstractmethod
    async def wait(self, id: str, *, timeout: float | None) -> WorkflowDescription:
        """Block until run `id` is finished; its final description."""

    @abc.abstractmethod
    async def signal(self, id: str, name: str, payload: Any) -> None: ...

    @abc.abstractmethod
    async def cancel(self, id: str) -> None: ...

    @abc.abstractmethod
    async def history(self, id: str) -> list[HistoryEvent]: ...

    @abc.abstractmethod
    async def list(
        self, *, status: Status | None = None, limit: int = 100
    ) -> list[WorkflowDescription]: ...

    @abc.abstractmethod
    def worker(self, *, workflows: Sequence[WorkflowDefinition[..., Any]]) -> Worker: ...

    async def close(self) -> None:
        """Release connections; the default has nothing to release."""
