"""Triggers: event types bound to workflows, and the dispatcher that acts on them.

```python
bridge.on("doc.uploaded", ingest, id_from=lambda e: f"ingest/{e.data['doc_id']}")
bridge.on("call.completed", signal="call_completed")   # to the run named by e.subject
```

A start trigger derives the workflow id from the event, so a redelivered (or re-published)
event starts nothing twice: `start` is idempotent on the id. A signal trigger delivers the
event's data as a signal to the run the event names. A `Dispatcher` consumes a transport
subscription with the bus's idempotent `Consumer` and applies every trigger of each event,
through the migration router when given one (so a signal reaches the engine that owns the
run) or straight to one client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.bus._completion import CompletionWatcher
from bridge.bus.consumer import Consumer
from bridge.bus.envelope import Event
from bridge.bus.inbox import Inbox
from bridge.bus.transport import Transport
from bridge.client import Client
from bridge.errors import ConfigError, WorkflowClosedError
from bridge.workflow import WorkflowDefinition, as_workflow

if TYPE_CHECKING:
    from bridge.migrate.router import Router

__all__ = ["Dispatcher", "Trigger", "on", "registered_triggers"]

log = logging.getLogger("bridge.bus")

#: The subscription a Dispatcher consumes unless told otherwise.
DEFAULT_SUBSCRIPTION = "bridge.triggers"


def default_id(event: Event) -> str:
    """A start trigger's workflow id: the event's duplicate key, so one event is one run."""
    return f"{event.source}/{event.id}"


def default_args(event: Event) -> Sequence[Any]:
    """A start trigger's arguments: the event's data as the one argument."""
    return (event.data,)


def _typed_default_args(workflow: WorkflowDefinition[..., Any]) -> Callable[[Event], Sequence[Any]]:
    """`default_args` decoded with the workflow's declared parameter type: an event's data
    is JSON, so a workflow taking `order: Order` gets an Order built from it, as from
    `bridge run`. A user's `args_from` returns Python values and is left as it is."""

    def args_from(event: Event) -> Sequence[Any]:
        return workflow.shape.decode_json_args(
            default_args(event), source=f"the data of event {event.source}/{event.id}"
        )

    return args_from


def subject_id(event: Event) -> str:
    """A signal trigger's target: the run the event's `subject` names."""
    if not event.subject:
        raise ConfigError(
            f"event {event.source}/{event.id} of type {event.type!r} has no subject, so a "
            "signal trigger cannot tell which run it is for; set the event's subject to the "
            "workflow id or pass id_from= to bridge.on(...)"
        )
    return event.subject


@dataclass(frozen=True)
class Trigger:
    """One binding. Exactly one of `workflow` (start a run) and `signal` (signal a run)."""

    type: str
    workflow: WorkflowDefinition[..., Any] | None
    signal: str | None
    id_from: Callable[[Event], str]
    args_from: Callable[[Event], Sequence[Any]]
    payload_from: Callable[[Event], Any]
    key_from: Callable[[Event], str] | None

    def workflow_id(self, event: Event) -> str:
        run_id = self.id_from(event)
        if not isinstance(run_id, str) or not run_id:
            raise ConfigError(
                f"trigger on {self.type!r}: id_from returned {run_id!r} for event "
                f"{event.source}/{event.id}; it must return a non-empty string"
            )
        return run_id

    async def apply(self, event: Event, target: Router | Client) -> None:
        """Start or signal the run this event is for, on `target`."""
        run_id = self.workflow_id(event)
        if self.signal is not None:
            try:
                await target.signal(run_id, self.signal, self.payload_from(event))
            except WorkflowClosedError:
                # A late event (a payment after the run gave up waiting): nothing to wake.
                log.info(
                    "event %s/%s: run %r is closed; signal %r dropped",
                    event.source,
                    event.id,
                    run_id,
                    self.signal,
                )
            return
        assert self.workflow is not None
        args = tuple(self.args_from(event))
        if isinstance(target, Client):
            await target.start(self.workflow, *args, id=run_id)
        else:
            key = self.key_from(event) if self.key_from is not None else None
            await target.start(self.workflow, *args, id=run_id, key=key)


_TRIGGERS: dict[tuple[str, str], Trigger] = {}


