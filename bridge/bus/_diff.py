"""Shadow mode's view of a run and the readable comparison of two runs.

A run is read from its neutral history (`bridge.history`), so the primary and the candidate
can be on any two engines. Values are JSON data throughout. Before comparing, the shadow
run's own id is read as the primary's (a workflow that passes `ctx.workflow_id` on is not a
behaviour change) and the workflow's `ignore` paths are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bridge import codec
from bridge.history import EventType as E
from bridge.history import HistoryEvent

__all__ = [
    "Compare",
    "Comparison",
    "RunView",
    "StepView",
    "compare_runs",
    "diff_values",
    "read_run",
    "same",
    "strip",
    "unshadow",
    "unshadow_run",
]

# What a step ended as, by the event that ended it.
_ENDINGS = {
    E.STEP_COMPLETED: "completed",
    E.COMPENSATION_COMPLETED: "completed",
    E.TIMER_FIRED: "fired",
    E.SIGNAL_RECEIVED: "received",
    E.SIGNAL_TIMED_OUT: "timed_out",
}
_STARTS = {
    E.STEP_SCHEDULED: "activity",
    E.COMPENSATION_SCHEDULED: "compensation",
    E.TIMER_STARTED: "sleep",
    E.SIGNAL_WAITING: "signal",
}
_FAILURES = {E.STEP_FAILED: "activity", E.COMPENSATION_FAILED: "compensation"}

#: Most lines a diff shows for one value; the rest is counted, not printed.
MAX_LINES = 8


@dataclass(frozen=True)
class StepView:
    """One journaled step: what ran (`kind`, `name`, `args`) and how it ended. `failures`
    lists every failed attempt ({error_type, message}), the final one last."""

    idx: int
    kind: str
    name: str
    args: Any = None
    status: str = "open"
    result: Any = None
    error: dict[str, Any] | None = None
    failures: tuple[dict[str, Any], ...] = ()

    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "idx": self.idx,
            "kind": self.kind,
            "name": self.name,
            "args": self.args,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "failures": list(self.failures),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepView:
        return cls(**{**data, "failures": tuple(data.get("failures") or ())})


@dataclass(frozen=True)
class RunView:
    """A run as shadow mode sees it: input, steps by index, signals it took, outcome."""

    workflow: str
    input: Any
    status: str  # completed, failed, cancelled, open
    result: Any = None
    error: dict[str, Any] | None = None
    steps: dict[int, StepView] = field(default_factory=dict)
    #: (name, payload) of every signal the run consumed, in step order.
    signals: tuple[tuple[str, Any], ...] = ()


def read_run(events: Iterable[HistoryEvent]) -> RunView:
    """The run recorded by `events` (any backend's neutral history)."""
    workflow, data, status, result, error = "", None, "open", None, None
    steps: dict[int, StepView] = {}
    for e in events:
        if e.type is E.WORKFLOW_STARTED:
            workflow, data = e.name or "", e.args
        elif e.type is E.WORKFLOW_COMPLETED:
            status, result = "completed", e.result
        elif e.type is E.WORKFLOW_FAILED:
            status, error = "failed", _error(e.error)
        elif e.type is E.WORKFLOW_CANCELLED:
            status = "cancelled"
        elif e.step is None:
            continue
        elif e.type is E.PATCH_MARKER:
            steps[e.step] = StepView(e.step, "patch", e.name or "", status="completed")
        elif e.type in _STARTS:
            steps[e.step] = StepView(e.step, _STARTS[e.type], e.name or "", args=e.args)
        elif e.type in _ENDINGS:
            step = steps.get(e.step) or StepView(e.step, _kind_of(e.type), e.name or "", e.args)
            steps[e.step] = replace(step, status=_ENDINGS[e.type], result=e.result)
        elif e.type in _FAILURES:
            step = steps.get(e.step) or StepView(e.step, _FAILURES[e.type], e.name or "", e.args)
            failure = _error(e.error) or {"error_type": "Error", "message": ""}
            step = replace(step, failures=(*step.failures, failure))
            if not e.details.get("will_retry"):
                step = replace(step, status="failed", error=failure)
            steps[e.step] = step
    signals = tuple((s.name, s.result) for _, s in sorted(steps.items()) if s.status == "received")
    return RunView(workflow, data, status, result, error, steps, signals)


def _kind_of(event: E) -> str:
    if event is E.COMPENSATION_COMPLETED:
        return "compensation"
    if event is E.TIMER_FIRED:
        return "sleep"
    if event in (E.SIGNAL_RECEIVED, E.SIGNAL_TIMED_OUT):
        return "signal"
    return "activity"


def _error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"error_type": error.get("error_type"), "message": error.get("message")}


