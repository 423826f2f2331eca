"""`bridge migrate ...`: the migration router seen from a shell.

`status` shows, per workflow type and engine, how many runs are open and whether the engine
is Active, Draining or Drained; `report` (the shadow comparison, `_cli_report.py`) is
added here; `routes` lists the routing table and closes a route by hand; `set` edits one
`[migrate.WORKFLOW]` table of the configuration file, validated and written atomically,
so a router reloading the file never reads a half-written or invalid rule from it.
`bridge/cli.py` mounts `migrate_app` as `bridge migrate`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import re
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from bridge.config import Settings, load_settings
from bridge.encryption import keyring_from_settings
from bridge.errors import ConfigError
from bridge.migrate._cli_report import report
from bridge.migrate.rule import MigrationRule

if TYPE_CHECKING:
    from bridge.migrate.router import Router

__all__ = ["migrate_app", "status_answer"]

migrate_app = typer.Typer(
    name="migrate",
    help="Move workflows between engines by the routing rules in bridge.toml's "
    "\\[migrate.WORKFLOW] tables: status, shadow report, routes, rule changes.",
    no_args_is_help=True,
)

_STATE_STYLE = {"Active": "green", "Draining": "yellow", "Drained": "dim"}


#: How many open routes `status --refresh` asks the engines about, at most, by default.
REFRESH_LIMIT = 1000


@migrate_app.command("status")
def status(
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh/--no-refresh",
            help="Ask the owning engines about open routes first (closes finished ones, "
            "removes never-started ones); off by default: the counts come from the routing "
            "table, which completion watchers keep current.",
        ),
    ] = False,
    refresh_limit: Annotated[
        int,
        typer.Option(
            "--refresh-limit",
            min=1,
            metavar="N",
            help="With --refresh: ask about at most N open routes, those never checked or "
            "checked longest ago first, so repeated refreshes cover them all.",
        ),
    ] = REFRESH_LIMIT,
    outbox: Annotated[
        list[str] | None,
        typer.Option(
            "--outbox",
            metavar="URL",
            help="Also count the dead letters of this outbox database (repeatable); the "
            "outboxes of engines with \\[sql] outbox = true are counted anyway.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The status as JSON.")] = False,
) -> None:
    """Per workflow type and engine: open and finished runs, failed starts, shadows, state.

    Also the rule (ramp, paused) and the outboxes' dead letters. Reads the routing table
    and the shadow store only (fast at any size) unless --refresh.
    """
    # Imported here: `bridge --help` should not load the router, and bridge.cli imports
    # this module (so importing bridge.cli at the top would be circular).
    from bridge.cli import default_config_path, err, out
    from bridge.migrate.router import Router

    try:
        settings = load_settings()
    except ConfigError as exc:
        # The file a live router reloads is bad: those routers keep the rules they loaded
        # before (Router.reload), but this process has no rules to show, so say so and stop.
        err.print(
            f"warning: {exc}; routers that reload keep the rules they loaded before until "
            f"it is fixed (see `bridge config check {default_config_path()}`)",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )
        raise SystemExit(1) from None

    async def body() -> dict[str, Any]:
        router = await Router.connect(settings)
        try:
            return await status_answer(
                router,
                settings,
                refresh_limit=refresh_limit if refresh else None,
                outboxes=outbox or [],
            )
        finally:
            await router.close()

    answer = asyncio.run(body())
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    rows = answer["workflows"]
    if not rows:
        out.print(
            "no migrating workflows: add a [migrate.WORKFLOW] table to bridge.toml "
            '(from = "old engine", to = "new engine", ramp = 0-100)',
            markup=False,
        )
    else:
        out.print(_status_table(rows))
    for letter in answer["dead_letters"]:
        count = letter["count"]
        out.print(
            f"outbox {letter['outbox']}: {count} dead letter{'s' if count != 1 else ''} of "
            f"{letter['subscription']!r} (`bridge bus dead-letters list --url ...`)",
            style="red",
            markup=False,
            soft_wrap=True,
        )
    refreshed = answer["refreshed"]
    if refreshed is None:
        note = (
            "open counts as completion watchers left them; --refresh asks the engines about "
            f"up to {REFRESH_LIMIT} open routes"
        )
    else:
        note = (
            f"asked the engines about up to {refreshed['limit']} open routes: "
            f"{refreshed['closed_or_removed']} closed or removed"
        )
    out.print(note, style="dim", markup=False, soft_wrap=True)


async def status_answer(
    router: Router,
    settings: Settings,
    *,
    refresh_limit: int | None = None,
    outboxes: list[str] | None = None,
) -> dict[str, Any]:
    """What `bridge migrate status --json` prints: per workflow type and engine the counts,
    state, rule and shadow outcomes (`workflows`), the outboxes' `dead_letters`, and what a
    refresh did (`refreshed`, None without one). One function for the command and for
    `bridge ui`'s migrations page, so both always show the same numbers.

    `refresh_limit` first asks the engines about up to that many open routes (`--refresh`);
    `outboxes` are outbox URLs counted besides the engines' own."""
    refreshed: dict[str, int] | None = None
    if refresh_limit is not None:
        closed = await router.refresh(limit=refresh_limit)
        refreshed = {"limit": refresh_limit, "closed_or_removed": closed}
    rows = [
        {
            **asdict(row),
            "state": row.state.value,
            "rule": _rule_text(router, row.workflow),
            **_rule_fields(router, row.workflow),
        }
        for row in router.status(shadows=_shadow_counts(settings))
    ]
    letters = await _dead_letters(_outbox_urls(settings, outboxes or []), settings)
    return {"workflows": rows, "dead_letters": letters, "refreshed": refreshed}