def on(
    event_type: str,
    workflow: WorkflowDefinition[..., Any] | None = None,
    *,
    signal: str | None = None,
    id_from: Callable[[Event], str] | None = None,
    args_from: Callable[[Event], Sequence[Any]] | None = None,
    payload_from: Callable[[Event], Any] | None = None,
    key_from: Callable[[Event], str] | None = None,
) -> Trigger:
    """Bind events of `event_type` to starting `workflow`, or to `signal` on a run.

    Start: the run's id is `id_from(event)` (default `"{source}/{id}"`), its arguments
    `args_from(event)` (default: the event's data as the one argument, decoded with the
    workflow's declared parameter type), and the migration
    router buckets it by `key_from(event)` (default: the id). Signal: the run is
    `id_from(event)` (default: the event's subject) and the payload `payload_from(event)`
    (default: the data). Binding the same type to the same target again replaces the
    binding; one type may start several workflows.
    """
    if not isinstance(event_type, str) or not event_type:
        raise ConfigError(
            f"bridge.on: the event type must be a non-empty string, got {event_type!r}"
        )
    if (workflow is None) == (signal is None):
        raise ConfigError(
            f"bridge.on({event_type!r}, ...): pass a workflow to start, or signal='name' to "
            "signal a run, not both"
        )
    if signal is not None and args_from is not None:
        raise ConfigError(f"bridge.on({event_type!r}, signal=...): use payload_from, not args_from")
    if workflow is not None and payload_from is not None:
        raise ConfigError(f"bridge.on({event_type!r}, workflow): use args_from, not payload_from")
    defn = as_workflow(workflow) if workflow is not None else None
    trigger = Trigger(
        type=event_type,
        workflow=defn,
        signal=signal,
        id_from=id_from or (default_id if defn is not None else subject_id),
        args_from=args_from or (_typed_default_args(defn) if defn is not None else default_args),
        payload_from=payload_from or (lambda event: event.data),
        key_from=key_from,
    )
    target = f"signal:{signal}" if signal is not None else f"workflow:{defn.name}"  # type: ignore[union-attr]
    _TRIGGERS[(event_type, target)] = trigger
    return trigger


def registered_triggers() -> list[Trigger]:
    return list(_TRIGGERS.values())


class Dispatcher:
    """Consumes `subscription` on `transport` and applies the triggers of each event.

    `target` is a migration `Router` (starts follow its rules, signals go to the owning
    engine, and it publishes completions if it has a transport for them) or one `Client`
    (with `completions=True`, runs it starts are watched and their completion events
    published on `transport`). Duplicate deliveries are dropped by the consumer's inbox; a
    failing trigger is retried with backoff and dead-lettered after the transport's
    `max_deliveries`. A signal whose run does not exist yet (its start event is late) fails
    and is retried, so reordered events still arrive.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        target: Router | Client,
        triggers: Sequence[Trigger] | None = None,
        subscription: str = DEFAULT_SUBSCRIPTION,
        inbox: Inbox | None = None,
        completions: bool = True,
        batch_size: int = 100,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.05,
        retry_base: float = 0.2,
        retry_max: float = 10.0,
    ) -> None:
        chosen = list(triggers) if triggers is not None else registered_triggers()
        if not chosen:
            raise ConfigError(
                "Dispatcher: no triggers; bind some with bridge.on(...) or pass triggers=[...]"
            )
        self.transport = transport
        self.target = target
        self.triggers: dict[str, list[Trigger]] = {}
        for trigger in chosen:
            self.triggers.setdefault(trigger.type, []).append(trigger)
        self.watcher = (
            CompletionWatcher(transport=transport)
            if completions and isinstance(target, Client)
            else None
        )
        self.consumer = Consumer(
            transport=transport,
            subscription=subscription,
            handler=self._handle,
            inbox=inbox,
            types=sorted(self.triggers),
            batch_size=batch_size,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            retry_base=retry_base,
            retry_max=retry_max,
        )

    async def _handle(self, event: Event, _connection: Any) -> None:
        for trigger in self.triggers.get(event.type, ()):
            await trigger.apply(event, self.target)
            if self.watcher is not None and trigger.workflow is not None:
                assert isinstance(self.target, Client)
                self.watcher.watch(
                    self.target, trigger.workflow_id(event), engine=self.target.backend_name
                )

    async def subscribe(self) -> None:
        """Create the subscription now (events published before it are not seen)."""
        await self.consumer.subscribe()

    async def run_once(self) -> int:
        return await self.consumer.run_once()

    async def run(self) -> None:
        """Handle events until `stop()`."""
        try:
            await self.consumer.run()
        finally:
            if self.watcher is not None:
                await self.watcher.close()

    def stop(self) -> None:
        self.consumer.stop()

    async def __aenter__(self) -> Dispatcher:
        await self.subscribe()
        self._task = asyncio.create_task(self.run(), name="bridge-dispatcher")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        await self._task
