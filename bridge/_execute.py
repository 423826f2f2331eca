"""One attempt of an activity: arguments decoded, idempotency key and info set, timeout kept.

Shared by every backend that runs activities itself (sql, langgraph) and by the Temporal
activity shim, so an activity sees the same inputs on every engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.activity import ActivityDefinition, ActivityInfo, _current_info
from bridge.errors import ActivityTimeoutError, SerializationError

__all__ = ["SHADOW_PREFIX", "error_info", "idempotency_key", "run_attempt"]

#: Workflow ids of the migration router's shadow runs (`bridge.bus.shadow`) start with this;
#: the prefix is reserved. Their attempts are answered from the primary run's recorded
#: results and never execute the activity, in whichever process or engine runs them.
SHADOW_PREFIX = "shadow:"


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
) -> Any:
    """Call the activity once with decoded `data`; its result as JSON-compatible data."""
    if workflow_id.startswith(SHADOW_PREFIX) and defn.side_effects:
        # The one hook of shadow mode: every backend runs activities through here, so no
        # engine can run a shadow run's side effect (activities declared side_effects=False
        # run for real). Imported here: only shadow runs need it.
        from bridge.bus._shadow_answer import answer

        return await answer(defn, data, workflow_id=workflow_id, step=step, attempt=attempt)
    args, kwargs = defn.shape.decode_args(data)
    key = idempotency_key(workflow_id, step)
    if defn.wants_idempotency_key:
        kwargs["idempotency_key"] = key
    token = _current_info.set(
        ActivityInfo(
            workflow_id=workflow_id,
            activity=defn.name,
            step=step,
            attempt=attempt,
            idempotency_key=key,
        )
    )
    try:
        if defn.is_async:
            call = defn.fn(*args, **kwargs)
        else:
            # A blocking activity must not stall the other workflows on this event loop.
            # On timeout the thread cannot be killed; it is abandoned and the attempt failed.
            call = asyncio.to_thread(defn.fn, *args, **kwargs)
        if defn.timeout is None:
            result = await call
        else:
            try:
                result = await asyncio.wait_for(call, defn.timeout)
            except TimeoutError:
                raise ActivityTimeoutError(
                    f"attempt {attempt} overran the activity timeout of {defn.timeout}s"
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
