"""Differential testing: the same workflow, the same inputs, two engines, one trajectory.

A run's *trajectory* is its neutral history with everything an engine is free to choose
left out (clocks, durations, how many transient failures a retry absorbed, run and event
ids): which steps ran in which order, with what arguments, giving what result or error,
and how the run ended. Two backends that keep the bridge's contract produce equal
trajectories for the same input; `assert_same_trajectory` runs both and names the first
place where they part. Reading and comparing trajectories is `bridge.migrate.compare`'s,
shared with shadow mode, so `bridge compat` and `bridge migrate report` never disagree.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge.backend import Status
from bridge.client import Client, connect_engine
from bridge.config import Settings, load_settings
from bridge.errors import BridgeError
from bridge.history import EventType as E
from bridge.history import HistoryEvent
from bridge.migrate.compare import Difference, Step, first_difference, read_run, show
from bridge.workflow import WorkflowDefinition, as_workflow

__all__ = [
    "Comparison",
    "Difference",
    "Input",
    "Run",
    "Step",
    "TrajectoryMismatch",
    "answer_signals",
    "assert_same_trajectory",
    "assert_same_trajectory_sync",
    "first_difference",
    "normalize",
    "run_trajectories",
]


def normalize(history: Iterable[HistoryEvent]) -> list[Step]:
    """The engine-independent trajectory of one run, in journal order (see
    `bridge.migrate.compare`, which shadow mode compares runs with too)."""
    return read_run(history).trajectory()


# -- running --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Input:
    """One input of a differential run: positional arguments, the signals to answer, and a
    label for reports. `signals` maps a signal name to the payload sent each time the run
    waits for that signal (an approval, say), as a person or a caller would."""

    args: tuple[Any, ...] = ()
    signals: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def of(cls, value: Any) -> Input:
        """An Input from what a caller wrote: an Input, a tuple/list of arguments, a mapping
        `{"args": [...], "signals": {...}, "label": ...}`, or one value as the only argument."""
        if isinstance(value, Input):
            return value
        if isinstance(value, tuple | list):
            return cls(args=tuple(value))
        if isinstance(value, Mapping) and "args" in value:
            unknown = set(value) - {"args", "signals", "label"}
            if unknown:
                raise ValueError(
                    f"input {dict(value)!r} has unknown keys {sorted(unknown)}; "
                    f"allowed: args, signals, label"
                )
            args = value["args"]
            return cls(
                args=tuple(args) if isinstance(args, list | tuple) else (args,),
                signals=dict(value.get("signals") or {}),
                label=str(value.get("label") or ""),
            )
        return cls(args=(value,))

    def describe(self) -> str:
        text = self.label or show(list(self.args), 120)
        return text


@dataclass(frozen=True)
class Run:
    """One input's run on one backend: its id, trajectory and outcome."""

    backend: str
    workflow_id: str
    status: str
    trajectory: list[Step]
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Comparison:
    """One input run on the reference and on the candidate, and their first difference."""

    position: int
    input: Input
    reference: Run
    candidate: Run
    difference: Difference | None

    @property
    def same(self) -> bool:
        return self.difference is None

    def describe(self) -> str:
        if self.difference is None:
            return "same trajectory"
        return self.difference.describe(self.reference.backend, self.candidate.backend)

    def to_dict(self) -> dict[str, Any]:
        diff = self.difference
        return {
            "input": {"args": list(self.input.args), "signals": dict(self.input.signals)},
            "label": self.input.label,
            "same": self.same,
            "reference": {"backend": self.reference.backend, "status": self.reference.status},
            "candidate": {"backend": self.candidate.backend, "status": self.candidate.status},
            "difference": None
            if diff is None
            else {
                "position": diff.position,
                "step": diff.step,
                "field": diff.field,
                "reference": _jsonable(diff.reference),
                "candidate": _jsonable(diff.candidate),
                "message": self.describe(),
            },
        }


def _jsonable(value: Any) -> Any:
    return asdict(value) if isinstance(value, Step) else value


class TrajectoryMismatch(AssertionError):
    """Two backends ran the same input differently; names the input and the first difference."""

    def __init__(self, comparisons: Sequence[Comparison]) -> None:
        self.comparisons = list(comparisons)
        differing = [c for c in self.comparisons if not c.same]
        first = differing[0]
        lines = [
            f"{len(differing)} of {len(self.comparisons)} inputs ran differently on "
            f"{first.reference.backend} (reference) and {first.candidate.backend} (candidate).",
            f"First: input #{first.position} {first.input.describe()}: {first.describe()}",
        ]
        for c in differing[1:6]:
            lines.append(f"  input #{c.position} {c.input.describe()}: {c.describe()}")
        if len(differing) > 6:
            lines.append(f"  ... and {len(differing) - 6} more")
        super().__init__("\n".join(lines))


BackendSpec = str | Settings | Mapping[str, Any]


def _settings_for(spec: BackendSpec, settings: Mapping[str, Any] | None) -> Settings:
    if isinstance(spec, Settings):
        return spec
    if isinstance(spec, Mapping):
        return load_settings(spec)
    chosen = (settings or {}).get(spec)
    if chosen is None:
        return load_settings({"backend": spec})
    return chosen if isinstance(chosen, Settings) else load_settings(chosen)


