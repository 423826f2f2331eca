"""`bridge migrate ...`: the migration router seen from a shell.

`status` shows, per workflow type and engine, how many runs are open and whether the engine
is Active, Draining or Drained; `report` (the shadow comparison, `_cli_report.py`) is
added here; `routes` lists the routing table and closes a route by hand. `bridge/cli.py`
mounts `migrate_app` as `bridge migrate`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bridge.config import load_settings
from bridge.migrate._cli_report import report

if TYPE_CHECKING:
    from bridge.migrate.router import Router

__all__ = ["migrate_app"]

migrate_app = typer.Typer(
    name="migrate",
    help="Move workflows between engines: routing rules in bridge.toml [migrate.WORKFLOW].",
    no_args_is_help=True,
)

_STATE_STYLE = {"Active": "green", "Draining": "yellow", "Drained": "dim"}


@migrate_app.command("status")
def status(
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh/--no-refresh",
            help="Ask the owning engines about open runs first (closes finished ones).",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="The rows as JSON.")] = False,
) -> None:
    """Per workflow type and engine: open runs and Active / Draining / Drained."""
    # Imported here: `bridge --help` should not load the router, and bridge.cli imports
    # this module (so importing bridge.cli at the top would be circular).
    from bridge.cli import out
    from bridge.migrate.router import Router

    async def body() -> list[dict[str, object]]:
        router = await Router.connect(load_settings())
        try:
            if refresh:
                await router.refresh()
            return [
                {**asdict(row), "state": row.state.value, "rule": _rule_text(router, row.workflow)}
                for row in router.status()
            ]
        finally:
            await router.close()

    rows = asyncio.run(body())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(
            "no migrating workflows: add a [migrate.WORKFLOW] table to bridge.toml "
            '(from = "old engine", to = "new engine", ramp = 0-100)',
            markup=False,
        )
        return
    table = Table()
    for column in ("workflow", "rule", "engine", "role", "open", "total", "state"):
        table.add_column(column, justify="right" if column in ("open", "total") else "left")
    for row in rows:
        table.add_row(
            str(row["workflow"]),
            str(row["rule"]),
            str(row["engine"]),
            str(row["role"]),
            str(row["open"]),
            str(row["total"]),
            str(row["state"]),
            style=_STATE_STYLE.get(str(row["state"])),
        )
    out.print(table)


def _rule_text(router: Router, workflow: str) -> str:
    rule = router.rule(workflow)
    if rule is None:
        return "(no rule)"
    if rule.shadow:
        return f"{rule.from_} shadowed on {rule.to}"
    return f"{rule.from_} -> {rule.to} {rule.ramp:g}%"


# After `status`, so `bridge migrate --help` lists the commands in the order they are used.
migrate_app.command("report")(report)


@migrate_app.command("routes")
def routes(
    only_open: Annotated[bool, typer.Option("--open", help="Only routes of open runs.")] = False,
    close: Annotated[
        str | None,
        typer.Option(
            "--close",
            metavar="ID",
            help="Close the route of run ID: finished runs get their status; a route whose "
            "engine does not have the run is removed; a run still open is refused.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="The routes as JSON.")] = False,
) -> None:
    """The routing table: which engine owns each run, newest first."""
    from bridge.cli import out
    from bridge.migrate.router import Router

    async def body() -> list[dict[str, object]] | str:
        router = await Router.connect(load_settings())
        try:
            if close is not None:
                return await router.close_route(close)
            return [
                asdict(r) | {"created_at": r.created_at}
                for r in router.table.list_routes(only_open=only_open, limit=limit)
            ]
        finally:
            await router.close()

    answer = asyncio.run(body())
    if isinstance(answer, str):
        out.print(answer, markup=False)
        return
    if as_json:
        for row in answer:
            row.pop("claimed_now", None)
        print(json.dumps(answer, indent=2))
        return
    if not answer:
        out.print("no routes" + (" of open runs" if only_open else ""), markup=False)
        return
    table = Table()
    for column in ("workflow id", "workflow", "engine", "status", "routed at"):
        table.add_column(column)
    for row in answer:
        when = datetime.fromtimestamp(float(row["created_at"]))  # type: ignore[arg-type]
        table.add_row(
            str(row["workflow_id"]),
            str(row["workflow"]),
            str(row["engine"]),
            str(row["status"]),
            when.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)
