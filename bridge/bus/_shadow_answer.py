"""Answering a shadow run's activity attempts from the primary's recorded steps.

`bridge._execute.run_attempt` calls `answer()` for every attempt of a run whose id starts
with `shadow:`, on every backend and in every worker process. Nothing here runs an
activity: a step the primary recorded the same way (activity name and arguments, after the
workflow's `ignore` paths) gets the primary's result, or its recorded failures attempt by
attempt; any other step fails at once with `ShadowDivergenceError`, which fails the shadow
run and shows up in `bridge migrate report` at that step.

Answers are found in this process first (`remember()`, called by `shadow()` before it starts
the candidate run), then in the shadow store: `use_store()` if called, else the router's
database from the settings (`[router] url`, `BRIDGE_ROUTER_URL`).
"""

from __future__ import annotations

import threading
from typing import Any

from bridge.activity import ActivityDefinition
from bridge.bus._diff import diff_values, same, strip, unshadow
from bridge.bus._shadow_store import Plan, ShadowStore
from bridge.errors import BridgeError, NonRetryableError

__all__ = [
    "ShadowAnswersMissingError",
    "ShadowDivergenceError",
    "answer",
    "forget",
    "remember",
    "use_store",
]


class ShadowDivergenceError(BridgeError, NonRetryableError):
    """A shadow run asked for a step the primary did not record that way (another activity,
    other arguments, or a step the primary never took). Never retried: the candidate's
    behaviour differs at this step, which is what the shadow report shows."""


class ShadowAnswersMissingError(BridgeError, NonRetryableError):
    """No shadow store this worker can see holds answers for the run: the worker is not
    pointed at the router's store (`[router] url` / `BRIDGE_ROUTER_URL`)."""


class RecordedFailure(Exception):
    """Base of the stand-ins for the primary's failures; each has the recorded type name."""


_plans: dict[str, Plan] = {}
_lock = threading.Lock()
_store: ShadowStore | None = None
_store_url: str | None = None


def remember(plan: Plan) -> None:
    """Answer `plan.shadow_id` in this process without reading the store."""
    with _lock:
        _plans[plan.shadow_id] = plan


def forget(shadow_id: str) -> None:
    with _lock:
        _plans.pop(shadow_id, None)


def use_store(url: str | None) -> None:
    """Read this process's missing answers from the shadow store at `url` (None: back to
    the settings' `[router] url`). Call it in a candidate's worker process whose settings
    do not name the router's database."""
    global _store, _store_url
    with _lock:
        if _store is not None:
            _store.close()
        _store, _store_url = None, url


def _process_store() -> ShadowStore:
    global _store
    with _lock:
        if _store is None:
            url = _store_url
            if url is None:
                from bridge.config import load_settings

                url = load_settings().router.url
            _store = ShadowStore(url)
        return _store


def _plan(shadow_id: str) -> Plan:
    with _lock:
        plan = _plans.get(shadow_id)
    if plan is not None:
        return plan
    store = _process_store()
    plan = store.plan(shadow_id)
    if plan is None:
        raise ShadowAnswersMissingError(
            f"shadow run {shadow_id!r}: the shadow store {store.url} has no recorded answers "
            f"for it, so its activities cannot be answered (and are never executed); point "
            f"this worker at the router's database (`[router] url` in bridge.toml, "
            f"BRIDGE_ROUTER_URL, or bridge.bus.shadow.use_store(url))"
        )
    remember(plan)  # the answers never change once written
    return plan


async def answer(
    defn: ActivityDefinition[..., Any],
    data: dict[str, Any],
    *,
    workflow_id: str,
    step: int,
    attempt: int,
) -> Any:
    """The primary's recorded result of this step, or its recorded failure raised."""
    plan = _plan(workflow_id)
    recorded = plan.steps.get(step)
    args = strip(unshadow(data, workflow_id, plan.workflow_id), plan.ignore)
    problem = _divergence(plan, step, defn.name, args)
    if problem is not None:
        raise ShadowDivergenceError(problem)
    assert recorded is not None
    if recorded.status == "completed":
        return recorded.result
    # The primary failed this step: replay its failures attempt by attempt, so the shadow
    # run takes the same retries and ends with the same ActivityError (type, message,
    # attempts). The last one is non-retryable unless the policy gives up there anyway,
    # which is how the primary's attempts ended.
    failures = list(recorded.failures) or [recorded.error or {}]
    failure = failures[min(attempt, len(failures)) - 1]
    final = attempt >= len(failures)
    raise _stand_in(failure, non_retryable=final and not defn.retry.exhausted(attempt))


def _divergence(plan: Plan, step: int, name: str, args: Any) -> str | None:
    recorded = plan.steps.get(step)
    here = f"step {step}: the candidate runs activity {name!r}"
    if recorded is None:
        return f"{here}, but the primary has no step {step}"
    if recorded.kind not in ("activity", "compensation"):
        return f"{here}, the primary had {recorded.label()} there"
    if recorded.name != name:
        return f"{here}, the primary ran activity {recorded.name!r} there"
    expected = strip(recorded.args, plan.ignore)
    if not same(expected, args):
        return f"{here} with other arguments than the primary: " + "; ".join(
            diff_values(expected, args)
        )
    if recorded.status not in ("completed", "failed"):
        return f"{here}, but the primary never finished it (status {recorded.status})"
    return None


def _stand_in(failure: dict[str, Any], *, non_retryable: bool) -> Exception:
    """An exception whose type name and message are the recorded ones (all that bridge keeps
    of an activity error), so the shadow run's ActivityError reads like the primary's."""
    name = str(failure.get("error_type") or "Error")
    bases: tuple[type, ...] = (
        (RecordedFailure, NonRetryableError) if non_retryable else (RecordedFailure,)
    )
    cls = type(name, bases, {"__module__": __name__})
    return cls(str(failure.get("message") or ""))
