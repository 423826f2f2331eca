"""The names a backend may declare in `Backend.capabilities`, and what each one promises.

A backend lists what it supports; the conformance suite marks each scenario with what it
needs (`@pytest.mark.requires("signals")`), and a scenario whose capability the backend under
test does not declare is skipped and reported as "skipped by capability", never as passed.
Behaviour every backend must have (ordered steps, retries with backoff, timeouts,
non-retryable errors, the codec, the agent loop) is not a capability: it always runs.
Unknown names are errors, because a typo would silently turn a scenario into a skip.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.errors import ConfigError

__all__ = ["CAPABILITIES", "lacking", "validate"]

CAPABILITIES: dict[str, str] = {
    "signals": "deliver a signal to a waiting run (and keep one sent before the wait)",
    "signal_timeout": "a signal wait with a timeout returns None when it passes",
    "durable_sleep": "a timer survives the worker that armed it",
    "gather": "ctx.gather runs steps concurrently",
    "patched": "ctx.patched keeps runs started on old code on the old path",
    "compensation": "ctx.compensate runs the compensations newest first",
    "cancellation": "cancelling a waiting run ends it CANCELLED",
    "idempotent_start": "starting an existing id never runs it twice",
    "non_determinism_detection": "changed workflow code blocks the run, keeping its journal",
    "crash_resume": "a SIGKILLed worker's run resumes elsewhere without repeating a step",
    "multi_worker": "several workers (processes) serve one store",
    "history_export": "client.history returns the neutral event history",
    "replay": "Backend.replay checks a recorded native history against current code",
    "queries": "client.query reads a run's state through its query handlers, changing nothing",
    "updates": "client.update changes a run through its update handlers, exactly once per "
    "update id, and a validator's refusal journals nothing",
    "wait_condition": "ctx.wait_condition and waiting for the first of several signals",
    "continue_as_new": "ctx.continue_as_new continues the same id with a fresh history",
    "child_workflows": "ctx.execute_child / ctx.start_child run a child on the same engine, "
    "its result or ChildWorkflowError in the parent, its parent-close policy applied",
    "execution_timeout": "client.start(..., execution_timeout=) cancels a run past its deadline "
    "(it may compensate) and fails it with WorkflowTimeoutError",
    "heartbeats": "a silent attempt fails after its heartbeat_timeout and is retried with its "
    "last heartbeat details; a running activity hears of its run's cancellation within ~1 s",
}


def validate(names: Iterable[str], *, where: str) -> frozenset[str]:
    """`names` as a frozenset, or a ConfigError naming `where` and the unknown ones."""
    chosen = frozenset(names)
    unknown = sorted(chosen - CAPABILITIES.keys())
    if unknown:
        raise ConfigError(
            f"{where}: unknown capability {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(CAPABILITIES))}"
        )
    return chosen


def lacking(declared: Iterable[str], required: Iterable[str]) -> list[str]:
    """The required capabilities a backend does not declare, sorted."""
    return sorted(frozenset(required) - frozenset(declared))
