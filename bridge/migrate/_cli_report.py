"""`bridge migrate report`: how shadow runs compared with their primaries.

`bridge/migrate/_cli.py` adds it to the `migrate` command group. Reads the shadow store
(`bridge.migrate.shadow`), by default in the router's database.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bridge.config import Settings, load_settings
from bridge.encryption import keyring_from_settings

if TYPE_CHECKING:
    from bridge.migrate.shadow import ShadowOutcome

__all__ = ["ReportAnswer", "report", "report_answer"]

_STYLE = {"matched": "green", "mismatched": "red", "error": "red", "running": "yellow"}


@dataclass(frozen=True)
class ReportAnswer:
    """What `bridge migrate report` shows: the newest outcomes (`rows`, with their diffs),
    the outcome counts of every stored run matching the filters (`tally`) and of every
    stored run of the workflow (`stored`), and the store's URL."""

    rows: list[ShadowOutcome]
    tally: Counter[str]
    stored: Counter[str]
    url: str


def report_answer(
    settings: Settings,
    *,
    store: str | None = None,
    workflow: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> ReportAnswer:
    """The shadow comparisons as `bridge migrate report` reads them, from the store at
    `store` (default: `[router] url`), decrypted with the settings' keys. One function for
    the command and for `bridge ui`'s migrations page, so both show the same outcomes."""
    # Imported here: `bridge --help` should not load shadow mode.
    from bridge.migrate.shadow import ShadowStore, outcomes

    shadows = ShadowStore(
        store or settings.router.url, codec=keyring_from_settings(settings.encryption)
    )
    try:
        rows = outcomes(shadows, workflow=workflow, status=status, limit=limit)
        # The headline counts every stored run that matches the filters, not only this page.
        tally: Counter[str] = Counter()
        for by_outcome in shadows.counts(workflow=workflow, status=status).values():
            tally.update(by_outcome)
        stored: Counter[str] = Counter()
        for by_outcome in shadows.counts(workflow=workflow).values():
            stored.update(by_outcome)
    finally:
        shadows.close()
    return ReportAnswer(rows=rows, tally=tally, stored=stored, url=shadows.url)


def report(
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow type.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs with this outcome: matched, mismatched, ..."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.")] = 50,
    store: Annotated[
        str | None,
        typer.Option(help="The shadow store's database URL (default: `\\[router] url`)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The outcomes as JSON.")] = False,
) -> None:
    """Shadow runs: matched or mismatched with their primary, with a readable diff."""
    # Imported here: bridge.cli imports this module (so importing it at the top would be
    # circular).
    from bridge.cli import out

    answer = report_answer(
        load_settings(), store=store, workflow=workflow, status=status, limit=limit
    )
    rows, tally, stored = answer.rows, answer.tally, answer.stored
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows and (workflow or status):
        # Filtered to nothing: "0 mismatched" is the answer, with what else is stored.
        wanted = " ".join(filter(None, (status, "shadow runs", workflow and f"of {workflow}")))
        others = ", ".join(f"{n} {s}" for s, n in sorted(stored.items())) or "none at all"
        out.print(f"0 {wanted} (stored: {others})", markup=False)
        return
    if not rows:
        out.print(
            f"no shadow runs in {answer.url}: set shadow = true in a [migrate.WORKFLOW] "
            "table of bridge.toml, or call bridge.migrate.shadow.shadow()",
            markup=False,
        )
        return
    total = sum(tally.values())
    shown = "" if len(rows) == total else f"; the newest {len(rows)} below (--limit)"
    out.print(
        f"{total} shadow run(s): "
        + ", ".join(f"{n} {s}" for s, n in sorted(tally.items()))
        + shown,
        markup=False,
    )
    table = Table()
    for column in ("workflow", "run", "primary", "candidate", "outcome", "first diff", "finished"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.workflow,
            r.workflow_id,
            r.primary_engine,
            r.candidate_engine + (" (A/A)" if r.is_aa else ""),
            r.status,
            "" if r.first_step is None else f"step {r.first_step}",
            "" if r.finished_at is None else r.finished_at.strftime("%Y-%m-%d %H:%M:%S"),
            style=_STYLE.get(r.status),
        )
    out.print(table)
    for r in rows:
        if r.diff:
            heading = f"\n{r.status} {r.workflow} {r.workflow_id}:"
            out.print(heading, style=_STYLE.get(r.status), markup=False)
            out.print(r.diff, markup=False, highlight=False)
