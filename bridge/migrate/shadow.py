"""Shadow mode of the migration router: run a finished primary's input on a candidate engine
and compare, without the candidate doing any side effect.

The primary (the old engine) has run and its result is what callers got. `shadow()` then:

1. reads the primary's neutral history: its input, its steps (activity, arguments, result
   or failures) and the signals it consumed;
2. writes those steps to the shadow store as the answers of run `shadow:<primary id>`;
3. starts that run on the candidate engine (its own namespace: the candidate client's own
   settings, database, task queue) with the same input, and delivers the same signals;
4. every side-effecting activity attempt of the shadow run is answered from the answers by
   the `ShadowAnswers` interceptor, in whichever worker process runs it: never executed;
   a step the primary did not record that way fails the shadow run at that step;
5. compares the two runs step by step and their outputs, after the workflow's `ignore`
   paths and `compare` hook (`configure()`), and stores the outcome for
   `bridge migrate report`.

Timers run their real time in the shadow run (a `ctx.sleep` of a day takes a day), and the
shadow run's `ctx.now()`/`ctx.uuid()` are its own: list such fields in `ignore`. Shadowing
an engine against itself (A/A) shows which fields need it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.client import Client
from bridge.errors import ConfigError, WorkflowBlockedError
from bridge.migrate._shadow_answer import (
    SHADOW_PREFIX,
    ShadowAnswersMissingError,
    ShadowDivergenceError,
    forget,
    remember,
    unshadow,
    use_store,
)
from bridge.migrate._shadow_store import RUNNING, Plan, ShadowRecord, ShadowStore
from bridge.migrate.compare import Compare, RunView, differences, read_run
from bridge.migrate.rule import MigrationRule
from bridge.workflow import WorkflowDefinition, lookup_workflow

if TYPE_CHECKING:
    from bridge.migrate.router import Router

__all__ = [
    "ERROR",
    "MATCHED",
    "MISMATCHED",
    "RUNNING",
    "ShadowConfig",
    "ShadowDivergenceError",
    "ShadowOutcome",
    "SHADOW_PREFIX",
    "ShadowStore",
    "config_for",
    "configure",
    "drain",
    "pending",
    "on_primary_started",
    "outcomes",
    "sampled",
    "shadow",
    "shadow_id",
    "use_store",
]

MATCHED, MISMATCHED, ERROR = "matched", "mismatched", "error"


# -- per-workflow hooks ---------------------------------------------------------------------
@dataclass(frozen=True)
class ShadowConfig:
    """How runs of one workflow are compared.

    `ignore`: dotted paths (`*` for any key or list index) left out of the output and of
    every step's arguments and result, e.g. `["finished_at", "lines.*.ts"]`: fields that
    differ between two correct runs (clocks, generated ids). They are also left out when a
    shadow step's arguments are matched against the primary's. `compare(primary_output,
    candidate_output)`, given the outputs after `ignore`, decides whether the outputs match
    (True/None: they do; False or a reason: they do not); by default they must be equal.
    """

    ignore: tuple[str, ...] = ()
    compare: Compare | None = None


_CONFIGS: dict[str, ShadowConfig] = {}


def configure(
    workflow: WorkflowDefinition[..., Any] | str,
    *,
    compare: Compare | None = None,
    ignore: Sequence[str] = (),
) -> None:
    """Set how shadow runs of `workflow` are compared (see `ShadowConfig`). Call it in the
    process that calls `shadow()` (the router's); answering workers get `ignore` from the
    shadow store."""
    name = workflow if isinstance(workflow, str) else workflow.name
    if isinstance(ignore, str):
        raise ConfigError(
            f"shadow.configure({name!r}): ignore must be a list of paths, not the string "
            f"{ignore!r}; write ignore=[{ignore!r}]"
        )
    _CONFIGS[name] = ShadowConfig(ignore=tuple(ignore), compare=compare)


def config_for(workflow: str) -> ShadowConfig:
    return _CONFIGS.get(workflow, ShadowConfig())


# -- sampling -------------------------------------------------------------------------------
def sampled(workflow_id: str, percent: float) -> bool:
    """Whether run `workflow_id` is shadowed at `percent` (0-100).

    A bucket from SHA-256 of the id (never Python's `hash()`, which changes per process), so
    every process decides alike and raising the percentage only adds runs. The id is salted,
    so the shadow sample does not coincide with the router's ramp buckets.
    """
    if not 0 <= percent <= 100:
        raise ConfigError(f"shadow sample percentage must be within 0..100, got {percent}")
    digest = hashlib.sha256(f"{SHADOW_PREFIX}{workflow_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < round(percent * 100)


def shadow_id(workflow_id: str) -> str:
    """The id of the shadow run of primary run `workflow_id`, on the candidate engine."""
    return f"{SHADOW_PREFIX}{workflow_id}"


# -- outcome --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShadowOutcome:
    """How a shadow run compared with its primary. `status` is `matched`, `mismatched`,
    `error` (the shadow could not be answered: see `diff`) or `running` (not compared yet);
    `first_step` is the first step that differs (None when only the output differs)."""

    workflow_id: str
    shadow_id: str
    workflow: str
    primary_engine: str
    candidate_engine: str
    status: str
    first_step: int | None
    diff: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def matched(self) -> bool:
        return self.status == MATCHED

    @property
    def is_aa(self) -> bool:
        """An engine shadowed against itself (calibration)."""
        return self.primary_engine == self.candidate_engine

    @classmethod
    def from_record(cls, rec: ShadowRecord) -> ShadowOutcome:
        return cls(
            workflow_id=rec.workflow_id,
            shadow_id=rec.shadow_id,
            workflow=rec.workflow,
            primary_engine=rec.primary_engine,
            candidate_engine=rec.candidate_engine,
            status=rec.status,
            first_step=rec.first_step,
            diff=rec.diff,
            created_at=datetime.fromtimestamp(rec.created_at, tz=UTC),
            finished_at=None
            if rec.finished_at is None
            else datetime.fromtimestamp(rec.finished_at, tz=UTC),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "shadow_id": self.shadow_id,
            "workflow": self.workflow,
            "primary_engine": self.primary_engine,
            "candidate_engine": self.candidate_engine,
            "status": self.status,
            "first_step": self.first_step,
            "diff": self.diff,
            "created_at": self.created_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
        }


def outcomes(
    store: ShadowStore, *, workflow: str | None = None, status: str | None = None, limit: int = 100
) -> list[ShadowOutcome]:
    """Stored outcomes, newest first (what `bridge migrate report` shows)."""
    return [
        ShadowOutcome.from_record(r)
        for r in store.records(workflow=workflow, status=status, limit=limit)
    ]


# -- the shadow run -------------------------------------------------------------------------
async def shadow(
    primary: Client,
    candidate: Client,
    workflow_id: str,
    *,
    store: ShadowStore | str | None = None,
    sample_percent: float = 100.0,
    timeout: float | None = None,
    primary_engine: str | None = None,
    candidate_engine: str | None = None,
) -> ShadowOutcome | None:
    """Shadow primary run `workflow_id` on `candidate` and return the comparison; None when
    the run is not in the `sample_percent` sample.

    Waits for the primary to finish, then for the shadow run (a candidate worker must serve
    the workflow); `timeout` bounds each wait (`TimeoutWaitingError`; the shadow stays
    `running` and a later call resumes it). Idempotent: a shadow already compared returns
    its stored outcome, so a redelivered completion event runs nothing twice.
    `store` is a ShadowStore, a URL, or None for the primary's `[router] url`. The engine
    labels default to the backends' names (the router passes its engine names).
    """
    if not sampled(workflow_id, sample_percent):
        return None
    owned = not isinstance(store, ShadowStore)
    shadows = (
        store
        if isinstance(store, ShadowStore)
        else ShadowStore(store or primary.settings.router.url)
    )
    try:
        return await _shadow(
            primary,
            candidate,
            workflow_id,
            shadows,
            timeout=timeout,
            engines=(
                primary_engine or primary.backend_name,
                candidate_engine or candidate.backend_name,
            ),
        )
    finally:
        if owned:
            shadows.close()


async def _shadow(
    primary: Client,
    candidate: Client,
    workflow_id: str,
    store: ShadowStore,
    *,
    timeout: float | None,
    engines: tuple[str, str],
) -> ShadowOutcome:
    sid = shadow_id(workflow_id)
    existing = store.get(sid)
    if existing is not None and existing.status != RUNNING:
        return ShadowOutcome.from_record(existing)
    done = await primary.backend.wait(workflow_id, timeout=timeout)
    if done.blocked:
        # Not finished: it waits for a code fix, and what it will do next is not recorded.
        raise WorkflowBlockedError(workflow_id, str((done.error or {}).get("message", "")))
    first = read_run(await primary.history(workflow_id))
    config = config_for(first.workflow)
    store.begin(
        Plan(sid, workflow_id, first.workflow, config.ignore, first.steps),
        primary_engine=engines[0],
        candidate_engine=engines[1],
    )
    plan = store.plan(sid)  # a run begun earlier keeps the answers it started with
    assert plan is not None
    remember(plan)
    try:
        defn = lookup_workflow(first.workflow)
        created = await candidate.backend.start(defn, first.input, id=sid)
        if created:
            # Kept by every engine until the run waits for them, in the primary's order.
            for name, payload in first.signals:
                await candidate.backend.signal(sid, name, payload)
        desc = await candidate.backend.wait(sid, timeout=timeout)
        second = unshadow_run(read_run(await candidate.history(sid)), sid, workflow_id)
    finally:
        forget(sid)
    if desc.blocked:
        second = RunView(
            second.workflow, second.input, "blocked", error=desc.error, steps=second.steps
        )
    status, first_step, diff = _verdict(first, second, config)
    store.finish(sid, status=status, first_step=first_step, diff=diff)
    final = store.get(sid)
    assert final is not None
    return ShadowOutcome.from_record(final)


def _verdict(first: RunView, second: RunView, config: ShadowConfig) -> tuple[str, int | None, str]:
    missing = [
        s
        for s in second.steps.values()
        if (s.error or {}).get("error_type") == ShadowAnswersMissingError.__name__
    ]
    if missing:
        return ERROR, None, str((missing[0].error or {}).get("message", ""))
    found = differences(
        first.trajectory(), second.trajectory(), ignore=config.ignore, compare=config.compare
    )
    if not found:
        return MATCHED, None, ""
    return MISMATCHED, found[0].step, "\n".join(d.explain() for d in found)


def unshadow_run(run: RunView, shadow_id: str, primary_id: str) -> RunView:
    """`run` (the shadow run) with its own id read as the primary's everywhere: a workflow
    that passes `ctx.workflow_id` on is not a behaviour change."""

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


# -- the router's hook ----------------------------------------------------------------------
log = logging.getLogger("bridge.migrate")

_pending: set[asyncio.Task[ShadowOutcome | None]] = set()


async def on_primary_started(
    *,
    router: Router,
    workflow: WorkflowDefinition[..., Any],
    args: tuple[Any, ...],
    workflow_id: str,
    rule: MigrationRule,
) -> None:
    """The migration router's shadow hook (`bridge.migrate.router.ShadowHook`): returns at once
    and shadows `workflow_id` on `rule.to` in the background once its primary on
    `rule.from_` has finished. `drain()` waits for those shadows."""
    if not sampled(workflow_id, rule.sample):
        return
    task = asyncio.ensure_future(_in_background(router, workflow_id, rule))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _in_background(
    router: Router, workflow_id: str, rule: MigrationRule
) -> ShadowOutcome | None:
    try:
        return await shadow(
            await router.client(rule.from_),
            await router.client(rule.to),
            workflow_id,
            store=router.settings.router.url,
            primary_engine=rule.from_,
            candidate_engine=rule.to,
        )
    except Exception:
        # A shadow is an observation: its failure must never reach the primary's callers.
        log.exception("shadowing %r on %r failed", workflow_id, rule.to)
        return None


def pending() -> int:
    """How many shadows started in this process are still waiting or running."""
    return sum(not t.done() for t in _pending)


async def drain(timeout: float | None = None) -> list[ShadowOutcome]:
    """Wait for the shadows the router hook started in this process (before closing the
    router, whose clients they use); their outcomes."""
    tasks = list(_pending)
    if not tasks:
        return []
    done, _ = await asyncio.wait(tasks, timeout=timeout)
    return [o for t in done if (o := t.result()) is not None]
