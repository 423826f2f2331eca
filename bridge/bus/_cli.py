"""`bridge bus dead-letters list|replay|drop`: the SQL outbox's dead letters from a shell.

A trigger whose handler keeps failing (a bad argument, a bug) moves the event to the dead
letters after `max_deliveries` attempts. Once the cause is fixed, the operator replays them
(each a fresh delivery to the same subscription) or drops them; until now that took Python.
The outbox is the database `--url` names, by default the sql journal's (where `[sql] outbox`
writes completion events). `bridge/cli.py` mounts `bus_app` as `bridge bus`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from bridge.config import load_settings

if TYPE_CHECKING:
    from bridge.bus.outbox import SqlOutbox

__all__ = ["bus_app"]

T = TypeVar("T")

bus_app = typer.Typer(
    name="bus", help="The event bus's SQL outbox: dead letters.", no_args_is_help=True
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
EventIds = Annotated[
    list[str] | None,
    typer.Argument(help="Event ids to take (default: every dead letter of the subscription)."),
]


def _with_outbox(url: str | None, body: Callable[[SqlOutbox], Awaitable[T]]) -> T:
    from bridge.bus.outbox import SqlOutbox

    async def run() -> T:
        outbox = SqlOutbox(url=url or load_settings().sql.url)
        try:
            return await body(outbox)
        finally:
            await outbox.close()

    return asyncio.run(run())


@dead_letters_app.command("list")
def list_dead_letters(
    subscription: Annotated[
        str | None, typer.Option("--subscription", "-s", help="Only this subscription's.")
    ] = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The dead letters as JSON.")] = False,
) -> None:
    """The dead letters, oldest first: subscription, event, attempts and the last error."""
    from bridge.cli import out

    letters = _with_outbox(url, lambda o: o.dead_letters(subscription))
    if as_json:
        rows = [
            {
                "subscription": d.subscription,
                "event": d.event.to_dict(),
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
            d.event.id,
            d.event.type,
            str(d.attempts),
            datetime.fromtimestamp(d.dead_at).strftime("%Y-%m-%d %H:%M:%S"),
            d.error or "",
        )
    out.print(table)


@dead_letters_app.command("replay")
def replay(subscription: str, event_ids: EventIds = None, url: UrlOption = None) -> None:
    """Deliver dead letters of SUBSCRIPTION again (fix what made them fail first)."""
    from bridge.cli import out

    n = _with_outbox(url, lambda o: o.replay_dead_letters(subscription, event_ids or None))
    out.print(f"replayed {n} dead letter{'s' if n != 1 else ''} of {subscription!r}", markup=False)


@dead_letters_app.command("drop")
def drop(subscription: str, event_ids: EventIds = None, url: UrlOption = None) -> None:
    """Delete dead letters of SUBSCRIPTION for good."""
    from bridge.cli import out

    n = _with_outbox(url, lambda o: o.drop_dead_letters(subscription, event_ids or None))
    out.print(f"dropped {n} dead letter{'s' if n != 1 else ''} of {subscription!r}", markup=False)
