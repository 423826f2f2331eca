"""`bridge compat`: the differential (and crash) checks of `bridge.testing`, outside pytest.

Registered on the `bridge` app by `bridge/cli.py`. It runs a workflow over a file of inputs on
a reference backend and on each candidate, and prints per input whether the trajectories are
the same or where they first part; `--crash` also kills a candidate's worker at chosen points
and checks the run resumes to the same result with each side effect once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.config import load_settings
from bridge.errors import SerializationError
from bridge.migrate.compare import show
from bridge.testing.crash import CrashReport, KillPoint, crash_and_resume
from bridge.testing.trajectory import Comparison, Input, assert_same_trajectory
from bridge.workflow import WorkflowDefinition

__all__ = ["compat"]


def _read_inputs(
    path: Path, signals: dict[str, Any], workflow: WorkflowDefinition[..., Any]
) -> list[Input]:
    """One input per non-blank line: a JSON array of arguments, an object
    `{"args": [...], "signals": {...}, "label": ...}`, or one JSON value as the argument.

    Arguments are decoded with the workflow's declared parameter types (a dict becomes the
    `Order` the parameter declares), as `bridge run` does with ARGS_JSON. An input whose
    arguments became objects is labelled with its JSON line, so reports show what was
    written rather than an object's repr."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise _bad(f"cannot read {path}: {exc}", "--inputs") from None
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = Input.of(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            raise _bad(f"{path}:{n}: not an input ({exc}): {line!r}", "--inputs") from None
        try:
            args = workflow.shape.decode_json_args(item.args, source=f"{path}:{n}")
        except (SerializationError, TypeError) as exc:
            raise _bad(str(exc), "--inputs") from None
        label = item.label
        if not label and any(type(a) is not type(j) for a, j in zip(args, item.args, strict=True)):
            label = show(list(item.args), 120)
        items.append(Input(args=args, signals={**signals, **item.signals}, label=label))
    if not items:
        raise _bad(f"{path} holds no inputs (one JSON value per line)", "--inputs")
    return items


def _bad(message: str, option: str) -> typer.BadParameter:
    """A usage error, printed by click with the option's name (exit code 2)."""
    return typer.BadParameter(message, param_hint=option)


def _parse_signals(values: list[str]) -> dict[str, Any]:
    out = {}
    for value in values:
        name, sep, payload = value.partition("=")
        if not sep or not name:
            raise _bad(f"expected NAME=JSON, got {value!r}", "--signal")
        try:
            out[name] = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise _bad(f"the payload of {name} is not JSON ({exc})", "--signal") from None
    return out


def _table(reference: str, candidate: str, comparisons: list[Comparison]) -> Table:
    table = Table(title=f"{reference} -> {candidate}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("input", overflow="fold", max_width=40)
    table.add_column(reference)
    table.add_column(candidate)
    table.add_column("trajectory", overflow="fold")
    for c in comparisons:
        table.add_row(
            str(c.position),
            c.input.describe(),
            c.reference.status,
            c.candidate.status,
            c.describe(),
            style=None if c.same else "red",
        )
    return table


def _crash_table(reports: list[tuple[str, CrashReport]]) -> Table:
    table = Table(title="crash and resume", title_justify="left")
    table.add_column("backend")
    table.add_column("kill")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("check", overflow="fold")
    for backend, r in reports:
        table.add_row(
            backend,
            r.kill_at.describe(),
            r.status,
            f"{r.seconds:.1f}",
            "ok: resumed to the crash-free result" if r.ok else "; ".join(r.problems),
            style=None if r.ok else "red",
        )
    return table


def compat(
    target: Annotated[str, typer.Argument(metavar="MODULE:WORKFLOW")],
    inputs: Annotated[Path, typer.Option("--inputs", "-i", help="JSON lines, one input per line.")],
    reference: Annotated[
        str, typer.Option("--from", help="The backend whose behaviour is the reference.")
    ] = "sql",
    candidates: Annotated[
        list[str] | None, typer.Option("--to", help="A backend to compare (repeatable).")
    ] = None,
    candidate: Annotated[
        str | None,
        typer.Option(
            "--candidate",
            metavar="MODULE:WORKFLOW",
            help="Run this code on the --to backends instead (a rewrite under test).",
        ),
    ] = None,
    signal: Annotated[
        list[str] | None,
        typer.Option("--signal", metavar="NAME=JSON", help="Answer every wait for NAME."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    crash: Annotated[
        bool, typer.Option("--crash", help="Also kill a --to worker and check the resume.")
    ] = False,
    crash_at: Annotated[
        list[str] | None,
        typer.Option(
            "--crash-at",
            metavar="POINT",
            help="after:STEP, during:STEP, effect:STEP or signal:NAME (default after:1); "
            "the first input is run once per point.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per run.")] = 60.0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 8,
) -> None:
    """Run MODULE:WORKFLOW over every input on --from and on each --to backend, and report
    per input "same trajectory" or the first step where they differ. Exit code 1 if any
    input (or crash check) differs. Engine settings come from bridge.toml / BRIDGE_* env."""
    from bridge.cli import _add_cwd_to_path, _load_workflow, out

    _add_cwd_to_path()
    if not candidates:
        raise _bad("name at least one backend to compare with", "--to")
    defn = _load_workflow(target)
    candidate_defn = _load_workflow(candidate) if candidate else None
    items = _read_inputs(inputs, _parse_signals(signal or []), defn)
    try:
        points = [KillPoint.parse(p) for p in (crash_at or ["after:1"])] if crash else []
    except ValueError as exc:
        raise _bad(str(exc), "--crash-at") from None
    settings = {name: load_settings({"backend": name}) for name in [reference, *candidates]}

    async def body() -> tuple[list[Comparison], list[tuple[str, CrashReport]]]:
        comparisons = await assert_same_trajectory(
            defn,
            items,
            backends=[reference, *candidates],
            settings=settings,
            candidate_workflow=candidate_defn,
            timeout=timeout,
            concurrency=concurrency,
            check=False,
        )
        reports = []
        for name in candidates:
            for point in points:
                report = await crash_and_resume(
                    settings[name],
                    candidate or target,
                    items[0].args,
                    kill_at=point,
                    signals=items[0].signals,
                    reference_settings=settings[reference],
                    timeout=timeout,
                    check=False,
                )
                reports.append((name, report))
        return comparisons, reports

    comparisons, reports = asyncio.run(body())
    by_candidate = {
        name: comparisons[n * len(items) : (n + 1) * len(items)]
        for n, name in enumerate(candidates)
    }
    ok = all(c.same for c in comparisons) and all(r.ok for _, r in reports)
    if as_json:
        print(
            json.dumps(
                {
                    "workflow": target,
                    "candidate_workflow": candidate,
                    "reference": reference,
                    "ok": ok,
                    "candidates": {
                        name: {
                            "same": sum(c.same for c in cs),
                            "inputs": len(cs),
                            "comparisons": [c.to_dict() for c in cs],
                        }
                        for name, cs in by_candidate.items()
                    },
                    "crash": [
                        {
                            "backend": name,
                            "kill_at": r.kill_at.describe(),
                            "status": r.status,
                            "ok": r.ok,
                            "problems": r.problems,
                        }
                        for name, r in reports
                    ],
                },
                indent=2,
                default=str,
            )
        )
    else:
        for name, cs in by_candidate.items():
            out.print(_table(reference, name, cs))
        if reports:
            out.print(_crash_table(reports))
        for name, cs in by_candidate.items():
            same = sum(c.same for c in cs)
            verdict = "same trajectory" if same == len(cs) else "DIFFERENT trajectories"
            first = next((c for c in cs if not c.same), None)
            line = f"{reference} -> {name}: {verdict} for {same} of {len(cs)} inputs"
            if first is not None:
                line += f"; first difference at input #{first.position}: {first.describe()}"
            out.print(line, style="green" if first is None else "red", markup=False, soft_wrap=True)
    if not ok:
        raise SystemExit(1)