# -- value preparation ----------------------------------------------------------------------
def unshadow(value: Any, shadow_id: str, primary_id: str) -> Any:
    """`value` with the shadow run's id replaced by the primary's, in every string."""
    if isinstance(value, str):
        return value.replace(shadow_id, primary_id)
    if isinstance(value, dict):
        return {
            unshadow(k, shadow_id, primary_id): unshadow(v, shadow_id, primary_id)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [unshadow(v, shadow_id, primary_id) for v in value]
    return value


def unshadow_run(run: RunView, shadow_id: str, primary_id: str) -> RunView:
    """`run` (the shadow run) with its own id read as the primary's everywhere."""

    def u(value: Any) -> Any:
        return unshadow(value, shadow_id, primary_id)

    steps = {
        i: replace(
            s,
            args=u(s.args),
            result=u(s.result),
            error=u(s.error),
            failures=tuple(u(f) for f in s.failures),
        )
        for i, s in run.steps.items()
    }
    return replace(
        run,
        input=u(run.input),
        result=u(run.result),
        error=u(run.error),
        steps=steps,
        signals=tuple((n, u(p)) for n, p in run.signals),
    )


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
    """Equal as JSON data (dict key order does not matter)."""
    return codec.digest(a) == codec.digest(b)


def diff_values(primary: Any, candidate: Any, *, limit: int = MAX_LINES) -> list[str]:
    """Readable lines, one per differing leaf: `path: primary value != candidate value`."""
    lines: list[str] = []
    _walk(primary, candidate, "", lines)
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more difference(s)"]
    return lines


def _walk(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{sub}: {_short(a[key])} (primary) != missing (candidate)")
            elif key not in a:
                out.append(f"{sub}: missing (primary) != {_short(b[key])} (candidate)")
            else:
                _walk(a[key], b[key], sub, out)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]" if path else f"[{i}]", out)
        return
    if not same(a, b):
        out.append(f"{path or '(value)'}: {_short(a)} (primary) != {_short(b)} (candidate)")


def _short(value: Any, limit: int = 120) -> str:
    text = codec.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- comparing two runs ---------------------------------------------------------------------
#: A workflow's own output comparison: (primary output, candidate output) as JSON data, each
#: after `ignore`; True (or None) when they match, False or an explanation when they do not.
Compare = Callable[[Any, Any], bool | str | None]


@dataclass(frozen=True)
class Comparison:
    matched: bool
    first_step: int | None  # the first differing step; None if only the output differs
    diff: str  # readable, one difference per paragraph; "" when matched


def compare_runs(
    primary: RunView,
    candidate: RunView,
    *,
    ignore: Sequence[str] = (),
    compare: Compare | None = None,
) -> Comparison:
    """Step by step, then the outcome. `candidate` must already be unshadowed."""
    problems: list[str] = []
    first: int | None = None
    for idx in sorted(set(primary.steps) | set(candidate.steps)):
        text = _step_difference(primary.steps.get(idx), candidate.steps.get(idx), ignore)
        if text is not None:
            first = idx if first is None else first
            problems.append(text)
    outcome = _outcome_difference(primary, candidate, ignore, compare)
    if outcome is not None:
        problems.append(outcome)
    return Comparison(matched=not problems, first_step=first, diff="\n".join(problems))


def _indent(lines: Iterable[str]) -> str:
    return "".join(f"\n  {line}" for line in lines)


def _step_difference(p: StepView | None, c: StepView | None, ignore: Sequence[str]) -> str | None:
    if p is None and c is not None:
        return f"step {c.idx}: the candidate ran {c.label()}, the primary has no step {c.idx}"
    if c is None and p is not None:
        return f"step {p.idx}: the primary ran {p.label()}, the candidate has no step {p.idx}"
    assert p is not None and c is not None
    where = f"step {p.idx} ({p.label()})"
    if (p.kind, p.name) != (c.kind, c.name):
        return f"step {p.idx}: the primary ran {p.label()}, the candidate ran {c.label()}"
    pa, ca = strip(p.args, ignore), strip(c.args, ignore)
    if not same(pa, ca):
        return f"{where}: arguments differ" + _indent(diff_values(pa, ca))
    if p.status != c.status:
        return f"{where}: {_ending(p)} (primary) != {_ending(c)} (candidate)"
    if p.status == "failed" and not same(p.error, c.error):
        return f"{where}: error differs" + _indent(diff_values(p.error, c.error))
    pr, cr = strip(p.result, ignore), strip(c.result, ignore)
    if not same(pr, cr):
        return f"{where}: result differs" + _indent(diff_values(pr, cr))
    return None


def _ending(step: StepView) -> str:
    if step.status == "failed" and step.error:
        return f"failed with {step.error.get('error_type')}: {_clip(step.error.get('message'))}"
    return step.status


def _outcome_difference(
    p: RunView, c: RunView, ignore: Sequence[str], compare: Compare | None
) -> str | None:
    if p.status != c.status:
        return f"outcome: {_run_ending(p)} (primary) != {_run_ending(c)} (candidate)"
    if p.status == "failed" and not same(p.error, c.error):
        return "outcome: the error differs" + _indent(diff_values(p.error, c.error))
    pr, cr = strip(p.result, ignore), strip(c.result, ignore)
    if compare is not None:
        verdict = compare(pr, cr)
        if verdict is None or verdict is True:
            return None
        reason = verdict if isinstance(verdict, str) else "the workflow's compare hook said no"
        return f"output differs: {reason}" + _indent(diff_values(pr, cr))
    if not same(pr, cr):
        return "output differs" + _indent(diff_values(pr, cr))
    return None


def _run_ending(run: RunView) -> str:
    if run.status == "failed" and run.error:
        return f"failed with {run.error.get('error_type')}: {_clip(run.error.get('message'))}"
    return run.status


def _clip(text: Any, limit: int = 160) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."
