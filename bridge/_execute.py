"""One attempt of an activity: arguments decoded, idempotency key and info set, timeout kept.

Shared by every backend that runs activities itself (sql, langgraph) and by the Temporal
activity shim, so an activity sees the same inputs on every engine. Each attempt passes
through the caller's interceptor chain (`bridge.interceptors`), which is how features that
must see every attempt on every engine plug in without this module naming them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bridge.activity import ActivityDefinition, ActivityInfo, _current_info
from bridge.errors import ActivityTimeoutError, SerializationError
from bridge.interceptors import ActivityCall, Interceptor, call_activity
from bridge.limits import check_payload

__all__ = ["error_info", "idempotency_key", "run_attempt"]


def idempotency_key(workflow_id: str, step: int) -> str:
    """Stable across retries and replays: the run and the step, nothing time-dependent."""
    return f"{workflow_id}:{step}"


async def run_attempt(
    defn: ActivityDefinition[..., Any],
    data: dict[str, Any],
    *,
    workflow_id: str,
    step: int,
    attempt: int,
    interceptors: Sequence[Interceptor],
) -> Any:
    """Call the activity once with decoded `data`, through `interceptors` (the chain of the
    worker that runs the attempt: `interceptors.load(settings)`); its result as
    JSON-compatible data. The chain is required, never defaulted: a caller that forgot it
    would silently skip features such as shadow mode, which must never run an effect."""
    call = ActivityCall(defn, data, workflow_id, step, attempt)
    result = await call_activity(interceptors, call, _execute)
    check_payload(result, what=f"the result of activity {defn.name!r} (step {step})")
    return result


async def _execute(call: ActivityCall) -> Any:
    """The attempt itself, at the end of the chain."""
    defn = call.defn
    args, kwargs = defn.shape.decode_args(call.data)
    key = idempotency_key(call.workflow_id, call.step)
    if defn.wants_idempotency_key:
        kwargs["idempotency_key"] = key
    token = _current_info.set(
        ActivityInfo(
            workflow_id=call.workflow_id,
            activity=defn.name,
            step=call.step,
            attempt=call.attempt,
            idempotency_key=key,
        )
    )
    try:
        if defn.is_async:
            running = defn.fn(*args, **kwargs)
        else:
            # A blocking activity must not stall the other workflows on this event loop.
            # On timeout the thread cannot be killed; it is abandoned and the attempt failed.
            running = asyncio.to_thread(defn.fn, *args, **kwargs)
        if defn.timeout is None:
            result = await running
        else:
            try:
                result = await asyncio.wait_for(running, defn.timeout)
            except TimeoutError:
                raise ActivityTimeoutError(
                    f"attempt {call.attempt} overran the activity timeout of {defn.timeout}s"
                ) from None
    finally:
        _current_info.reset(token)
    return defn.shape.encode_result(result)


def error_info(exc: BaseException) -> dict[str, Any]:
    """What is kept of an exception: its type name and message (never the object)."""
    return {"error_type": type(exc).__name__, "message": str(exc)}


def is_retryable(defn: ActivityDefinition[..., Any], exc: BaseException) -> bool:
    """A result that cannot be encoded is a bug in the activity: retrying cannot fix it."""
    return not isinstance(exc, SerializationError) and defn.retry.is_retryable(exc)
