"""One activity attempt's heartbeats and cancellation, shared with the code that runs it.

The attempt's supervisor (`bridge._execute`) fails an attempt that stays silent longer than
its `heartbeat_timeout` and cancels it when its run is cancelled. An async activity is
cancelled at its next await; a synchronous one runs in a thread Python cannot interrupt,
so it learns of the cancellation at its next `bridge.heartbeat()`, which raises. Temporal's
shim adds a sink that forwards each beat to Temporal's own heartbeat, so the server sees it
and hands the details to the next attempt after a worker crash.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge import codec
from bridge.errors import OutsideWorkflowError

__all__ = ["Liveness", "current_liveness", "heartbeat"]


class Liveness:
    """The heartbeats of one attempt: when it last beat, what it said, whether it must stop.

    `previous` is the last details an earlier attempt of the same step heartbeated (what a
    retry resumes from); `details` those of this attempt, None until it beats."""

    def __init__(self, *, previous: Any = None, sink: Callable[[Any], None] | None = None) -> None:
        self.previous = previous
        self.details: Any = None
        self.beaten = False
        self.last_beat = time.monotonic()
        self._sink = sink
        # An Event, not a bool: a synchronous activity reads it from its own thread.
        self._cancelled = threading.Event()

    def beat(self, details: Any = None) -> None:
        data = codec.to_jsonable(details, where="the heartbeat details")
        self.last_beat = time.monotonic()
        self.details = data
        self.beaten = True
        if self._sink is not None:
            self._sink(data)
        if self._cancelled.is_set():
            raise asyncio.CancelledError("the activity attempt was cancelled")

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def silent_for(self) -> float:
        return time.monotonic() - self.last_beat


_current: contextvars.ContextVar[Liveness | None] = contextvars.ContextVar(
    "bridge_activity_liveness", default=None
)


def current_liveness() -> contextvars.ContextVar[Liveness | None]:
    """The context variable the supervisor sets around an attempt (copied into the thread
    of a synchronous activity by `asyncio.to_thread`)."""
    return _current


def heartbeat(details: Any = None) -> None:
    """Tell the engine this activity attempt is alive, with `details` (JSON data: progress
    to resume from) that the next attempt reads as `bridge.activity_info().heartbeat_details`.

    An activity declared with `heartbeat_timeout` must call it more often than that, or the
    attempt fails (ActivityHeartbeatTimeoutError) and is retried. In a synchronous activity
    it raises `asyncio.CancelledError` once the attempt was cancelled (its run cancelled, or
    its heartbeat timeout passed): let it propagate."""
    live = _current.get()
    if live is None:
        raise OutsideWorkflowError("bridge.heartbeat() was called outside a running activity")
    live.beat(details)