def _status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    numbers = ("open", "finished", "failed starts")
    columns = ("workflow", "rule", "engine", "role", *numbers, "shadow", "state")
    for column in columns:
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        shadow = row["shadow"]
        table.add_row(
            str(row["workflow"]),
            str(row["rule"]),
            str(row["engine"]),
            str(row["role"]),
            str(row["open"]),
            str(row["finished"]),
            str(row["failed_starts"]),
            ", ".join(f"{n} {outcome}" for outcome, n in sorted(shadow.items())),
            str(row["state"]),
            style=_STATE_STYLE.get(str(row["state"])),
        )
    return table


def _rule_fields(router: Router, workflow: str) -> dict[str, Any]:
    """The rule's ramp, paused and shadow for the JSON rows (None without a rule)."""
    rule = router.rule(workflow)
    if rule is None:
        return {"ramp": None, "paused": None, "shadowed": None}
    return {"ramp": rule.ramp, "paused": rule.paused, "shadowed": rule.shadow}


def _shadow_counts(settings: Settings) -> dict[tuple[str, str], dict[str, int]]:
    """The shadow store's outcome counts, `running` shown as `pending` (not compared yet)."""
    from bridge.migrate._shadow_store import RUNNING, ShadowStore

    store = ShadowStore(settings.router.url, codec=keyring_from_settings(settings.encryption))
    try:
        counts = store.counts()
    finally:
        store.close()
    return {
        pair: {("pending" if outcome == RUNNING else outcome): n for outcome, n in by.items()}
        for pair, by in counts.items()
    }


def _outbox_urls(settings: Settings, extra: list[str]) -> list[str]:
    """The outboxes to count dead letters in: every engine's whose `[sql] outbox` is on
    (the default engine's and those the rules name), then `extra`, each once."""
    names = {settings.backend} | {
        name for rule in settings.migrate.values() for name in (rule.from_, rule.to)
    }
    urls: list[str] = []
    for name in sorted(names):
        engine = settings.engine(name)
        if engine.backend == "sql" and engine.sql.outbox and engine.sql.url not in urls:
            urls.append(engine.sql.url)
    return urls + [url for url in extra if url not in urls]


async def _dead_letters(urls: list[str], settings: Settings) -> list[dict[str, Any]]:
    """Per outbox and subscription, how many events were given up on."""
    from bridge.bus.outbox import SqlOutbox

    found: list[dict[str, Any]] = []
    for url in urls:
        box = SqlOutbox(url=url, codec=keyring_from_settings(settings.encryption))
        try:
            letters = await box.dead_letters()
        finally:
            await box.close()
        tally = Counter(d.subscription for d in letters)
        found += [
            {"outbox": url, "subscription": sub, "count": n} for sub, n in sorted(tally.items())
        ]
    return found


