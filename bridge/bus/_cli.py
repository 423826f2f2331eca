"""`bridge bus serve` and `bridge bus dead-letters list|replay|drop`: the bus from a shell.

`serve` is the trigger front door as a process: it imports the `--module` modules (whose
`bridge.on(...)` calls register triggers), consumes the SQL outbox's trigger subscription
and starts or signals runs through the migration router, until SIGTERM or Ctrl-C. Before
it, a deployment had to write that loop in Python (as the tests do with `Dispatcher`).

A trigger whose handler keeps failing (a bad argument, a bug) moves the event to the dead
letters after `max_deliveries` attempts. Once the cause is fixed, the operator replays them
(each a fresh delivery to the same subscription) or drops them; until now that took Python.
The outbox is the database `--url` names, by default the sql journal's (where `[sql] outbox`
writes completion events). `bridge/cli.py` mounts `bus_app` as `bridge bus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bridge.config import load_settings
from bridge.encryption import keyring_from_settings
from bridge.errors import ConfigError

__all__ = ["bus_app"]

T = TypeVar("T")

bus_app = typer.Typer(
    name="bus",
    help="The event bus's SQL outbox: serve the triggers, inspect dead letters.",
    no_args_is_help=True,
)
dead_letters_app = typer.Typer(
    name="dead-letters",
    help="Events a subscription gave up on: list, replay, drop.",
    no_args_is_help=True,
)
bus_app.add_typer(dead_letters_app)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="The outbox's database (SQLAlchemy URL); default: the sql journal's."
    ),
]
NatsOption = Annotated[
    str | None,
    typer.Option(
        "--nats",
        metavar="URL",
        help="Take the dead letters of the NATS JetStream bus at URL instead of a SQL outbox.",
    ),
]
Subscription = Annotated[
    str,
    typer.Argument(metavar="SUBSCRIPTION", help="The subscription whose dead letters to take."),
]
EventIds = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="EVENT_ID",
        help="Event ids to take (default: every dead letter of the subscription).",
    ),
]


@bus_app.command("serve")
def serve(
    module: Annotated[
        list[str] | None,
        typer.Option(
            "--module",
            "-m",
            metavar="MODULE",
            help="Module whose import binds triggers with bridge.on(...) (repeatable); "
            "`workflows` in the settings are imported too.",
        ),
    ] = None,
    url: UrlOption = None,
    subscription: Annotated[
        str,
        typer.Option("--subscription", "-s", metavar="NAME", help="The subscription to consume."),
    ] = "bridge.triggers",
    completions: Annotated[
        bool,
        typer.Option(
            "--completions/--no-completions",
            help="Publish the completion events of the runs it starts (and of the routes "
            "left open by an earlier process) to the same outbox, closing their routes.",
        ),
    ] = True,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", min=0.001, metavar="SECONDS", help="Seconds between polls when idle."
        ),
    ] = 0.2,
) -> None:
    """Run the triggers as a process: consume events, start or signal runs via the router.

    Events of the types bound by bridge.on(...) in the --module modules are taken from the
    outbox's subscription; starts follow the \\[migrate.WORKFLOW] rules (the default engine
    without one), signals go to the engine that owns the run. Stops on SIGTERM or Ctrl-C,
    finishing the batch in hand.
    """
    # Imported here: `bridge --help` loads none of this, and bridge.cli imports this module.
    # The router lives in bridge.migrate; the bus library never imports it, only this
    # command does, as the process that joins the two.
    from bridge.bus.outbox import SqlOutbox
    from bridge.bus.triggers import Dispatcher, registered_triggers
    from bridge.cli import _import_module, err
    from bridge.migrate.router import Router

    settings = load_settings()
    for name in [*(module or []), *settings.workflows]:
        _import_module(name)
    triggers = registered_triggers()
    if not triggers:
        raise ConfigError(
            "bridge bus serve: no triggers; pass --module MODULE for a module that calls "
            "bridge.on(...) when imported"
        )
    outbox_url = url or settings.sql.url

    async def body() -> None:
        transport = SqlOutbox(url=outbox_url, codec=keyring_from_settings(settings.encryption))
        router = await Router.connect(
            settings,
            completions=transport if completions else None,
            reload_every=settings.router.reload_every,
        )
        try:
            dispatcher = Dispatcher(
                transport=transport,
                target=router,
                triggers=triggers,
                subscription=subscription,
                poll_interval=poll,
            )
            await dispatcher.subscribe()
            watched = await router.watch_open() if completions else 0
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):  # Windows: no signal handlers
                    loop.add_signal_handler(sig, dispatcher.stop)
            types = sorted({t.type for t in triggers})
            err.print(
                f"serving {len(triggers)} trigger(s) on {', '.join(types)} from {outbox_url} "
                f"(subscription {subscription!r}, through the router"
                + (f", watching {watched} open run(s)" if watched else "")
                + "); SIGTERM or Ctrl-C to stop",
                markup=False,
                soft_wrap=True,
            )
            await dispatcher.run()
        finally:
            await router.close()
            await transport.close()
        err.print(f"stopped: {dispatcher.consumer.stats}", markup=False, soft_wrap=True)

    asyncio.run(body())


def _with_outbox(
    url: str | None, body: Callable[[Any], Awaitable[T]], *, nats: str | None = None
) -> T:
    """Run `body` with the SQL outbox at `url` (default: the sql journal's), or with the
    NATS JetStream bus at `nats` (its default stream and subject prefix): both keep dead
    letters and answer the same three calls."""

    async def run() -> T:
        if nats is not None:
            from bridge.bus.nats import NatsTransport

            bus: Any = NatsTransport(servers=nats)
        else:
            from bridge.bus.outbox import SqlOutbox

            settings = load_settings()
            bus = SqlOutbox(
                url=url or settings.sql.url, codec=keyring_from_settings(settings.encryption)
            )
        try:
            return await body(bus)
        finally:
            await bus.close()

    return asyncio.run(run())


@dead_letters_app.command("list")
def list_dead_letters(
    subscription: Annotated[
        str | None, typer.Option("--subscription", "-s", help="Only this subscription's.")
    ] = None,
    url: UrlOption = None,
    nats: NatsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The dead letters as JSON.")] = False,
) -> None:
    """The dead letters, oldest first: subscription, event, attempts and the last error."""
    from bridge.cli import out

    letters = _with_outbox(url, lambda o: o.dead_letters(subscription), nats=nats)
    if as_json:
        rows = [
            {
                "subscription": d.subscription,
                "event": d.event.to_dict() if d.event is not None else None,
                "attempts": d.attempts,
                "error": d.error,
                "dead_at": d.dead_at,
            }
            for d in letters
        ]
        print(json.dumps(rows, indent=2))
        return
    if not letters:
        out.print("no dead letters", markup=False)
        return
    table = Table()
    for column in ("subscription", "event id", "type", "attempts", "dead at", "error"):
        table.add_column(column, overflow="fold")
    for d in letters:
        table.add_row(
            d.subscription,
            d.event.id if d.event is not None else "(not an event)",
            d.event.type if d.event is not None else "",
            str(d.attempts),
            datetime.fromtimestamp(d.dead_at).strftime("%Y-%m-%d %H:%M:%S"),
            d.error or "",
        )
    out.print(table)


@dead_letters_app.command("replay")
def replay(
    subscription: Subscription,
    event_ids: EventIds = None,
    url: UrlOption = None,
    nats: NatsOption = None,
) -> None:
    """Deliver dead letters of SUBSCRIPTION again (fix what made them fail first)."""
    from bridge.cli import out

    n = _with_outbox(
        url, lambda o: o.replay_dead_letters(subscription, event_ids or None), nats=nats
    )
    out.print(f"replayed {n} dead letter{'s' if n != 1 else ''} of {subscription!r}", markup=False)


@dead_letters_app.command("drop")
def drop(
    subscription: Subscription,
    event_ids: EventIds = None,
    url: UrlOption = None,
    nats: NatsOption = None,
) -> None:
    """Delete dead letters of SUBSCRIPTION for good."""
    from bridge.cli import out

    n = _with_outbox(url, lambda o: o.drop_dead_letters(subscription, event_ids or None), nats=nats)
    out.print(f"dropped {n} dead letter{'s' if n != 1 else ''} of {subscription!r}", markup=False)
