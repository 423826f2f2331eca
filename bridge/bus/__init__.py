"""The event bus: a CloudEvents-shaped envelope, transports behind one protocol, an
outbox and inbox, idempotent consumers, triggers, webhooks and completion events.

The migration router and shadow mode moved to `bridge.migrate`; `bridge.bus.Router`,
`EngineState`, `EngineStatus` and the `router` and `shadow` modules still resolve there,
with a DeprecationWarning, until release 0.3.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.bus._completion import (
        WORKFLOW_COMPLETED,
        WORKFLOW_FAILED,
        WORKFLOW_SOURCE,
        CompletionWatcher,
        completion_event,
    )
    from bridge.bus.consumer import Consumer, ConsumerStats, Handler
    from bridge.bus.envelope import SPECVERSION, Event, EventError
    from bridge.bus.inbox import (
        Inbox,
        InboxTransaction,
        MemoryInbox,
        MemoryTransaction,
        SqlInbox,
    )
    from bridge.bus.memory import ConsumerCrash, ManualClock, MemoryTransport
    from bridge.bus.outbox import DeadLetter, SqlOutbox, publish_in
    from bridge.bus.transport import Delivery, LeaseLostError, Transport
    from bridge.bus.triggers import Dispatcher, Trigger, on

__all__ = [
    "SPECVERSION",
    "WORKFLOW_COMPLETED",
    "WORKFLOW_FAILED",
    "WORKFLOW_SOURCE",
    "CompletionWatcher",
    "Dispatcher",
    "Trigger",
    "completion_event",
    "on",
    "Consumer",
    "ConsumerCrash",
    "ConsumerStats",
    "DeadLetter",
    "Delivery",
    "Event",
    "EventError",
    "Handler",
    "Inbox",
    "InboxTransaction",
    "LeaseLostError",
    "ManualClock",
    "MemoryInbox",
    "MemoryTransaction",
    "MemoryTransport",
    "SqlInbox",
    "SqlOutbox",
    "Transport",
    "publish_in",
]

# Every name is loaded on first use: the bus's SQL tables pull in SQLAlchemy, which a
# process that only loads the bus's journal interceptor (every client does) never needs.
_HOME = {
    "bridge.bus._completion": (
        "WORKFLOW_COMPLETED",
        "WORKFLOW_FAILED",
        "WORKFLOW_SOURCE",
        "CompletionWatcher",
        "completion_event",
    ),
    "bridge.bus.consumer": ("Consumer", "ConsumerStats", "Handler"),
    "bridge.bus.envelope": ("SPECVERSION", "Event", "EventError"),
    "bridge.bus.inbox": (
        "Inbox",
        "InboxTransaction",
        "MemoryInbox",
        "MemoryTransaction",
        "SqlInbox",
    ),
    "bridge.bus.memory": ("ConsumerCrash", "ManualClock", "MemoryTransport"),
    "bridge.bus.outbox": ("DeadLetter", "SqlOutbox", "publish_in"),
    "bridge.bus.transport": ("Delivery", "LeaseLostError", "Transport"),
    "bridge.bus.triggers": ("Dispatcher", "Trigger", "on"),
}
_LAZY = {name: module for module, names in _HOME.items() for name in names}

# Old name -> the module of `bridge.migrate` that now holds it (the module itself for
# `router` and `shadow`).
_MOVED = {
    "Router": "bridge.migrate.router",
    "EngineState": "bridge.migrate.router",
    "EngineStatus": "bridge.migrate.router",
    "router": "bridge.migrate.router",
    "shadow": "bridge.migrate.shadow",
}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is not None:
        return getattr(importlib.import_module(home), name)
    target = _MOVED.get(name)
    if target is None:
        raise AttributeError(f"module 'bridge.bus' has no attribute {name!r}")
    new = target if name in ("router", "shadow") else f"{target}.{name}"
    warnings.warn(
        f"bridge.bus.{name} moved to {new}; import it from there (the old name goes in 0.3)",
        DeprecationWarning,
        stacklevel=2,
    )
    module = importlib.import_module(target)
    return module if name in ("router", "shadow") else getattr(module, name)
