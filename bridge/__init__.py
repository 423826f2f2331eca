"""durable-bridge: write a workflow or agent loop once, run it durably on any engine.

`import bridge` gives the whole user API. `bridge` never imports an engine: backends live
in `backends.*` and are found through the `bridge.backends` entry-point group.
"""

from bridge import codec, history
from bridge._liveness import heartbeat
from bridge.activity import ActivityDefinition, ActivityInfo, RetryPolicy, activity, activity_info
from bridge.backend import Backend, ScheduleDescription, Status, Worker, WorkflowDescription
from bridge.client import Client, ScheduleHandle, WorkflowHandle, connect, schedule
from bridge.concurrency import Limit, RateLimit
from bridge.config import Settings, load_settings
from bridge.errors import (
    ActivityError,
    ActivityHeartbeatTimeoutError,
    ActivityTimeoutError,
    BridgeError,
    ChildWorkflowError,
    CompensationError,
    ConfigError,
    InvalidIdError,
    InvalidScheduleError,
    InvalidSearchAttributeError,
    InvalidSearchQueryError,
    NonDeterminismError,
    NonRetryableError,
    NotRegisteredError,
    PayloadTooLargeError,
    QueryFailedError,
    QueryNotFoundError,
    RetryAfter,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
    SerializationError,
    StorageError,
    UnknownBackendError,
    UpdateFailedError,
    UpdateNotFoundError,
    UpdateRejectedError,
    WorkflowBlockedError,
    WorkflowCancelledError,
    WorkflowClosedError,
    WorkflowFailedError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from bridge.history import EventType, HistoryEvent
from bridge.search import SearchAttribute
from bridge.workflow import ChildHandle, Context, Signal, WorkflowDefinition, workflow

__all__ = [
    # Declaring work
    "activity",
    "workflow",
    "RetryPolicy",
    "Limit",
    "RateLimit",
    "Context",
    "Signal",
    "ChildHandle",
    "activity_info",
    "heartbeat",
    "ActivityInfo",
    "ActivityDefinition",
    "WorkflowDefinition",
    # Running it
    "connect",
    "Client",
    "WorkflowHandle",
    "Worker",
    "WorkflowDescription",
    "Status",
    "Settings",
    "load_settings",
    "Backend",
    # Schedules
    "schedule",
    "ScheduleHandle",
    "ScheduleDescription",
    # Finding runs
    "SearchAttribute",
    # Events
    "on",
    # Data and history
    "codec",
    "history",
    "EventType",
    "HistoryEvent",
    # Errors
    "BridgeError",
    "ConfigError",
    "UnknownBackendError",
    "SerializationError",
    "NonDeterminismError",
    "ActivityError",
    "ActivityHeartbeatTimeoutError",
    "ActivityTimeoutError",
    "NonRetryableError",
    "RetryAfter",
    "CompensationError",
    "ChildWorkflowError",
    "StorageError",
    "NotRegisteredError",
    "InvalidIdError",
    "InvalidScheduleError",
    "InvalidSearchAttributeError",
    "InvalidSearchQueryError",
    "ScheduleAlreadyExistsError",
    "ScheduleNotFoundError",
    "PayloadTooLargeError",
    "QueryNotFoundError",
    "QueryFailedError",
    "UpdateNotFoundError",
    "UpdateRejectedError",
    "UpdateFailedError",
    "WorkflowFailedError",
    "WorkflowCancelledError",
    "WorkflowBlockedError",
    "WorkflowClosedError",
    "WorkflowIdConflictError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
]


def __getattr__(name: str) -> object:
    # `bridge.on` is loaded on first use: the event bus pulls in SQLAlchemy and its
    # transports, which a process that only runs workflows never needs at import time.
    if name == "on":
        from bridge.bus.triggers import on

        return on
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
