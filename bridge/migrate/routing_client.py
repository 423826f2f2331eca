"""The client `bridge.connect()` returns when `[migrate.WORKFLOW]` rules exist.

A `Client` whose calls go through the migration router: `start` follows the rules (and
records the route), every call about an existing run goes to the engine that owns it, and
`list` spans every engine the router knows. Code written against `bridge.connect()` and
every CLI command therefore stay right during a migration with no change; a run started
before the rules existed has no route and is looked for on the default engine, as before.

Workers are per engine: `worker()` serves the default engine (`--backend` picks another),
and `client_for(id)` gives the owning engine's client, from which a worker for that run is
made.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

from bridge.backend import Status, WorkflowDescription
from bridge.client import Client, IfExists, WorkflowHandle
from bridge.config import Settings
from bridge.history import HistoryEvent
from bridge.migrate.router import Router
from bridge.search import parse
from bridge.workflow import WorkflowDefinition

__all__ = ["RoutingClient", "connect_routing"]


async def connect_routing(settings: Settings) -> RoutingClient:
    """A routing client for `settings` (which hold the rules); the default engine is
    connected at once, so a wrong configuration fails here as `connect()` always did."""
    router = await Router.connect(settings, reload_every=settings.router.reload_every)
    try:
        default = await router.client(router.default_engine)
    except BaseException:
        await router.close()
        raise
    return RoutingClient(router=router, default=default)


class RoutingClient(Client):
    """`Client`'s API over a `Router`; `router` is there for what only it offers (status,
    routes, reload)."""

    def __init__(self, *, router: Router, default: Client) -> None:
        # The default engine's backend and interceptors, taken from its connected client
        # rather than loaded again by Client.__init__: `worker()`, `backend_name` and the
        # harness see the default engine, as without rules.
        self.backend = default.backend
        self.settings = router.settings
        self.interceptors = default.interceptors
        self.router = router

    @property
    def unsafe_teardown(self) -> bool:
        return any(c.unsafe_teardown for c in self.router.connected())

    async def close(self, *, wait: bool = True) -> None:
        await self.router.close(wait_for_shadows=wait)

    async def client_for(self, id: str) -> Client:
        return await self.router.owner(id)

    async def start(
        self,
        workflow: WorkflowDefinition[..., Any],
        *args: Any,
        id: str | None = None,
        if_exists: IfExists = "same_args",
        execution_timeout: float | timedelta | None = None,
        key: str | None = None,
        search_attributes: Mapping[Any, Any] | None = None,
    ) -> WorkflowHandle:
        """`Client.start` on the engine the rules choose; `key` is the ramp's key (default:
        the id), so one customer's runs can be kept on one engine."""
        handle = await self.router.start(
            workflow,
            *args,
            id=id,
            key=key,
            if_exists=if_exists,
            execution_timeout=execution_timeout,
            search_attributes=search_attributes,
        )
        return WorkflowHandle(client=self, id=handle.id, created=handle.created)

    async def result(self, id: str, *, timeout: float | None = None) -> Any:
        owner = await self.router.owner(id)
        desc = await owner.backend.wait(id, timeout=timeout)
        self._seen(desc)
        return owner.outcome(desc)

    async def signal(self, id: str, name: str, payload: Any = None) -> None:
        await self.router.signal(id, name, payload)

    async def cancel(self, id: str) -> None:
        await self.router.cancel(id)

    async def query(self, id: str, name: str, *args: Any) -> Any:
        return await self.router.query(id, name, *args)

    async def update(
        self,
        id: str,
        name: str,
        *args: Any,
        update_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Sent to the engine that owns the run, like every call about an existing run."""
        owner = await self.router.owner(id)
        return await owner.update(id, name, *args, update_id=update_id, timeout=timeout)

    async def describe(self, id: str) -> WorkflowDescription:
        engine = self.router.engine_of(id)
        desc = await (await self.router.client(engine)).describe(id)
        self._seen(desc)
        return dataclasses.replace(desc, engine=engine)

    def _seen(self, desc: WorkflowDescription) -> None:
        """Close the route of a run seen finished, so `bridge migrate status` counts it
        without a completion watcher or a refresh."""
        if desc.status.is_terminal and not desc.blocked:
            self.router.table.close_route(desc.id, desc.status.value)

    async def history(self, id: str) -> list[HistoryEvent]:
        return await self.router.history(id)

    async def follow(self, id: str, *, poll: float = 0.5) -> AsyncIterator[HistoryEvent]:
        async for event in (await self.router.owner(id)).follow(id, poll=poll):
            yield event

    async def list(
        self, *, status: Status | str | None = None, limit: int = 100, query: str | None = None
    ) -> list[WorkflowDescription]:
        """The newest `limit` runs over every engine the router knows, each with its
        `engine`; engines are asked at once, each with the same `query`
        (`bridge.search`, validated once here)."""
        engines = self.router.engines()
        clients = [await self.router.client(e) for e in engines]
        if query is not None:
            parse(query)  # a bad query fails once, before any engine is asked
        per_engine = await asyncio.gather(
            *(c.list(status=status, limit=limit, query=query) for c in clients)
        )
        runs = [
            dataclasses.replace(desc, engine=engine)
            for engine, descs in zip(engines, per_engine, strict=True)
            for desc in descs
        ]
        runs.sort(key=lambda d: d.created_at.timestamp(), reverse=True)
        return runs[:limit]
