"""The one answer to "did two runs behave alike?", for every engine pair.

Shadow mode (`bridge.migrate.shadow`, `bridge migrate report`) and the differential harness
(`bridge.testing.trajectory`, `bridge compat`) both read a run from its neutral history
(`bridge.history`) with `read_run`, and compare two runs with `differences`, so a verdict
never differs between the two tools.

A run's *trajectory* is what it did, with what an engine is free to choose left out
(clocks, durations, how many transient failures a retry absorbed, the order in which
gathered branches finished): its settled steps by journal index, with arguments, result or
error, then how it ended. Values are JSON data throughout, compared as JSON (`same`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge import codec
from bridge.history import EventType as E
from bridge.history import HistoryEvent

__all__ = [
    "Compare",
    "Difference",
    "RunView",
    "Step",
    "diff_values",
    "differences",
    "first_difference",
    "read_run",
    "same",
    "show",
    "strip",
]

# The event that settles each kind of journaled step, and the kind it stands for.
_SETTLED: dict[E, str] = {
    E.STEP_COMPLETED: "activity",
    E.STEP_FAILED: "activity",
    E.COMPENSATION_COMPLETED: "compensation",
    E.COMPENSATION_FAILED: "compensation",
    E.TIMER_FIRED: "sleep",
    E.SIGNAL_RECEIVED: "signal",
    E.SIGNAL_TIMED_OUT: "signal",
    E.PATCH_MARKER: "patch",
}
_OPENED = {E.STEP_SCHEDULED, E.COMPENSATION_SCHEDULED, E.TIMER_STARTED, E.SIGNAL_WAITING}
_FAILED = {E.STEP_FAILED, E.COMPENSATION_FAILED}
_ENDED = {
    E.WORKFLOW_COMPLETED: "completed",
    E.WORKFLOW_FAILED: "failed",
    E.WORKFLOW_CANCELLED: "cancelled",
}

#: Most lines `diff_values` shows for one value; the rest is counted, not printed.
MAX_LINES = 8


@dataclass(frozen=True)
class Step:
    """One settled step of a trajectory, or its last entry: how the run ended.

    `index` is the journal index (the number in idempotency keys and `bridge history`);
    the end of the run has index None and kind "completed", "failed", "cancelled" (or
    "blocked", a run that waits for a code fix). `error` keeps only the error's type name and
    message. `failures` lists every failed attempt, the final one last: shadow mode replays
    them, but how many transient failures a retry absorbed is timing, not behaviour, so
    equality and `differences` leave it out.
    """

    index: int | None
    kind: str
    name: str
    args: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    failures: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def describe(self) -> str:
        if self.index is None:
            return f"the run's end ({self.kind})"
        return f"step {self.index} ({self.kind} {self.name!r})"

    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failures": list(self.failures)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        values = dict(data)
        if "idx" in values:  # written by release 0.1 (`StepView`), which also kept a status
            values["index"] = values.pop("idx")
            values.pop("status", None)
        return cls(**{**values, "failures": tuple(values.get("failures") or ())})


@dataclass(frozen=True)
class RunView:
    """A run read from its history: input, settled steps by index, the signals it took (in
    step order) and its outcome; `status` is "open" until the history shows an end."""

    workflow: str
    input: Any
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    steps: dict[int, Step] = field(default_factory=dict)
    signals: tuple[tuple[str, Any], ...] = ()

    def trajectory(self) -> list[Step]:
        """The settled steps in journal order, then the end (none while the run is open)."""
        out = [self.steps[i] for i in sorted(self.steps)]
        if self.status != "open":
            out.append(Step(None, self.status, "", result=self.result, error=self.error))
        return out


def read_run(events: Iterable[HistoryEvent]) -> RunView:
    """The run recorded by `events` (any backend's neutral history, in any event order).

    A step still in flight (no settling event yet) is left out; a retried step appears once,
    with its final outcome and its failed attempts.
    """
    workflow, data, status, result, error = "", None, "open", None, None
    opened: dict[int, Any] = {}  # step index -> the arguments its opening event carried
    failures: dict[int, list[dict[str, Any]]] = {}
    steps: dict[int, Step] = {}
    signals: dict[int, tuple[str, Any]] = {}
    for e in events:
        if e.type is E.WORKFLOW_STARTED:
            workflow, data = e.name or "", e.args
        elif e.type in _ENDED:
            status, result, error = _ENDED[e.type], e.result, _error(e.error)
        elif e.step is None:
            continue
        elif e.type in _OPENED:
            opened.setdefault(e.step, e.args)
        elif e.type in _SETTLED:
            err = _error(e.error)
            if e.type in _FAILED:
                err = err or {"error_type": "Error", "message": ""}
                failures.setdefault(e.step, []).append(err)
                if e.details.get("will_retry"):
                    continue
            kind = _SETTLED[e.type]
            args = e.args if e.args is not None else opened.get(e.step)
            if kind == "sleep":
                args = _timer_args(args)
            value = None if e.type is E.SIGNAL_TIMED_OUT else e.result
            if e.type is E.SIGNAL_RECEIVED:
                signals[e.step] = (e.name or "", e.result)
            steps[e.step] = Step(
                e.step, kind, e.name or "", args, value, err, tuple(failures.get(e.step, ()))
            )
    taken = tuple(signals[i] for i in sorted(signals))
    return RunView(workflow, data, status, result, error, steps, taken)


def _error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"error_type": error.get("error_type"), "message": error.get("message")}


def _timer_args(args: Any) -> Any:
    # Temporal cannot start a zero-length timer (the backend asks for 1 ms) and stores a
    # duration to the nanosecond: centiseconds are what a workflow author means.
    if isinstance(args, dict) and isinstance(args.get("seconds"), int | float):
        return {**args, "seconds": round(float(args["seconds"]), 2)}
    return args


# -- values ---------------------------------------------------------------------------------
def strip(value: Any, paths: Sequence[str]) -> Any:
    """`value` without the parts named by `paths`: dotted keys (or list indices), where `*`
    matches any key or index. `"created_at"` drops that key of a dict value;
    `"lines.*.ts"` drops `ts` of every item of `lines`."""
    for path in paths:
        value = _drop(value, path.split("."))
    return value


def _drop(value: Any, parts: list[str]) -> Any:
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [k for k in value if k == head]
        out = dict(value)
        for k in keys:
            if rest:
                out[k] = _drop(value[k], rest)
            else:
                del out[k]
        return out
    if isinstance(value, list):
        indices = range(len(value)) if head == "*" else _index(head, len(value))
        if not rest:
            return [v for i, v in enumerate(value) if i not in indices]
        return [_drop(v, rest) if i in indices else v for i, v in enumerate(value)]
    return value


def _index(part: str, length: int) -> range:
    if part.isdigit() and int(part) < length:
        return range(int(part), int(part) + 1)
    return range(0)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: dict key order does not matter, and numbers compare by value
    (1 and 1.0 are one JSON number, which two engines may write either way), but a boolean
    is never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def diff_values(
    reference: Any,
    candidate: Any,
    *,
    limit: int = MAX_LINES,
    labels: tuple[str, str] = ("primary", "candidate"),
) -> list[str]:
    """Readable lines, one per differing leaf: `path: reference value != candidate value`."""
    lines: list[str] = []
    _walk(reference, candidate, "", lines, labels)
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more difference(s)"]
    return lines


def _walk(a: Any, b: Any, path: str, out: list[str], labels: tuple[str, str]) -> None:
    ra, ca = labels
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{sub}: {_short(a[key])} ({ra}) != missing ({ca})")
            elif key not in a:
                out.append(f"{sub}: missing ({ra}) != {_short(b[key])} ({ca})")
            else:
                _walk(a[key], b[key], sub, out, labels)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]" if path else f"[{i}]", out, labels)
        return
    if not same(a, b):
        out.append(f"{path or '(value)'}: {_short(a)} ({ra}) != {_short(b)} ({ca})")


def _short(value: Any, limit: int = 120) -> str:
    text = codec.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- comparing two runs ---------------------------------------------------------------------
#: A workflow's own output comparison: (reference output, candidate output) as JSON data,
#: each after `ignore`; True (or None) when they match, False or an explanation when not.
Compare = Callable[[Any, Any], bool | str | None]

#: The fields of a step compared, in the order a difference is looked for.
FIELDS = ("kind", "name", "args", "error", "result")


@dataclass(frozen=True)
class Difference:
    """Where two trajectories part: the position, the field, and each side's value.

    `field` is a step field (`FIELDS`), "step" (one side has no step at that journal index,
    or did not end) or "status" (the runs ended differently). `position` counts the steps
    compared before this one.
    `reason` is the workflow's compare hook's explanation of an output difference.
    """

    position: int
    field: str
    reference: Any
    candidate: Any
    reference_step: Step | None
    candidate_step: Step | None
    reason: str = ""

    @property
    def step(self) -> int | None:
        """The journal index where the runs part; None when only their endings differ."""
        return next((s.index for s in (self.reference_step, self.candidate_step) if s), None)

    def describe(self, reference: str = "reference", candidate: str = "candidate") -> str:
        """One sentence with both values inline (a table cell, an assertion message)."""
        ref, cand = self.reference_step, self.candidate_step
        if self.field == "status" or (ref is None and cand is None):
            return (
                f"the runs ended differently: {reference} {show(self.reference)}, "
                f"{candidate} {show(self.candidate)}"
            )
        if ref is None:
            return f"{candidate} has an extra {cand.describe()}, {reference} has nothing there"  # type: ignore[union-attr]
        if cand is None:
            return f"{reference} has {ref.describe()}, {candidate} has nothing there"
        if self.field in ("kind", "name"):
            return (
                f"at position {self.position}: {reference} has {ref.describe()}, "
                f"{candidate} has {cand.describe()}"
            )
        return (
            f"{ref.describe()}, field {self.field!r}: {reference} {show(self.reference)}, "
            f"{candidate} {show(self.candidate)}"
        )

    def explain(self, reference: str = "primary", candidate: str = "candidate") -> str:
        """A headline and one line per differing leaf (a report: `bridge migrate report`)."""
        ref, cand = self.reference_step, self.candidate_step
        labels = (reference, candidate)
        if ref is None or cand is None:
            there = cand if ref is None else ref
            assert there is not None
            ran, other = (candidate, reference) if ref is None else (reference, candidate)
            if there.index is None:
                return f"outcome: the {ran} ended ({there.kind}), the {other} did not end"
            return (
                f"step {there.index}: the {ran} ran {there.label()}, "
                f"the {other} has no step {there.index}"
            )
        if self.field in ("kind", "name"):
            return (
                f"step {ref.index}: the {reference} ran {ref.label()}, "
                f"the {candidate} ran {cand.label()}"
            )
        if self.field == "status" or (
            self.field == "error" and (ref.error is None) != (cand.error is None)
        ):
            where = "outcome" if ref.index is None else f"step {ref.index} ({ref.label()})"
            return f"{where}: {_ending(ref)} ({reference}) != {_ending(cand)} ({candidate})"
        if ref.index is None:
            headline = {"error": "outcome: the error differs"}.get(self.field, "output differs")
            if self.reason:
                headline += f": {self.reason}"
        else:
            what = {"args": "arguments differ", "error": "error differs"}.get(
                self.field, "result differs"
            )
            headline = f"step {ref.index} ({ref.label()}): {what}"
        return headline + _indent(diff_values(self.reference, self.candidate, labels=labels))


def _ending(step: Step) -> str:
    """How a step ("completed", "failed with ...") or a run ("cancelled", ...) ended."""
    ended = step.kind if step.index is None else "failed" if step.error else "completed"
    if step.error:
        return f"{ended} with {step.error.get('error_type')}: {_clip(step.error.get('message'))}"
    return ended


def _indent(lines: Iterable[str]) -> str:
    return "".join(f"\n  {line}" for line in lines)


def show(value: Any, limit: int = 300) -> str:
    """`value` as sorted JSON on one line, cut at `limit` characters."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: Any, limit: int = 160) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def differences(
    reference: Sequence[Step],
    candidate: Sequence[Step],
    *,
    ignore: Sequence[str] = (),
    compare: Compare | None = None,
) -> list[Difference]:
    """Every step where two trajectories differ (the first differing field of each), then
    their endings. Steps are paired by journal index. `ignore` paths are left out of every
    step's arguments and result and of the output; `compare` decides whether two outputs
    match (by default they must be equal)."""
    ref_steps = {s.index: s for s in reference if s.index is not None}
    cand_steps = {s.index: s for s in candidate if s.index is not None}
    found: list[Difference] = []
    indices = sorted(set(ref_steps) | set(cand_steps))
    for position, idx in enumerate(indices):
        diff = _step_difference(position, ref_steps.get(idx), cand_steps.get(idx), ignore)
        if diff is not None:
            found.append(diff)
    ref_end = next((s for s in reference if s.index is None), None)
    cand_end = next((s for s in candidate if s.index is None), None)
    diff = _end_difference(len(indices), ref_end, cand_end, ignore, compare)
    if diff is not None:
        found.append(diff)
    return found


