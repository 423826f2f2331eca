"""The migration router: which engine gets a new run, and which engine owns an existing one.

A routing table, never a place for workflow logic. Per workflow type, a `[migrate.WORKFLOW]`
rule in bridge.toml says how new runs are split between an old and a new engine (all-old,
all-new, a percentage ramp by SHA-256 of a key, or shadow). The engine chosen at start is
recorded per workflow id, and every later signal, cancel, describe, result and history call
for that id goes to that engine, so in-flight runs drain where they started while new runs go
where the rule says. The rules are re-read from configuration by `reload()` (and on start
when `reload_every` is set), so a ramp is raised without a code change or a restart; a bad
edit is logged and shown as `Router.warning` while the rules loaded before stay in force,
so a typo in bridge.toml never refuses a start.

```python
router = await Router.connect()                  # bridge.toml: [migrate.debtor] ...
await router.start(debtor, case, id="debtor/42", key="42")
await router.signal("debtor/42", "call_completed", {...})   # reaches the owning engine
```
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from bridge.backend import Status, WorkflowDescription
from bridge.bus._completion import CompletionWatcher
from bridge.bus.transport import Transport
from bridge.client import Client, IfExists, WorkflowHandle, connect_engine
from bridge.config import Settings, load_settings
from bridge.errors import ConfigError, WorkflowNotFoundError
from bridge.history import HistoryEvent
from bridge.migrate._ramp import on_new_engine
from bridge.migrate._routing_table import Route, RoutingTable
from bridge.migrate.rule import MigrationRule
from bridge.plugins import registry
from bridge.workflow import WorkflowDefinition, as_workflow

__all__ = ["EngineState", "EngineStatus", "Router", "ShadowHook"]

log = logging.getLogger("bridge.migrate")

#: How long a route may wait for its run to exist before `refresh()` takes it for the route
#: of a start that died (a router killed between writing the route and starting the run).
STARTING_GRACE_S = 60.0


class ShadowHook(Protocol):
    """Called after a shadowed workflow's run was created on its primary (`from`) engine.
    The shadow runner (`bridge.migrate.shadow`) replays the same input on the rule's `to` engine
    once the primary is done; the router only routes."""

    async def __call__(
        self,
        *,
        router: Router,
        workflow: WorkflowDefinition[..., Any],
        args: tuple[Any, ...],
        workflow_id: str,
        rule: MigrationRule,
    ) -> None: ...


class EngineState(enum.StrEnum):
    ACTIVE = "Active"  # receives new runs under the current rule
    DRAINING = "Draining"  # receives no new runs, still has open ones
    DRAINED = "Drained"  # receives no new runs and has none open


@dataclass(frozen=True)
class EngineStatus:
    """One row of `bridge migrate status`."""

    workflow: str
    engine: str
    role: str  # "from", "to", or "" for an engine no rule names any more
    open: int
    total: int
    state: EngineState
    #: Runs seen finished (completed, failed or cancelled): total - open.
    finished: int = 0
    #: Routes removed because their run was never started (a failed or crashed start).
    failed_starts: int = 0
    #: Shadow runs compared on this engine as the candidate: matched, mismatched, pending,
    #: error (only outcomes that occur).
    shadow: dict[str, int] = dataclasses.field(default_factory=dict)


def _default_shadow_hook() -> ShadowHook:
    # Imported on use: shadow mode's store and answer tables cost nothing to a router
    # without shadow rules.
    from bridge.migrate.shadow import on_primary_started

    return on_primary_started


class Router:
    """One `bridge.Client` per engine, the routing table, and the rules that fill it.

    Construct it with `await Router.connect(...)`. With `completions`, every run the router
    starts is watched and its completion event published there (engines whose outbox
    already writes it in-transaction produce the same event id, which transports drop).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        table: RoutingTable,
        overrides: Mapping[str, Any] | None = None,
        cwd: Path | None = None,
        completions: Transport | None = None,
        shadow_hook: ShadowHook | None = None,
        reload_every: float | None = None,
    ) -> None:
        check_rules(settings)
        self.settings = settings
        self.table = table
        self._overrides = overrides
        self._cwd = cwd
        self._clients: dict[str, Client] = {}
        self._shadow_hook = shadow_hook if shadow_hook is not None else _default_shadow_hook()
        self._reload_every = reload_every
        self._loaded_at = time.monotonic()
        self._warning: str | None = None
        self.watcher = (
            None
            if completions is None
            else CompletionWatcher(transport=completions, on_closed=self._closed)
        )

    @classmethod
    async def connect(
        cls,
        config: Settings | Mapping[str, Any] | None = None,
        *,
        cwd: Path | None = None,
        completions: Transport | None = None,
        shadow_hook: ShadowHook | None = None,
        reload_every: float | None = None,
    ) -> Router:
        """A router for the configuration in `cwd` (bridge.toml, pyproject, BRIDGE_*), with
        `config` as explicit settings on top; `reload()` re-reads the same sources."""
        if isinstance(config, Settings):
            # reload() takes the rules from the files; every other setting stays as given.
            overrides: Mapping[str, Any] | None = config.model_dump(exclude={"migrate"})
            settings = config
        else:
            overrides = config
            settings = load_settings(config, cwd=cwd)
        return cls(
            settings=settings,
            table=RoutingTable(settings.router),
            overrides=overrides,
            cwd=cwd,
            completions=completions,
            shadow_hook=shadow_hook,
            reload_every=reload_every,
        )

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, *, wait_for_shadows: bool = True) -> None:
        """Wait for the shadow runs started from here (they use this router's clients),
        then close every connection. A short-lived process (a CLI command) passes
        `wait_for_shadows=False`: its shadows, which wait for their primaries to finish,
        are then not taken (a warning says how many)."""
        if any(rule.shadow for rule in self.settings.migrate.values()):
            from bridge.migrate.shadow import drain, pending

            if wait_for_shadows:
                await drain()
            elif n := pending():
                log.warning(
                    "%d shadow run(s) not taken: this process ends before their primaries "
                    "finish; start shadowed runs from a long-lived process (your service, "
                    "`bridge bus serve`)",
                    n,
                )
        if self.watcher is not None:
            await self.watcher.close()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        self.table.close()

    # -- configuration ---------------------------------------------------------------------
    def reload(self, settings: Settings | None = None) -> Settings:
        """Re-read the rules (`settings`, or the sources given to `connect`); the settings in
        force afterwards. New runs follow the new rules at once; runs already routed stay
        where they are. Engines already connected keep their connection settings until the
        router is restarted.

        A bad configuration (unreadable TOML, `ramp = 150`, a rule naming no engine) does
        not replace the rules in force: an edit of a live file must never refuse starts.
        It is logged as a warning and kept in `warning` (shown by `bridge migrate status`)
        until a reload succeeds."""
        self._loaded_at = time.monotonic()
        try:
            fresh = settings or load_settings(self._overrides, cwd=self._cwd)
            check_rules(fresh)
        except (ConfigError, OSError) as exc:
            warning = (
                f"the configuration could not be reloaded ({exc}); the rules loaded before "
                "stay in force until it is fixed (check it with `bridge config check`)"
            )
            # With reload_every=0 every start reloads: log a broken file once, not per start.
            if warning != self._warning:
                log.warning("migration router: %s", warning)
            self._warning = warning
            return self.settings
        if self._warning is not None:
            log.warning("migration router: the configuration reloads again; new rules in force")
        self._warning = None
        self.settings = fresh
        return fresh

    @property
    def warning(self) -> str | None:
        """Why the last reload kept the old rules, or None when the rules in force are the
        configuration's current ones."""
        return self._warning

    def _maybe_reload(self) -> None:
        if self._reload_every is not None and (
            time.monotonic() - self._loaded_at >= self._reload_every
        ):
            self.reload()

    @property
    def default_engine(self) -> str:
        """Where runs of workflow types without a rule start, and where ids without a route
        are looked for (runs started before the router was in use)."""
        return self.settings.backend

    def rule(self, workflow: str) -> MigrationRule | None:
        return self.settings.migrate.get(workflow)

    def choose(self, workflow: str, key: str) -> str:
        """The engine a *new* run of `workflow` with this `key` starts on."""
        rule = self.rule(workflow)
        if rule is None:
            return self.default_engine
        if rule.shadow or rule.paused:
            return rule.from_
        return rule.to if on_new_engine(workflow, key, rule.ramp) else rule.from_

    async def client(self, engine: str) -> Client:
        """The connected client of `engine` (connected on first use)."""
        client = self._clients.get(engine)
        if client is None:
            client = await connect_engine(self.settings.engine(engine))
            self._clients[engine] = client
        return client

    def connected(self) -> list[Client]:
        """The engines' clients connected so far."""
        return list(self._clients.values())

    # -- runs ------------------------------------------------------------------------------
    async def start(
        self,
        workflow: WorkflowDefinition[..., Any],
        *args: Any,
        id: str | None = None,
        key: str | None = None,
        if_exists: IfExists = "same_args",
        execution_timeout: float | timedelta | None = None,
        search_attributes: Mapping[Any, Any] | None = None,
    ) -> WorkflowHandle:
        """Start `workflow(*args)` as run `id` on the engine the rules choose for `key`
        (default: the id). An id already routed is started (idempotently) on its own engine.
        `if_exists`, `execution_timeout` and `search_attributes` are `Client.start`'s; a
        shadow run gets no search attributes (it is not one to be found by them)."""
        self._maybe_reload()
        defn = as_workflow(workflow)
        run_id = id or str(uuid.uuid4())
        chosen = self.choose(defn.name, key if key is not None else run_id)
        # The route is written before the run exists, so a crash in between leaves a route
        # whose retried start goes to the same engine, and racing routers agree on one.
        route = self.table.claim(run_id, defn.name, chosen)
        client = await self.client(route.engine)
        try:
            handle = await client.start(
                defn,
                *args,
                id=run_id,
                if_exists=if_exists,
                execution_timeout=execution_timeout,
                search_attributes=search_attributes,
            )
        except BaseException:
            if route.claimed_now:
                await self._forget_if_absent(client, run_id)
            raise
        if self.watcher is not None:
            self.watcher.watch(client, run_id, engine=route.engine)
        rule = self.rule(defn.name)
        if (
            handle.created
            and rule is not None
            and rule.shadow
            and not rule.paused
            and route.engine == rule.from_
            and self._shadow_hook is not None
        ):
            try:
                await self._shadow_hook(
                    router=self, workflow=defn, args=args, workflow_id=run_id, rule=rule
                )
            except Exception:
                # The primary run is what callers get; a failing shadow must not fail it.
                log.exception("the shadow hook failed for %r; the primary run goes on", run_id)
        return handle

    def route(self, id: str) -> Route | None:
        return self.table.get(id)

    def engine_of(self, id: str) -> str:
        """The engine that owns run `id` (the default engine for ids the router never saw)."""
        route = self.table.get(id)
        return route.engine if route is not None else self.default_engine

    async def owner(self, id: str) -> Client:
        return await self.client(self.engine_of(id))

    async def signal(self, id: str, name: str, payload: Any = None) -> None:
        await (await self.owner(id)).signal(id, name, payload)

    async def cancel(self, id: str) -> None:
        await (await self.owner(id)).cancel(id)

    async def describe(self, id: str) -> WorkflowDescription:
        return await (await self.owner(id)).describe(id)

    async def result(self, id: str, *, timeout: float | None = None) -> Any:
        return await (await self.owner(id)).result(id, timeout=timeout)

    async def history(self, id: str) -> list[HistoryEvent]:
        return await (await self.owner(id)).history(id)

    async def query(self, id: str, name: str, *args: Any) -> Any:
        return await (await self.owner(id)).query(id, name, *args)

    def engines(self) -> list[str]:
        """Every engine that may hold runs: the default one, those the rules name and those
        the routing table has routed runs to (a rule since removed), in that order."""
        names = [self.default_engine]
        for rule in self.settings.migrate.values():
            names += [rule.from_, rule.to]
        names += sorted({engine for _, engine in self.table.counts()})
        return list(dict.fromkeys(names))

    async def watch_open(self) -> int:
        """Watch every open route again (after a restart), so no completion is lost; the
        number of runs watched. Needs `completions`."""
        if self.watcher is None:
            raise ConfigError("Router.watch_open() needs a transport: pass completions=...")
        routes = self.table.open_routes()
        for route in routes:
            self.watcher.watch(
                await self.client(route.engine), route.workflow_id, engine=route.engine
            )
        return len(routes)

    async def close_route(self, id: str) -> str:
        """Close the route of run `id` by hand (`bridge migrate routes --close`), asking its
        engine first; what was done, as a sentence. A run still open is refused: closing its
        route would let its engine be retired under it."""
        route = self.table.get(id)
        if route is None:
            raise WorkflowNotFoundError(
                f"no route for {id!r} in the routing table {self.table.url}"
            )
        if not route.is_open:
            return f"the route of {id!r} is already closed ({route.status})"
        client = await self.client(route.engine)
        try:
            desc = await client.describe(id)
        except WorkflowNotFoundError:
            self.table.forget(id)
            return f"removed the route of {id!r}: engine {route.engine!r} has no such run"
        if not desc.status.is_terminal:
            raise ConfigError(
                f"run {id!r} is still {desc.status.value} on engine {route.engine!r}; its "
                f"route stays open (cancel the run with `bridge cancel {id}`, or wait for it)"
            )
        self.table.close_route(id, desc.status.value)
        return f"closed the route of {id!r}: the run is {desc.status.value} on {route.engine!r}"

    async def _forget_if_absent(self, client: Client, id: str) -> bool:
        """Remove the route of `id` unless its engine has the run (a start can fail after
        the engine created it: a lost reply); True if removed."""
        try:
            await client.describe(id)
        except WorkflowNotFoundError:
            return self.table.forget(id)
        except Exception:
            log.warning("could not ask the engine about %r; its route stays open", id)
        return False

    def _closed(self, id: str, status: Status) -> None:
        self.table.close_route(id, status.value)

    # -- status ----------------------------------------------------------------------------
    async def refresh(self, *, limit: int | None = None, concurrency: int = 16) -> int:
        """Ask the owning engines about open routes and close those whose run finished (for
        routers that ran without a completion watcher), and remove those whose run was never
        started (`STARTING_GRACE_S` after the route was written); the number closed or
        removed.

        `limit` bounds the routes asked about: never-checked routes first, then those
        checked longest ago, so repeated bounded refreshes cover every open route. Up to
        `concurrency` describes are in flight at once: one describe per route, one after the
        other, took 8-20 s for 10,000 routes."""
        routes = self.table.routes_to_check(limit)
        if not routes:
            return 0
        gate = asyncio.Semaphore(max(1, concurrency))
        clients = {engine: await self.client(engine) for engine in {r.engine for r in routes}}

        async def check(route: Route) -> bool:
            async with gate:
                try:
                    desc = await clients[route.engine].describe(route.workflow_id)
                except WorkflowNotFoundError:
                    # Routed, not started: a start in progress, or one that died between
                    # the route and the start. Past the grace period it routes nothing.
                    return time.time() - route.created_at > STARTING_GRACE_S and (
                        self.table.forget(route.workflow_id)
                    )
            if desc.status.is_terminal:
                self.table.close_route(route.workflow_id, desc.status.value)
                return True
            return False

        outcomes = await asyncio.gather(*(check(route) for route in routes))
        # Routes still open were checked now; closed and removed ones are unaffected.
        self.table.mark_checked(
            r.workflow_id for r, gone in zip(routes, outcomes, strict=True) if not gone
        )
        return sum(outcomes)

    def status(
        self, *, shadows: Mapping[tuple[str, str], Mapping[str, int]] | None = None
    ) -> list[EngineStatus]:
        """Per workflow type and engine: open, finished and failed starts of the runs routed
        there, and whether the engine is Active (gets new runs), Draining (no new runs, open
        ones left) or Drained. Reads the routing table only (never the engines), so it is
        fast at any size; `refresh()` first for routers that ran without a watcher.

        `shadows` is `ShadowStore.counts()` ((workflow, candidate engine) -> outcome ->
        count), shown on the candidate engine's row; the router opens no shadow store."""
        counts = self.table.counts()
        failures = self.table.failed_starts()
        shadow_counts = shadows or {}
        rows: dict[tuple[str, str], EngineStatus] = {}
        pairs = set(counts) | set(failures) | set(shadow_counts)
        for workflow, rule in self.settings.migrate.items():
            pairs |= {(workflow, rule.from_), (workflow, rule.to)}
        for workflow, engine in sorted(pairs):
            n_open, total = counts.get((workflow, engine), (0, 0))
            role, active = self._role(workflow, engine)
            state = (
                EngineState.ACTIVE
                if active
                else EngineState.DRAINING
                if n_open
                else EngineState.DRAINED
            )
            rows[(workflow, engine)] = EngineStatus(
                workflow,
                engine,
                role,
                n_open,
                total,
                state,
                finished=total - n_open,
                failed_starts=failures.get((workflow, engine), 0),
                shadow=dict(shadow_counts.get((workflow, engine), {})),
            )
        return list(rows.values())

    def _role(self, workflow: str, engine: str) -> tuple[str, bool]:
        """The engine's role in the workflow's rule, and whether it gets new runs."""
        rule = self.rule(workflow)
        if rule is None:
            return "", engine == self.default_engine
        if engine == rule.from_:
            return "from", rule.shadow or rule.paused or rule.ramp < 100
        if engine == rule.to:
            return "to", not rule.shadow and not rule.paused and rule.ramp > 0
        return "", False


def check_rules(settings: Settings) -> None:
    """Every engine a rule names must be an `[engines.NAME]` table or an installed backend."""
    if not settings.migrate:
        return
    backends = registry().names()
    for workflow, rule in settings.migrate.items():
        for field, name in (("from", rule.from_), ("to", rule.to)):
            if name not in settings.engines and name not in backends:
                raise ConfigError(
                    f"[migrate.{workflow}] {field} = {name!r} names no engine: add an "
                    f"[engines.{name}] table or use an installed backend "
                    f"({', '.join(backends) or 'none installed'})"
                )
