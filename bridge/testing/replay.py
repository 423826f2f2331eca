"""Replay artefacts: record a run's history to JSON; check later code can still replay it.

A CI job keeps a few recorded histories next to the code (as Temporal's samples keep theirs)
and runs `assert_replays(file, workflow)` on every change: a change that is not replay-safe
(another activity at a step, other arguments, a step removed or added before the end) fails
the job with the step where code and history part, before the change reaches runs in flight.

The artefact holds the neutral history (every backend exports one) and, when the engine has
a format of its own (Temporal), its native history too. The neutral history is checked by
re-driving the workflow with `bridge.journal.context.JournaledContext` over the recorded steps, the
same replay the sql and langgraph backends do, with every live step fenced off: replay runs
no activity. The native history is checked by the engine's own replayer (`Backend.replay`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import codec
from bridge.activity import lookup_activity
from bridge.backend import Status
from bridge.client import Client
from bridge.config import Settings, load_settings
from bridge.errors import ConfigError, NonDeterminismError, NotRegisteredError
from bridge.history import EventType, HistoryEvent
from bridge.journal.context import (
    COMPLETED,
    FAILED,
    TIMED_OUT,
    JournaledContext,
    StepRecord,
    drive,
)
from bridge.plugins import registry
from bridge.testing.trajectory import Step, normalize
from bridge.workflow import WorkflowDefinition, as_workflow

__all__ = [
    "FORMAT",
    "Artefact",
    "ReplayMismatch",
    "ReplayReport",
    "assert_replays",
    "assert_replays_sync",
    "load",
    "record",
    "replay_neutral",
]

FORMAT = "bridge-replay/1"
E = EventType


@dataclass(frozen=True)
class Artefact:
    """A recorded run: where it ran, its neutral history, and the engine's own, if any."""

    backend: str
    workflow: str
    workflow_id: str
    history: list[HistoryEvent]
    native: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "backend": self.backend,
                "workflow": self.workflow,
                "workflow_id": self.workflow_id,
                "history": [e.to_dict() for e in self.history],
                "native": json.loads(self.native) if self.native is not None else None,
            },
            indent=2,
            ensure_ascii=False,
        )


async def record(client: Client, workflow_id: str, path: str | Path) -> Artefact:
    """Write run `workflow_id`'s histories (neutral, and native when the engine has one)
    to `path` as a replay artefact; the artefact."""
    events = await client.history(workflow_id)
    try:
        native: str | None = await client.backend.export_history(workflow_id)
    except ConfigError:
        native = None  # an engine with no history format of its own: the neutral one is it
    started = next((e for e in events if e.type is E.WORKFLOW_STARTED), None)
    artefact = Artefact(
        backend=client.backend_name,
        workflow=(started.name if started else None) or "",
        workflow_id=workflow_id,
        history=events,
        native=native,
    )
    Path(path).write_text(artefact.to_json())
    return artefact


def load(path: str | Path) -> Artefact:
    """Read an artefact written by `record` (or a plain neutral history: `bridge history
    ID --json`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the replay artefact {path}: {exc}") from None
    if isinstance(data, list):
        events = [HistoryEvent.from_dict(d) for d in data]
        name = next((e.name for e in events if e.type is E.WORKFLOW_STARTED), None) or ""
        return Artefact(backend="", workflow=name, workflow_id=Path(path).stem, history=events)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(
            f"{path} is not a replay artefact (expected format {FORMAT!r}); record one with "
            f"bridge.testing.replay.record(client, workflow_id, path)"
        )
    native = data.get("native")
    return Artefact(
        backend=data["backend"],
        workflow=data["workflow"],
        workflow_id=data["workflow_id"],
        history=[HistoryEvent.from_dict(d) for d in data["history"]],
        native=json.dumps(native) if native is not None else None,
    )


# -- failures -------------------------------------------------------------------------------
class ReplayMismatch(AssertionError):
    """Current code cannot replay a recorded history: names the step and both sides, and
    shows the recorded steps around it."""

    def __init__(self, source: str, reason: str, recorded: list[Step], at: int | None) -> None:
        self.source = source
        self.reason = reason
        self.step = at
        lines = [f"{source} does not replay against the current code:", f"  {reason}"]
        if recorded:
            lines.append("  recorded steps:")
            for s in recorded:
                mark = ">" if at is not None and s.index == at else " "
                lines.append(f"   {mark} {_step_line(s)}")
        super().__init__("\n".join(lines))


def _step_line(s: Step) -> str:
    where = "end" if s.index is None else f"{s.index:>3}"
    outcome = ""
    if s.error is not None:
        outcome = f" !! {s.error.get('error_type')}: {s.error.get('message')}"
    elif s.result is not None:
        outcome = " -> " + _short(s.result)
    args = f" {_short(s.args)}" if s.args is not None else ""
    return f"{where} {s.kind} {s.name!r}{args}{outcome}".replace(" ''", "")


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ReplayReport:
    """A successful check: how many recorded steps the code replayed, and how many native
    events the engine's replayer accepted (None without a native history)."""

    steps: int
    native_events: int | None


