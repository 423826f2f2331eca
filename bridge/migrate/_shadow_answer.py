"""Answering a shadow run's activity attempts from the primary's recorded steps.

`ShadowAnswers` is an interceptor (`bridge.interceptors`), registered as an entry point so
that every worker process has it, whether or not it ever imported `bridge.migrate` or has
migration rules: it sees every activity attempt on every backend and answers those of runs
whose id starts with `shadow:` (`SHADOW_PREFIX`) with `answer()`. Nothing here runs an
activity: a step the primary recorded the same way (activity name and arguments, after the
workflow's `ignore` paths) gets the primary's result, or its recorded failures attempt by
attempt; any other step fails at once with `ShadowDivergenceError`, which fails the shadow
run and shows up in `bridge migrate report` at that step.

Answers are found in this process first (`remember()`, called by `shadow()` before it starts
the candidate run), then in the shadow store: `use_store()` if called, else the router's
database from the worker's settings (`[router] url`, `BRIDGE_ROUTER_URL`).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bridge.activity import ActivityDefinition
from bridge.errors import BridgeError, NonRetryableError
from bridge.interceptors import ActivityCall, Interceptor
from bridge.migrate.compare import diff_values, same, strip

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.migrate._shadow_store import Plan, ShadowStore

__all__ = [
    "SHADOW_PREFIX",
    "ShadowAnswers",
    "ShadowAnswersMissingError",
    "ShadowDivergenceError",
    "answer",
    "forget",
    "interceptor",
    "remember",
    "unshadow",
    "use_store",
]

#: Workflow ids of shadow runs start with this; the prefix is reserved. Their side-effecting
#: attempts are answered from the primary run's recorded results and never execute the
#: activity, in whichever process or engine runs them (activities declared
#: `side_effects=False` run for real).
SHADOW_PREFIX = "shadow:"


class ShadowDivergenceError(BridgeError, NonRetryableError):
    """A shadow run asked for a step the primary did not record that way (another activity,
    other arguments, or a step the primary never took). Never retried: the candidate's
    behaviour differs at this step, which is what the shadow report shows."""


class ShadowAnswersMissingError(BridgeError, NonRetryableError):
    """No shadow store this worker can see holds answers for the run: the worker is not
    pointed at the router's store (`[router] url` / `BRIDGE_ROUTER_URL`)."""


class RecordedFailure(Exception):
    """Base of the stand-ins for the primary's failures; each has the recorded type name."""


class ShadowAnswers(Interceptor):
    """Answers the side-effecting attempts of shadow runs; passes every other one on.
    `router_url` is the worker's `[router] url`, where the answers are unless `use_store()`
    names another database."""

    def __init__(self, *, router_url: str) -> None:
        self.router_url = router_url

    async def execute_activity(
        self, call: ActivityCall, next: Callable[[ActivityCall], Awaitable[Any]]
    ) -> Any:
        if not (call.workflow_id.startswith(SHADOW_PREFIX) and call.defn.side_effects):
            return await next(call)
        return await answer(
            call.defn,
            call.data,
            workflow_id=call.workflow_id,
            step=call.step,
            attempt=call.attempt,
            router_url=self.router_url,
        )


def interceptor(settings: Settings) -> Interceptor:
    """The `bridge.interceptors` entry point: on in every worker, because a shadow run may
    reach any worker that serves its workflow, with or without `[migrate]` rules."""
    return ShadowAnswers(router_url=settings.router.url)


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


_plans: dict[str, Plan] = {}
_lock = threading.Lock()
_stores: dict[str, ShadowStore] = {}
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
    each worker's `[router] url`). Call it in a candidate's worker process whose settings
    do not name the router's database."""
    global _store_url
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        _store_url = url


def _store_for(router_url: str) -> ShadowStore:
    # Imported here: every worker loads this interceptor, most never see a shadow run.
    from bridge.migrate._shadow_store import ShadowStore

    with _lock:
        url = _store_url or router_url
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = ShadowStore(url)
        return store


def _plan(shadow_id: str, router_url: str) -> Plan:
    with _lock:
        plan = _plans.get(shadow_id)
    if plan is not None:
        return plan
    store = _store_for(router_url)
    plan = store.plan(shadow_id)
    if plan is None:
        raise ShadowAnswersMissingError(
            f"shadow run {shadow_id!r}: the shadow store {store.url} has no recorded answers "
            f"for it, so its activities cannot be answered (and are never executed); point "
            f"this worker at the router's database (`[router] url` in bridge.toml, "
            f"BRIDGE_ROUTER_URL, or bridge.migrate.shadow.use_store(url))"
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
    router_url: str,
) -> Any:
    """The primary's recorded result of this step, or its recorded failure raised."""
    plan = _plan(workflow_id, router_url)
    recorded = plan.steps.get(step)
    args = strip(unshadow(data, workflow_id, plan.workflow_id), plan.ignore)
    problem = _divergence(plan, step, defn.name, args)
    if problem is not None:
        raise ShadowDivergenceError(problem)
    assert recorded is not None
    if recorded.error is None:
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
