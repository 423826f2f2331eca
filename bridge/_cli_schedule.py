"""`bridge schedule ...`: create, list, describe, pause, resume, trigger, delete schedules.

A typer sub-app registered by `bridge/cli.py`. It borrows the main command's plumbing
(workflow loading, settings, the client, the console) through `_main()`, imported when a
command runs, because `bridge.cli` imports this module while it is being defined.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.backend import ScheduleDescription
from bridge.client import Client

__all__ = ["schedule_app"]

schedule_app = typer.Typer(
    name="schedule",
    help="Start workflows on a cron schedule: Temporal Schedules, or the embedded scheduler.",
    no_args_is_help=True,
)

BackendOption = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="Backend to use instead of the configured one."),
]
IdArgument = Annotated[str, typer.Argument(metavar="SCHEDULE_ID")]


def _main() -> ModuleType:
    import bridge.cli

    return bridge.cli


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def _call(backend: str | None, body: Any) -> Any:
    cli = _main()
    return cli._run(cli._settings(backend), body)


@schedule_app.command("create")
def create(
    target: Annotated[str, typer.Argument(metavar="MODULE:WORKFLOW")],
    args_json: Annotated[
        str | None,
        typer.Argument(
            metavar="[ARGS_JSON]",
            help="A JSON array of positional arguments, or one JSON value as the only argument.",
        ),
    ] = None,
    id: Annotated[str, typer.Option("--id", help="Schedule id (runs are ID-<fire time>).")] = "",
    cron: Annotated[
        str, typer.Option("--cron", help="5-field cron expression: '*/5 * * * *'.")
    ] = "",
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA zone the cron is read in (default UTC).")
    ] = "UTC",
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap",
            help="skip (default), buffer_one, buffer_all, cancel_other, terminate_other or "
            "allow_all.",
        ),
    ] = "skip",
    catchup_window: Annotated[
        float | None,
        typer.Option("--catchup-window", help="Seconds a missed fire may be late (default 1y)."),
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    backend: BackendOption = None,
) -> None:
    """Create a schedule that starts MODULE:WORKFLOW at every time of --cron."""
    cli = _main()
    if not id:
        raise cli.CliError("--id is required: a schedule is named by its id")
    if not cron:
        raise cli.CliError("--cron is required, e.g. --cron '*/5 * * * *'")
    defn = cli._load_workflow(target)
    args = cli._typed_args(defn, args_json)

    async def body(client: Client) -> ScheduleDescription:
        handle = await client.schedule(
            defn,
            *args,
            id=id,
            cron=cron,
            overlap=overlap,  # type: ignore[arg-type]  # checked by the client
            catchup_window=catchup_window,
            paused=paused,
            timezone=timezone,
        )
        return await handle.describe()

    desc = _call(backend, body)
    cli.out.print(
        f"created schedule {desc.id} ({desc.workflow}, cron {desc.cron!r}"
        f"{'' if desc.timezone == 'UTC' else ' in ' + desc.timezone}, next "
        f"{_when(desc.next_fire_at)} UTC)",
        markup=False,
    )


@schedule_app.command("list")
def list_(
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the schedules."""

    async def body(client: Client) -> list[ScheduleDescription]:
        return await client.list_schedules()

    found = _call(backend, body)
    if as_json:
        print(json.dumps([_as_dict(d) for d in found], indent=2, ensure_ascii=False))
        return
    table = Table()
    for column in ("ID", "WORKFLOW", "CRON", "OVERLAP", "STATE", "NEXT (UTC)", "FIRED"):
        table.add_column(column)
    for d in found:
        table.add_row(
            d.id,
            d.workflow,
            d.cron,
            d.overlap,
            "paused" if d.paused else "active",
            _when(d.next_fire_at),
            str(d.fired),
        )
    _main().out.print(table)


@schedule_app.command("describe")
def describe(id: IdArgument, backend: BackendOption = None) -> None:
    """Print one schedule as JSON: its spec, counters, running and recent runs."""

    async def body(client: Client) -> ScheduleDescription:
        return await client.describe_schedule(id)

    print(json.dumps(_as_dict(_call(backend, body)), indent=2, ensure_ascii=False))


@schedule_app.command("pause")
def pause(
    id: IdArgument,
    note: Annotated[str | None, typer.Option("--note", help="Why it is paused.")] = None,
    backend: BackendOption = None,
) -> None:
    """Stop firing until `bridge schedule resume`."""

    async def body(client: Client) -> None:
        await client.pause_schedule(id, note)

    _call(backend, body)
    _main().out.print(f"paused schedule {id}", markup=False)


@schedule_app.command("resume")
def resume(id: IdArgument, backend: BackendOption = None) -> None:
    """Fire again from now on (times passed while paused are not caught up)."""

    async def body(client: Client) -> None:
        await client.resume_schedule(id)

    _call(backend, body)
    _main().out.print(f"resumed schedule {id}", markup=False)


@schedule_app.command("trigger")
def trigger(id: IdArgument, backend: BackendOption = None) -> None:
    """Fire now, under the schedule's overlap policy."""

    async def body(client: Client) -> None:
        await client.trigger_schedule(id)

    _call(backend, body)
    _main().out.print(f"triggered schedule {id}", markup=False)


@schedule_app.command("delete")
def delete(id: IdArgument, backend: BackendOption = None) -> None:
    """Delete a schedule; the runs it started go on."""

    async def body(client: Client) -> None:
        await client.delete_schedule(id)

    _call(backend, body)
    _main().out.print(f"deleted schedule {id}", markup=False)


def _as_dict(d: ScheduleDescription) -> dict[str, Any]:
    return {
        "id": d.id,
        "workflow": d.workflow,
        "cron": d.cron,
        "timezone": d.timezone,
        "args": d.args,
        "overlap": d.overlap,
        "catchup_window": d.catchup_window,
        "paused": d.paused,
        "note": d.note,
        "backend": d.backend,
        "next_fire_at": None if d.next_fire_at is None else d.next_fire_at.isoformat(),
        "last_fire_at": None if d.last_fire_at is None else d.last_fire_at.isoformat(),
        "fired": d.fired,
        "skipped": d.skipped,
        "missed": d.missed,
        "buffered": d.buffered,
        "running": list(d.running),
        "recent": list(d.recent),
    }