def first_difference(reference: Sequence[Step], candidate: Sequence[Step]) -> Difference | None:
    """The first field, of the first step, where the two trajectories differ; None if equal."""
    return next(iter(differences(reference, candidate)), None)


def _step_difference(
    position: int, ref: Step | None, cand: Step | None, ignore: Sequence[str]
) -> Difference | None:
    if ref is None or cand is None:
        return Difference(position, "step", ref, cand, ref, cand)
    for name in FIELDS:
        a, b = getattr(ref, name), getattr(cand, name)
        if name in ("args", "result"):
            a, b = strip(a, ignore), strip(b, ignore)
        if not same(a, b):
            return Difference(position, name, a, b, ref, cand)
    return None


def _end_difference(
    position: int,
    ref: Step | None,
    cand: Step | None,
    ignore: Sequence[str],
    compare: Compare | None,
) -> Difference | None:
    if ref is None or cand is None:
        return None if ref is cand else Difference(position, "step", ref, cand, ref, cand)
    if ref.kind != cand.kind:
        return Difference(position, "status", ref.kind, cand.kind, ref, cand)
    if not same(ref.error, cand.error):
        return Difference(position, "error", ref.error, cand.error, ref, cand)
    a, b = strip(ref.result, ignore), strip(cand.result, ignore)
    if compare is None:
        return None if same(a, b) else Difference(position, "result", a, b, ref, cand)
    verdict = compare(a, b)
    if verdict is None or verdict is True:
        return None
    reason = verdict if isinstance(verdict, str) else "the workflow's compare hook said no"
    return Difference(position, "result", a, b, ref, cand, reason)