async def answer_signals(
    client: Client, run_id: str, signals: Mapping[str, Any], *, held: set[str] | None = None
) -> None:
    """Send each wanted signal once per wait for it, until the run ends.

    A wait is seen in the history (one SIGNAL_WAITING per wait), so a signal is never sent
    twice for one wait, which would leave a stale payload for a later wait of that name.
    Names in `held` are not answered while they are in it (the caller may remove them).
    """
    sent: dict[str, int] = {}
    while True:
        desc = await client.describe(run_id)
        if desc.status.is_terminal or desc.blocked:
            return
        if desc.waiting_for in signals:
            waits: dict[str, int] = {}
            for e in await client.history(run_id):
                if e.type is E.SIGNAL_WAITING and e.name in signals and e.name not in (held or ()):
                    waits[e.name] = waits.get(e.name, 0) + 1
            for name, count in waits.items():
                while sent.get(name, 0) < count:
                    await client.signal(run_id, name, signals[name])
                    sent[name] = sent.get(name, 0) + 1
        await asyncio.sleep(0.05)


async def run_one(
    client: Client,
    defn: WorkflowDefinition[..., Any],
    item: Input,
    *,
    id: str,
    timeout: float,
) -> Run:
    """Start one run (a worker must be running), answer its signals, and read its trajectory."""
    handle = await client.start(defn, *item.args, id=id)
    responder = asyncio.ensure_future(answer_signals(client, id, item.signals))
    try:
        desc = await client.backend.wait(id, timeout=timeout)
    finally:
        responder.cancel()
        await asyncio.gather(responder, return_exceptions=True)
    history = await client.history(handle.id)
    status = "blocked" if desc.blocked else desc.status.value
    return Run(
        backend=client.backend_name,
        workflow_id=id,
        status=status,
        trajectory=normalize(history),
        result=desc.result if desc.status is Status.COMPLETED else None,
        error=desc.error,
    )


async def run_trajectories(
    workflow: WorkflowDefinition[..., Any],
    inputs: Sequence[Input],
    settings: Settings,
    *,
    ids: Sequence[str],
    timeout: float = 60.0,
    concurrency: int = 8,
) -> list[Run]:
    """Run every input on one backend with an in-process worker; one Run per input."""
    defn = as_workflow(workflow)
    gate = asyncio.Semaphore(concurrency)
    # The engine under comparison itself: migration rules in bridge.toml must not route
    # the harness's runs to another engine.
    async with await connect_engine(settings) as client:

        async def one(item: Input, id: str) -> Run:
            async with gate:
                try:
                    return await run_one(client, defn, item, id=id, timeout=timeout)
                except BridgeError as exc:
                    # A run that never ended (a wait nobody answers, a hang) is reported as
                    # this input's outcome, not as a crash of the whole comparison.
                    return Run(
                        backend=client.backend_name,
                        workflow_id=id,
                        status="error",
                        trajectory=[],
                        error={"error_type": type(exc).__name__, "message": str(exc)},
                    )

        async with client.worker([defn]):
            return list(
                await asyncio.gather(*(one(i, id) for i, id in zip(inputs, ids, strict=True)))
            )


async def assert_same_trajectory(
    workflow: WorkflowDefinition[..., Any],
    inputs: Iterable[Any],
    *,
    backends: Sequence[BackendSpec],
    settings: Mapping[str, Any] | None = None,
    candidate_workflow: WorkflowDefinition[..., Any] | None = None,
    timeout: float = 60.0,
    concurrency: int = 8,
    check: bool = True,
) -> list[Comparison]:
    """Run `workflow` for each input on `backends[0]` (the reference) and on each other
    backend, and compare their trajectories input by input.

    A backend is a name (its settings from `settings[name]`, else from the configuration),
    a `Settings`, or a settings mapping. Each input is anything `Input.of` reads. Both sides
    use the same workflow ids, so ids, idempotency keys and `ctx.uuid()` agree. With
    `candidate_workflow`, the candidates run that code instead (a rewrite under test).
    Raises TrajectoryMismatch naming the first difference, unless `check` is False.
    """
    if len(backends) < 2:
        raise ValueError("assert_same_trajectory needs a reference and at least one candidate")
    items = [Input.of(i) for i in inputs]
    prefix = f"compat-{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{n}" for n in range(len(items))]
    reference_settings = _settings_for(backends[0], settings)
    reference = await run_trajectories(
        workflow, items, reference_settings, ids=ids, timeout=timeout, concurrency=concurrency
    )
    comparisons: list[Comparison] = []
    for spec in backends[1:]:
        candidate = await run_trajectories(
            candidate_workflow or workflow,
            items,
            _settings_for(spec, settings),
            ids=ids,
            timeout=timeout,
            concurrency=concurrency,
        )
        for n, (item, ref, cand) in enumerate(zip(items, reference, candidate, strict=True)):
            diff = first_difference(ref.trajectory, cand.trajectory)
            if diff is None and (ref.status == "error" or cand.status == "error"):
                diff = Difference(
                    0, "status", ref.error or ref.status, cand.error or cand.status, None, None
                )
            comparisons.append(Comparison(n, item, ref, cand, diff))
    if check and any(not c.same for c in comparisons):
        raise TrajectoryMismatch(comparisons)
    return comparisons


def assert_same_trajectory_sync(
    workflow: WorkflowDefinition[..., Any],
    inputs: Iterable[Any],
    *,
    backends: Sequence[BackendSpec],
    settings: Mapping[str, Any] | None = None,
    candidate_workflow: WorkflowDefinition[..., Any] | None = None,
    timeout: float = 60.0,
    concurrency: int = 8,
    check: bool = True,
) -> list[Comparison]:
    """`assert_same_trajectory` for synchronous callers (scripts, plain test functions)."""
    return asyncio.run(
        assert_same_trajectory(
            workflow,
            inputs,
            backends=backends,
            settings=settings,
            candidate_workflow=candidate_workflow,
            timeout=timeout,
            concurrency=concurrency,
            check=check,
        )
    )