# -- neutral replay -------------------------------------------------------------------------
class _ReadOnlyJournal:
    """The recorded journal: nothing is written, and the fence is always closed, so the
    replaying context starts no activity (a step past the recording ends the replay)."""

    interceptors = ()  # no activity attempt is ever made

    async def write(self, *records: StepRecord) -> None:
        return None

    def lease_ok(self) -> bool:
        return False

    async def take_signal(self, record: StepRecord) -> tuple[bool, Any]:
        return False, None


class _ReplayContext(JournaledContext):
    """Notes what the code asked for at each index, for the report."""

    asked: dict[int, str]

    @property
    def taken(self) -> int:
        """How many journal indices the code consumed (patch markers included)."""
        return self._next

    def _recorded(
        self, idx: int, kind: str, name: str, digest: str | None, args: Any
    ) -> StepRecord | None:
        self.asked[idx] = f"{kind} {name!r}" + (f" with arguments {_short(args)}" if args else "")
        return super()._recorded(idx, kind, name, digest, args)


def _non_retryable(name: str, attempts: int) -> bool:
    """A failed step's ActivityError flag, which the neutral history does not keep: it gave
    up before its policy's attempts ran out, or so the current definition says."""
    try:
        return not lookup_activity(name).retry.exhausted(attempts)
    except NotRegisteredError:
        return False


def _steps_of(history: list[HistoryEvent], workflow_id: str) -> list[StepRecord]:
    """The settled journal rows a neutral history describes (steps in flight left out)."""
    by_step: dict[int, list[HistoryEvent]] = {}
    for e in history:
        if e.step is not None:
            by_step.setdefault(e.step, []).append(e)
    out = []
    for idx in sorted(by_step):
        events = by_step[idx]
        first, last = events[0], events[-1]
        base = {
            "workflow_id": workflow_id,
            "idx": idx,
            "started_at": first.time.timestamp(),
            "finished_at": last.time.timestamp(),
        }
        kinds = {e.type for e in events}
        if E.PATCH_MARKER in kinds:
            out.append(StepRecord(kind="patch", name=last.name or "", status=COMPLETED, **base))
        elif E.TIMER_FIRED in kinds:
            out.append(
                StepRecord(kind="sleep", name="sleep", status=COMPLETED, args=first.args, **base)
            )
        elif E.SIGNAL_RECEIVED in kinds or E.SIGNAL_TIMED_OUT in kinds:
            received = E.SIGNAL_RECEIVED in kinds
            out.append(
                StepRecord(
                    kind="signal",
                    name=last.name or "",
                    status=COMPLETED if received else TIMED_OUT,
                    args=first.args,
                    output=last.result if received else None,
                    **base,
                )
            )
        elif kinds & {E.STEP_COMPLETED, E.COMPENSATION_COMPLETED}:
            kind = "compensation" if E.COMPENSATION_COMPLETED in kinds else "activity"
            out.append(
                StepRecord(
                    kind=kind,
                    name=last.name or "",
                    status=COMPLETED,
                    digest=codec.digest(last.args),
                    args=last.args,
                    output=last.result,
                    attempt=last.attempt or 1,
                    **base,
                )
            )
        elif (
            last.type in (E.STEP_FAILED, E.COMPENSATION_FAILED)
            and not last.details.get("will_retry")
            and last.error is not None
        ):
            kind = "compensation" if last.type is E.COMPENSATION_FAILED else "activity"
            attempts = last.attempt or 1
            error = {
                "activity": last.name or "",
                "step": idx,
                "error_type": last.error.get("error_type", "Error"),
                "message": last.error.get("message", ""),
                "attempts": attempts,
                "non_retryable": _non_retryable(last.name or "", attempts),
            }
            out.append(
                StepRecord(
                    kind=kind,
                    name=last.name or "",
                    status=FAILED,
                    digest=codec.digest(last.args),
                    args=last.args,
                    error=error,
                    attempt=attempts,
                    **base,
                )
            )
    return out


