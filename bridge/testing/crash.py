"""Crash injection: SIGKILL a real worker process at a chosen point, resume, and count.

`crash_and_resume` runs the workflow once crash-free (the reference), then again with its
worker in a subprocess (`bridge.testing._worker_main`) that is killed with SIGKILL at the
kill point, starts a fresh worker process, and waits for the result. It then checks what a
durable engine promises: the result equals the reference's, and the side-effect ledger
(`bridge.testing.ledger`) shows each of the reference's side effects committed exactly once,
keyed by idempotency key.

The kill lands at a known point, never after a guessed sleep: the first worker's activities
are wrapped by a probe that parks the planned attempt and writes a marker line, and the
parent reads the run's history, its description or the marker file until the point is
reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.client import Client, connect_engine
from bridge.config import Settings, load_settings
from bridge.testing import ledger as _ledger
from bridge.testing._worker_main import PLAN_ENV
from bridge.testing.trajectory import Step, answer_signals, normalize
from bridge.workflow import WorkflowDefinition, as_workflow

__all__ = [
    "CrashCheckError",
    "CrashReport",
    "KillPoint",
    "crash_and_resume",
    "crash_and_resume_sync",
    "settings_env",
]

RUN_PLACEHOLDER = "<run>"


@dataclass(frozen=True)
class KillPoint:
    """Where the first worker dies. Steps are journal indices (0 is the first step, as in
    idempotency keys and `bridge history`)."""

    kind: str
    step: int | None = None
    signal: str | None = None

    @classmethod
    def after_step(cls, step: int) -> KillPoint:
        """Step `step` has returned and its result is journaled; no later activity started."""
        return cls("after_step", step=step)

    @classmethod
    def during_step(cls, step: int) -> KillPoint:
        """Step `step`'s activity attempt has started and not returned."""
        return cls("during_step", step=step)

    @classmethod
    def after_effect(cls, step: int) -> KillPoint:
        """Step `step`'s activity function has returned (its side effect is done) but the
        engine has not recorded the result: the window in which an activity that ignores its
        idempotency key repeats its side effect on resume."""
        return cls("after_effect", step=step)

    @classmethod
    def waiting_for_signal(cls, name: str) -> KillPoint:
        """The run waits for signal `name`; it is sent after the kill, before the restart."""
        return cls("waiting_for_signal", signal=name)

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        """`after:K`, `during:K` or `signal:NAME` (the CLI's spelling)."""
        kind, _, value = text.partition(":")
        try:
            if kind == "after":
                return cls.after_step(int(value))
            if kind == "during":
                return cls.during_step(int(value))
            if kind == "effect":
                return cls.after_effect(int(value))
        except ValueError:
            pass
        if kind == "signal" and value:
            return cls.waiting_for_signal(value)
        raise ValueError(
            f"bad kill point {text!r}: expected after:STEP, during:STEP, effect:STEP or "
            f"signal:NAME (STEP is a journal index, 0 for the first step)"
        )

    def describe(self) -> str:
        if self.kind == "after_step":
            return f"after step {self.step}"
        if self.kind == "during_step":
            return f"during step {self.step}"
        if self.kind == "after_effect":
            return f"after step {self.step}'s side effect, before its result was recorded"
        return f"while waiting for signal {self.signal!r}"


@dataclass
class CrashReport:
    """What one crash-and-resume did, and what it found wrong (`problems`)."""

    workflow_id: str
    kill_at: KillPoint
    killed: bool
    status: str
    result: Any
    expected: Any
    effects: Counter[str]
    expected_effects: Counter[str] | None
    trajectory: list[Step]
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Wall-clock time (time.time()) of the SIGKILL, to tell which effects came before it.
    killed_at: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = f"crash {self.kill_at.describe()} of run {self.workflow_id!r}"
        if self.ok:
            return f"{head}: resumed, same result, each side effect once"
        return f"{head}: " + "; ".join(self.problems)


class CrashCheckError(AssertionError):
    """A crash and resume broke a durability promise; the message lists every problem."""

    def __init__(self, report: CrashReport) -> None:
        self.report = report
        super().__init__(report.describe())