def _rule_text(router: Router, workflow: str) -> str:
    rule = router.rule(workflow)
    if rule is None:
        return "(no rule)"
    paused = " (paused)" if rule.paused else ""
    if rule.shadow:
        return f"{rule.from_} shadowed on {rule.to}{paused}"
    return f"{rule.from_} -> {rule.to} {rule.ramp:g}%{paused}"


# After `status`, so `bridge migrate --help` lists the commands in the order they are used.
migrate_app.command("report")(report)


@migrate_app.command("wait-drained")
def wait_drained(
    workflow: Annotated[str, typer.Argument(help="The workflow type.")],
    engine: Annotated[str, typer.Argument(help="The engine that should have no open run.")],
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="Give up after S seconds (exit 1).")
    ] = 600.0,
) -> None:
    """Wait until ENGINE has no open run of WORKFLOW, asking the engines as it goes.

    The step before retiring an engine (or after a rollback): exits 0 once the engine is
    Drained for the workflow, 1 with the open count when the timeout passes first, so a
    runbook or a deploy script can stop on it.
    """
    from bridge.cli import err, out
    from bridge.migrate.router import EngineState, Router

    settings = load_settings()

    async def body() -> tuple[bool, int]:
        router = await Router.connect(settings)
        try:
            deadline = time.monotonic() + timeout
            while True:
                await router.refresh(limit=None)
                row = next(
                    (r for r in router.status() if (r.workflow, r.engine) == (workflow, engine)),
                    None,
                )
                if row is None or row.state is EngineState.DRAINED:
                    return True, 0
                if time.monotonic() >= deadline:
                    return False, row.open
                await asyncio.sleep(1.0)
        finally:
            await router.close()

    drained, still_open = asyncio.run(body())
    if not drained:
        err.print(
            f"{engine} still has {still_open} open run(s) of {workflow} after {timeout:g} s, "
            f"or still gets new ones (check the rule with `bridge migrate status`)",
            markup=False,
        )
        raise SystemExit(1)
    out.print(f"{engine} is drained for {workflow}: no open run, no new ones", markup=False)


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


# -- bridge migrate set ---------------------------------------------------------------------
class OnOff(enum.StrEnum):
    ON = "on"
    OFF = "off"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = re.compile(r"^\s*\[(?!\[)(?P<name>[^\]]*)\]\s*(#.*)?$")
#: The order keys are written in when a table is created.
_KEY_ORDER = ("from", "to", "ramp", "shadow", "sample", "paused")


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    # JSON's string escapes are TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def _header_names(inner: str) -> list[str] | None:
    """The dotted key of a `[a."b.c"]` header as names, or None when it cannot be read."""
    try:
        data = tomllib.loads(f"[{inner}]\n")
    except tomllib.TOMLDecodeError:
        return None
    names = []
    while isinstance(data, dict) and len(data) == 1:
        ((name, data),) = data.items()
        names.append(name)
    return names


def edit_rule_text(text: str, workflow: str, changes: dict[str, Any]) -> str:
    """`text` (a bridge.toml) with `changes` set in its `[migrate.WORKFLOW]` table, every
    other line kept as it was (comments included); the table is appended when absent.

    A rule written another way (an inline table, dotted keys under `[migrate]`) is refused:
    rewriting it would mean rewriting the user's layout, not one table."""
    lines = text.splitlines(keepends=True)
    start = end = None
    for n, line in enumerate(lines):
        match = _HEADER.match(line)
        if match is None:
            continue
        if start is not None:
            end = n
            break
        if _header_names(match["name"]) == ["migrate", workflow]:
            start = n
    if start is None:
        existing = tomllib.loads(text).get("migrate", {})
        if workflow in existing:
            raise ConfigError(
                f"the rule of {workflow!r} is not written as a [migrate.{_toml_key(workflow)}] "
                "table (an inline table or dotted keys); write it as a table, then run "
                "`bridge migrate set` again"
            )
        if text and not text.endswith("\n"):
            lines.append("\n")
        if text.strip():
            lines.append("\n")
        lines.append(f"[migrate.{_toml_key(workflow)}]\n")
        for key in _KEY_ORDER:
            if key in changes:
                lines.append(f"{key} = {_toml_value(changes[key])}\n")
        return "".join(lines)
    end = len(lines) if end is None else end
    pending = dict(changes)
    for n in range(start + 1, end):
        key_match = re.match(r"^\s*(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\")\s*=", lines[n])
        if key_match is None:
            continue
        key = key_match["key"].strip('"')
        if key in pending:
            newline = "\n" if lines[n].endswith("\n") else ""
            lines[n] = f"{key} = {_toml_value(pending.pop(key))}{newline}"
    if pending:
        # After the table's last non-blank line, so its blank separator stays below.
        last = end - 1
        while last > start and not lines[last].strip():
            last -= 1
        if not lines[last].endswith("\n"):
            lines[last] += "\n"
        added = [f"{key} = {_toml_value(value)}\n" for key, value in pending.items()]
        lines[last + 1 : last + 1] = added
    return "".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: a router reloading it reads the old file
    or the new one, never a half-written one. Keeps the file's permissions."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@migrate_app.command("set")