_ENDS = {
    E.WORKFLOW_COMPLETED: Status.COMPLETED,
    E.WORKFLOW_FAILED: Status.FAILED,
    E.WORKFLOW_CANCELLED: Status.CANCELLED,
}


async def replay_neutral(
    history: list[HistoryEvent], workflow: WorkflowDefinition[..., Any], *, source: str = "history"
) -> int:
    """Re-drive `workflow` over the recorded steps; the number of steps replayed, or
    ReplayMismatch. A recording of a finished run must be replayed to the same end."""
    defn = as_workflow(workflow)
    started = next((e for e in history if e.type is E.WORKFLOW_STARTED), None)
    if started is None:
        raise ConfigError(f"{source} has no workflow_started event; it is not a run's history")
    end = next((e for e in reversed(history) if e.type in _ENDS), None)
    workflow_id = source
    records = _steps_of(history, workflow_id)
    recorded = normalize(history)
    ctx = _ReplayContext(
        workflow_id=workflow_id,
        journal=_ReadOnlyJournal(),
        steps=records,
        started_at=started.time.timestamp(),
        attempt=1,
    )
    ctx.asked = {}

    def fail(reason: str, at: int | None) -> ReplayMismatch:
        return ReplayMismatch(source, reason, recorded, at)

    try:
        outcome = await drive(defn, ctx, started.args or {})
    except asyncio.CancelledError:
        # The fence stopped a live step: the code needs a step the recording does not have.
        idx = max(ctx.asked) if ctx.asked else len(records)
        if end is None:
            return len(records)  # a recording of a run in flight ends here; that is fine
        raise fail(
            f"at step {idx} the code now asks for {ctx.asked.get(idx, 'a step')}, which the "
            f"recorded run never ran (it ended {_ENDS[end.type].value} after "
            f"{len(records)} steps)",
            idx,
        ) from None
    if outcome.blocked:
        message = str((outcome.error or {}).get("message", ""))
        found = re.search(r"at step (\d+):", message)
        raise fail(message, int(found.group(1)) if found else None)
    taken = ctx.taken
    left = [r for r in records if r.idx >= taken]
    if left:
        raise fail(
            f"the recorded run has step {left[0].idx} ({left[0].kind} {left[0].name!r}) that the "
            f"code no longer reaches: it now ends {outcome.status.value} after {taken} steps",
            left[0].idx,
        )
    if outcome.status is Status.WAITING:
        if end is None:
            return len(records)
        raise fail(
            f"the code now waits ({outcome.waiting_for or 'a timer'}) at step {taken - 1}, "
            f"where the recorded run went on and ended {_ENDS[end.type].value}",
            taken - 1,
        )
    # Same steps, same end of the journal: replay-safe. A different result from the same
    # steps is a change of behaviour, not of replay (Temporal's replayer does not compare
    # results either); the differential check (`trajectory`) is the tool for that.
    return len(records)


# -- the check ------------------------------------------------------------------------------
async def assert_replays(
    history_file: str | Path,
    workflow: WorkflowDefinition[..., Any],
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    neutral: bool = True,
    native: bool = True,
) -> ReplayReport:
    """Check that the current code of `workflow` replays a recorded artefact: the neutral
    history by re-driving it, and the native history (if recorded) with the engine's own
    replayer, built from `settings` (default: the configuration, with the artefact's
    backend). `neutral`/`native` turn either check off. Raises ReplayMismatch with the step
    where code and history part."""
    artefact = load(history_file)
    source = str(history_file)
    steps = await replay_neutral(artefact.history, workflow, source=source) if neutral else 0
    native_events = None
    if native and artefact.native is not None:
        chosen = (
            settings
            if isinstance(settings, Settings)
            else load_settings({**(settings or {}), "backend": artefact.backend})
        )
        backend = registry().create(artefact.backend, chosen)
        try:
            native_events = await backend.replay(artefact.native, as_workflow(workflow))
        except NonDeterminismError as exc:
            raise ReplayMismatch(
                f"{source} (the {artefact.backend} history)",
                str(exc),
                normalize(artefact.history),
                exc.step,
            ) from None
        finally:
            await backend.close()
    return ReplayReport(steps=steps, native_events=native_events)


def assert_replays_sync(
    history_file: str | Path,
    workflow: WorkflowDefinition[..., Any],
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    neutral: bool = True,
    native: bool = True,
) -> ReplayReport:
    """`assert_replays` for synchronous callers."""
    return asyncio.run(
        assert_replays(history_file, workflow, settings=settings, neutral=neutral, native=native)
    )
