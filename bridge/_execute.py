"""One attempt of an activity: arguments decoded, idempotency key and info set, timeout kept.

Shared by every backend that runs activities itself (sql, langgraph) and by the Temporal
activity shim, so an activity sees the same inputs on every engine. Each attempt passes
through the caller's interceptor chain (`bridge.interceptors`), which is how features that
must see every attempt on every engine plug in without this module naming them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from bridge._liveness import Liveness, current_liveness
from bridge.activity import ActivityDefinition, ActivityInfo, _current_info
from bridge.errors import (
    ActivityHeartbeatTimeoutError,
    ActivityTimeoutError,
    RetryAfter,
    SerializationError,
)
from bridge.interceptors import ActivityCall, Interceptor, call_activity
from bridge.limits import check_payload

__all__ = ["error_info", "idempotency_key", "retry_delay", "run_attempt"]


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
    liveness: Liveness | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Call the activity once with decoded `data`, through `interceptors` (the chain of the
    worker that runs the attempt: `interceptors.load(settings)`); its result as
    JSON-compatible data. The chain is required, never defaulted: a caller that forgot it
    would silently skip features such as shadow mode, which must never run an effect.

    `liveness` carries the attempt's heartbeats: the engine passes one to hand the previous
    attempt's details in and to read this attempt's out (it keeps them with the failure).

    `headers` are the run's start headers (`StartCall.headers`), which the engine keeps
    with the run: tracing reads the caller's trace context from them."""
    call = ActivityCall(defn, data, workflow_id, step, attempt, headers or {})
    token = current_liveness().set(liveness if liveness is not None else Liveness())
    try:
        result = await call_activity(interceptors, call, _execute)
    finally:
        current_liveness().reset(token)
    check_payload(result, what=f"the result of activity {defn.name!r} (step {step})")
    return result


async def _execute(call: ActivityCall) -> Any:
    """The attempt itself, at the end of the chain."""
    defn = call.defn
    args, kwargs = defn.shape.decode_args(call.data)
    key = idempotency_key(call.workflow_id, call.step)
    if defn.wants_idempotency_key:
        kwargs["idempotency_key"] = key
    live = current_liveness().get() or Liveness()
    token = _current_info.set(
        ActivityInfo(
            workflow_id=call.workflow_id,
            activity=defn.name,
            step=call.step,
            attempt=call.attempt,
            idempotency_key=key,
            heartbeat_details=live.previous,
        )
    )
    try:
        if defn.is_async:
            running = defn.fn(*args, **kwargs)
        else:
            # A blocking activity must not stall the other workflows on this event loop.
            # It cannot be killed: on a timeout or a cancellation its thread is abandoned
            # (and told, through its next heartbeat) and the attempt ends here.
            running = asyncio.to_thread(defn.fn, *args, **kwargs)
        result = await _supervised(running, call, live)
    finally:
        _current_info.reset(token)
    return defn.shape.encode_result(result)


async def _supervised(running: Awaitable[Any], call: ActivityCall, live: Liveness) -> Any:
    """Await the attempt while its timeout and heartbeat timeout hold; cancel it (and tell
    a thread through `live`) when either passes or when this await is itself cancelled (its
    run was cancelled)."""
    defn = call.defn
    if defn.timeout is None and defn.heartbeat_timeout is None:
        try:
            return await running
        except asyncio.CancelledError:
            live.cancel()
            raise
    loop = asyncio.get_running_loop()
    deadline = None if defn.timeout is None else loop.time() + defn.timeout
    task = asyncio.ensure_future(running)
    try:
        while True:
            waits = []
            if deadline is not None:
                waits.append(deadline - loop.time())
            if defn.heartbeat_timeout is not None:
                waits.append(defn.heartbeat_timeout - live.silent_for())
            await asyncio.wait({task}, timeout=max(min(waits), 0))
            if task.done():
                return task.result()
            if deadline is not None and loop.time() >= deadline:
                raise ActivityTimeoutError(
                    f"attempt {call.attempt} overran the activity timeout of {defn.timeout}s"
                )
            if defn.heartbeat_timeout is not None and (live.silent_for() >= defn.heartbeat_timeout):
                raise ActivityHeartbeatTimeoutError(
                    f"attempt {call.attempt} sent no heartbeat for {defn.heartbeat_timeout}s "
                    f"(call bridge.heartbeat() more often than the heartbeat_timeout)"
                )
    finally:
        if not task.done():
            live.cancel()
            task.cancel()


def error_info(exc: BaseException) -> dict[str, Any]:
    """What is kept of an exception: its type name and message (never the object)."""
    return {"error_type": type(exc).__name__, "message": str(exc)}


def retry_delay(defn: ActivityDefinition[..., Any], attempt: int, exc: BaseException) -> float:
    """Seconds before the attempt after failed attempt `attempt`: what a RetryAfter asked
    for, else the retry policy's backoff."""
    return exc.seconds if isinstance(exc, RetryAfter) else defn.retry.delay(attempt)


def is_retryable(defn: ActivityDefinition[..., Any], exc: BaseException) -> bool:
    """A result that cannot be encoded is a bug in the activity: retrying cannot fix it."""
    return not isinstance(exc, SerializationError) and defn.retry.is_retryable(exc)
