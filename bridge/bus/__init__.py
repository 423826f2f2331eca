"""The event bus: a CloudEvents-shaped envelope, transports behind one protocol,
idempotent consumers, triggers and the migration router."""

from bridge.bus._completion import (
    WORKFLOW_COMPLETED,
    WORKFLOW_FAILED,
    WORKFLOW_SOURCE,
    CompletionWatcher,
    completion_event,
)
from bridge.bus.consumer import Consumer, ConsumerStats, Handler
from bridge.bus.envelope import SPECVERSION, Event, EventError
from bridge.bus.inbox import Inbox, InboxTransaction, MemoryInbox, MemoryTransaction, SqlInbox
from bridge.bus.memory import ConsumerCrash, ManualClock, MemoryTransport
from bridge.bus.outbox import DeadLetter, SqlOutbox, publish_in
from bridge.bus.router import EngineState, EngineStatus, Router
from bridge.bus.transport import Delivery, LeaseLostError, Transport
from bridge.bus.triggers import Dispatcher, Trigger, on

__all__ = [
    "SPECVERSION",
    "WORKFLOW_COMPLETED",
    "WORKFLOW_FAILED",
    "WORKFLOW_SOURCE",
    "CompletionWatcher",
    "Dispatcher",
    "EngineState",
    "EngineStatus",
    "Router",
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