# -- subprocess plumbing ------------------------------------------------------------------
def settings_env(settings: Settings, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker subprocess: `settings` as BRIDGE_* variables (every field,
    so a bridge.toml in the working directory cannot change them), nothing else of BRIDGE_*,
    and this process's import path, so the worker imports the same modules."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    env = {k: v for k, v in env.items() if not k.startswith("BRIDGE_")}
    data = settings.model_dump()
    for key, value in data.items():
        if isinstance(value, dict) and key != "backend_options":
            for sub, v in value.items():
                if v is not None:
                    env[f"BRIDGE_{key.upper()}_{sub.upper()}"] = _env_text(v)
        elif key == "workflows":
            env["BRIDGE_WORKFLOWS"] = ",".join(value)
        elif key == "backend_options":
            env["BRIDGE_BACKEND_OPTIONS"] = json.dumps(value)
        else:
            env[f"BRIDGE_{key.upper()}"] = _env_text(value)
    paths = [os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        # JSON, as the settings read a table from the environment ([encryption] keys),
        # with secrets revealed: the worker needs the keys themselves, not their mask.
        return json.dumps(value, default=_revealed)
    return str(value)


def _revealed(value: Any) -> Any:
    reveal = getattr(value, "get_secret_value", None)
    return reveal() if reveal is not None else str(value)


class _Workers:
    """Worker subprocesses, killed whatever happens."""

    def __init__(self, env: dict[str, str], modules: Sequence[str], workdir: Path) -> None:
        self.env = env
        self.modules = list(modules)
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, plan: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if plan is not None:
            env[PLAN_ENV] = json.dumps(plan)
        log = self.workdir / f"worker{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge.testing._worker_main", *self.modules],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def log(self, n: int) -> str:
        path = self.workdir / f"worker{n}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


# -- the kill point -----------------------------------------------------------------------
async def _reached(
    client: Client, run_id: str, kill_at: KillPoint, marker: Path
) -> tuple[bool, bool]:
    """(reached, finished): whether the kill point is reached, whether the run has ended."""
    desc = await client.describe(run_id)
    if kill_at.kind == "waiting_for_signal":
        return desc.waiting_for == kill_at.signal, desc.status.is_terminal
    if kill_at.kind in ("during_step", "after_effect"):
        lines = marker.read_text().splitlines() if marker.exists() else []
        return (
            any(json.loads(line)["step"] == kill_at.step for line in lines),
            desc.status.is_terminal,
        )
    settled = {s.index for s in normalize(await client.history(run_id))}
    return kill_at.step in settled, desc.status.is_terminal


async def _wait_for_kill_point(
    client: Client,
    run_id: str,
    kill_at: KillPoint,
    marker: Path,
    proc: subprocess.Popen[bytes],
    timeout: float,
) -> bool:
    """True once the point is reached; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while True:
        reached, finished = await _reached(client, run_id, kill_at, marker)
        if reached:
            return True
        if finished:
            return False
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode} before the kill")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"run {run_id!r} did not reach the kill point ({kill_at.describe()}) "
                f"within {timeout}s"
            )
        await asyncio.sleep(0.02)


# -- the check ----------------------------------------------------------------------------
def _effects(entries: Sequence[_ledger.Entry], run_id: str) -> Counter[str]:
    return Counter(e.key.replace(run_id, RUN_PLACEHOLDER) for e in entries)


def _problems(report: CrashReport, reference_status: str | None) -> list[str]:
    problems = []
    if not report.killed:
        problems.append(
            f"the kill point ({report.kill_at.describe()}) was never reached: the run ended "
            f"first with {sum(s.index is not None for s in report.trajectory)} settled steps"
        )
    if reference_status is not None and report.status != reference_status:
        problems.append(f"the run ended {report.status}, the crash-free run {reference_status}")
    elif report.result != report.expected:
        problems.append(
            f"result {json.dumps(report.result, default=str)} differs from the crash-free "
            f"result {json.dumps(report.expected, default=str)}"
        )
    twice = {k: n for k, n in report.effects.items() if n > 1}
    if twice:
        problems.append(
            "side effects committed more than once: "
            + ", ".join(f"{k} x{n}" for k, n in sorted(twice.items()))
        )
    if report.expected_effects is not None:
        missing = sorted(set(report.expected_effects) - set(report.effects))
        extra = sorted(set(report.effects) - set(report.expected_effects))
        if missing:
            problems.append("side effects of the crash-free run missing: " + ", ".join(missing))
        if extra:
            problems.append("side effects the crash-free run did not have: " + ", ".join(extra))
    return problems


def _target(
    workflow: str | WorkflowDefinition[..., Any],
) -> tuple[str, WorkflowDefinition[..., Any]]:
    """(module to import in the worker, the workflow) from `module:name` or a definition."""
    if isinstance(workflow, WorkflowDefinition):
        module = workflow.fn.__module__
        if module == "__main__":
            raise ValueError(
                f"workflow {workflow.name!r} is defined in __main__, which a worker process "
                f"cannot import; move it to a module"
            )
        return module, workflow
    import importlib

    module, sep, attr = workflow.partition(":")
    if not sep:
        raise ValueError(f"expected MODULE:WORKFLOW, got {workflow!r}")
    return module, as_workflow(getattr(importlib.import_module(module), attr))


async def _outcome(client: Client, run_id: str, timeout: float) -> tuple[str, Any, list[Step]]:
    desc = await client.backend.wait(run_id, timeout=timeout)
    status = "blocked" if desc.blocked else desc.status.value
    return status, desc.result, normalize(await client.history(run_id))


async def crash_and_resume(
    settings: Settings | Mapping[str, Any],
    workflow: str | WorkflowDefinition[..., Any],
    args: Sequence[Any] = (),
    *,
    kill_at: KillPoint,
    ledger: str | Path | None = None,
    signals: Mapping[str, Any] | None = None,
    modules: Sequence[str] = (),
    reference: bool = True,
    reference_settings: Settings | Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    workdir: str | Path | None = None,
    check: bool = True,
) -> CrashReport:
    """Run `workflow(*args)` crash-free, then with a SIGKILL of its worker at `kill_at`, and
    compare (see the module docstring). `workflow` is `"module:name"` or a definition from an
    importable module; `modules` are further modules the worker imports. `ledger` is the
    ledger file the workflow's activities write (None: only the result is checked).
    `signals` answers the run's signal waits (name -> payload). Raises CrashCheckError when
    a problem is found, unless `check` is False; the report lists the problems either way.

    The crash-free reference runs on the same backend under another workflow id, or, with
    `reference_settings`, on that backend (another store) under the *same* id: then both
    runs pass the same idempotency keys, so an activity that answers a repeated key with its
    first result (a created row's id, say) gives both runs the same result. The ledger is
    then checked for keys committed twice only, since the reference committed them first.
    """
    chosen = settings if isinstance(settings, Settings) else load_settings(settings)
    module, defn = _target(workflow)
    signals = dict(signals or {})
    if kill_at.kind == "waiting_for_signal" and kill_at.signal not in signals:
        raise ValueError(
            f"kill point {kill_at.describe()} needs a payload to send after the kill: "
            f"pass signals={{{kill_at.signal!r}: ...}}"
        )
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bridge-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    run_id, ref_id = f"crash-{tag}", f"crash-ref-{tag}"
    marker = work / f"{run_id}.marker"
    started = time.monotonic()

    ref_settings = chosen
    if reference_settings is not None:
        ref_settings = (
            reference_settings
            if isinstance(reference_settings, Settings)
            else load_settings(reference_settings)
        )
    shared_keys = ref_settings != chosen  # another store: the same id is free there
    if shared_keys:
        ref_id = run_id

    # Exactly the engines named: migration rules must not route the harness's runs.
    async with await connect_engine(chosen) as client:
        expected = ref_status = expected_effects = None
        if reference:
            before = len(_ledger.entries(ledger)) if ledger else 0
            async with await connect_engine(ref_settings) as ref, ref.worker([defn]):
                await ref.start(defn, *args, id=ref_id)
                responder = asyncio.ensure_future(answer_signals(ref, ref_id, signals))
                try:
                    ref_status, expected, _ = await _outcome(ref, ref_id, timeout)
                finally:
                    responder.cancel()
                    await asyncio.gather(responder, return_exceptions=True)
            if ledger and not shared_keys:
                expected_effects = _effects(_ledger.entries(ledger)[before:], ref_id)

        before = len(_ledger.entries(ledger)) if ledger else 0
        workers = _Workers(settings_env(chosen), [module, *modules], work)
        held = {kill_at.signal} if kill_at.signal else set()
        responder = None
        try:
            await client.start(defn, *args, id=run_id)
            responder = asyncio.ensure_future(answer_signals(client, run_id, signals, held=held))
            plan = None
            if kill_at.kind != "waiting_for_signal":
                plan = {
                    "workflow_id": run_id,
                    "kind": kill_at.kind,
                    "step": kill_at.step,
                    "marker": str(marker),
                }
            first = workers.start(plan)
            try:
                killed = await _wait_for_kill_point(client, run_id, kill_at, marker, first, timeout)
            except (RuntimeError, TimeoutError) as exc:
                raise type(exc)(f"{exc}; worker log:\n{workers.log(0)}") from None
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            killed_at = time.time()
            held.clear()  # the run's signal may be sent now: no worker is alive
            workers.start()
            status, result, trajectory = await _outcome(client, run_id, timeout)
        finally:
            if responder is not None:
                responder.cancel()
                await asyncio.gather(responder, return_exceptions=True)
            workers.close()
        effects = _effects(_ledger.entries(ledger)[before:], run_id) if ledger else Counter()

    report = CrashReport(
        workflow_id=run_id,
        kill_at=kill_at,
        killed=killed,
        status=status,
        result=result,
        expected=expected if reference else result,
        effects=effects,
        expected_effects=expected_effects,
        trajectory=trajectory,
        seconds=time.monotonic() - started,
        killed_at=killed_at,
    )
    report.problems = _problems(report, ref_status)
    if check and report.problems:
        raise CrashCheckError(report)
    return report


def crash_and_resume_sync(
    settings: Settings | Mapping[str, Any],
    workflow: str | WorkflowDefinition[..., Any],
    args: Sequence[Any] = (),
    *,
    kill_at: KillPoint,
    ledger: str | Path | None = None,
    signals: Mapping[str, Any] | None = None,
    modules: Sequence[str] = (),
    reference: bool = True,
    reference_settings: Settings | Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    workdir: str | Path | None = None,
    check: bool = True,
) -> CrashReport:
    """`crash_and_resume` for synchronous callers."""
    return asyncio.run(
        crash_and_resume(
            settings,
            workflow,
            args,
            kill_at=kill_at,
            ledger=ledger,
            signals=signals,
            modules=modules,
            reference=reference,
            reference_settings=reference_settings,
            timeout=timeout,
            workdir=workdir,
            check=check,
        )
    )