def set_rule(
    workflow: Annotated[str, typer.Argument(help="The workflow type whose rule to change.")],
    ramp: Annotated[
        float | None, typer.Option("--ramp", help="Percentage of new runs on `to` (0-100).")
    ] = None,
    shadow: Annotated[
        OnOff | None, typer.Option("--shadow", help="Shadow `from` on `to` (on/off).")
    ] = None,
    pause: Annotated[
        bool | None,
        typer.Option(
            "--pause/--resume",
            help="--pause: every new run starts on `from` (the ramp is kept); --resume: the "
            "ramp applies again.",
        ),
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="The old engine (needed for a new rule).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="The new engine (needed for a new rule).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The file to edit (default: $BRIDGE_CONFIG, bridge.toml)."),
    ] = None,
) -> None:
    """Change the \\[migrate.WORKFLOW] rule of a workflow in the configuration file.

    Validated first (the rule and the whole resulting file), then written atomically with
    the rest of the file kept. Routers pick it up on their next reload.
    """
    from bridge.cli import check_config_file, default_config_path, out

    path = config or default_config_path()
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("from", from_),
            ("to", to),
            ("ramp", ramp),
            ("shadow", None if shadow is None else shadow is OnOff.ON),
            ("paused", pause),
        )
        if value is not None
    }
    if not changes:
        raise ConfigError(
            f"bridge migrate set {workflow}: nothing to change; pass --ramp N, --shadow on|off, "
            "--pause or --resume (and --from/--to for a new rule)"
        )
    try:
        text = path.read_text() if path.exists() else ""
        current = tomllib.loads(text).get("migrate", {}).get(workflow, {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix it, then run this again") from None
    try:
        rule = MigrationRule.model_validate({**current, **changes})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'rule'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"[migrate.{workflow}] in {path} not changed: {problems}"
            + ("" if current else " (a new rule needs --from and --to)")
        ) from None
    new_text = edit_rule_text(text, workflow, changes)
    written = tomllib.loads(new_text).get("migrate", {}).get(workflow)
    if written is None or MigrationRule.model_validate(written) != rule:
        raise ConfigError(
            f"[migrate.{workflow}] in {path} not changed: the edited file would not hold the "
            "rule asked for; edit the table by hand"
        )
    # Problems the file already had are not this edit's to refuse (they are reported by
    # `bridge config check`); a problem this edit brings is.
    before = check_config_file(path) if path.exists() else []
    after = check_config_file(path, text=new_text)
    new_problems = [p for p in after if p not in before]
    if new_problems:
        raise ConfigError(f"{path} not changed: with this rule {'; '.join(new_problems)}")
    write_atomically(path, new_text)
    out.print(f"{path}: [migrate.{_toml_key(workflow)}] {_describe_rule(rule)}", markup=False)


def _describe_rule(rule: MigrationRule) -> str:
    text = (
        f"{rule.from_} shadowed on {rule.to}"
        if rule.shadow
        else f"{rule.from_} -> {rule.to} {rule.ramp:g}%"
    )
    return text + (" (paused)" if rule.paused else "")
