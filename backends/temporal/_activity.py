"""The one Temporal activity that runs every neutral activity, found by name.

Each attempt goes through `bridge._execute.run_attempt`, with the interceptor chain of the
worker's settings (`activity_for(chain)` makes the worker's activity), so an activity sees
the same
arguments, idempotency key (`"<workflow id>:<step>"`, the step read from the activity id)
and `bridge.activity_info()` as on the sql backend, and a declared timeout fails the attempt
with ActivityTimeoutError there as here.

Temporal retries attempts itself (the neutral RetryPolicy mapped onto Temporal's) but keeps
only the last failure. So each failed attempt heartbeats the list of failures so far, which
Temporal hands to the next attempt, and sends the list along as its failure's details: the
history then shows every failed attempt, as the sql journal does. While an attempt runs the
shim heartbeats on its own, so a worker that dies is noticed after the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from backends.temporal._context import failures_of, parse_activity_id
from backends.temporal._converter import decode_payload
from backends.temporal._permits import held_permit, take_token
from bridge._execute import error_info, is_retryable, run_attempt
from bridge._liveness import Liveness
from bridge.activity import ActivityDefinition, lookup_activity
from bridge.errors import NotRegisteredError, RetryAfter
from bridge.interceptors import Interceptor

__all__ = ["activity_for"]


class _KeepAlive:
    """Heartbeats the failures so far (and the activity's own last details, once it sent
    some) every `interval` seconds until cancelled: a timer, not a task, so an attempt that
    ends before its first beat (most do) costs next to nothing."""

    def __init__(self, interval: float, failures: list[dict[str, Any]]) -> None:
        self._interval = interval
        self._details: tuple[Any, ...] = (failures,)
        self._loop = asyncio.get_running_loop()
        # call_later copies the current context: the callback still knows its activity.
        self._context = contextvars.copy_context()
        self._handle = self._loop.call_later(interval, self._beat)

    def _beat(self) -> None:
        activity.heartbeat(*self._details)
        self._handle = self._loop.call_later(self._interval, self._beat)

    def user_beat(self, data: Any) -> None:
        """`bridge.heartbeat(data)`, maybe from a synchronous activity's thread: sent to
        Temporal at once (it throttles), and with every later keep-alive beat."""
        self._details = (self._details[0], {"heartbeat": data})
        self._loop.call_soon_threadsafe(
            lambda: activity.heartbeat(*self._details), context=self._context
        )

    def cancel(self) -> None:
        self._handle.cancel()


def previous_heartbeat(details: Sequence[Any]) -> Any:
    """The activity's own last heartbeat details from the previous attempt: the running
    beat it sent last (a worker that died), else the one kept with its failure."""
    if len(details) > 1 and isinstance(details[1], dict):
        return details[1].get("heartbeat")
    failures = failures_of(details)
    return failures[-1].get("heartbeat") if failures else None


def activity_for(interceptors: Sequence[Interceptor]) -> Callable[..., Awaitable[Any]]:
    """The dynamic Temporal activity of one worker, its attempts run through `interceptors`."""

    @activity.defn(dynamic=True)
    async def run_activity(args: Sequence[RawValue]) -> Any:
        """One attempt of the neutral activity named by the Temporal activity type."""
        return await _run(args, interceptors)

    return run_activity


async def _run(args: Sequence[RawValue], interceptors: Sequence[Interceptor]) -> Any:
    info = activity.info()
    try:
        defn = lookup_activity(info.activity_type)
    except NotRegisteredError as exc:
        # Another worker on the queue may have it: let the retry policy try again.
        raise ApplicationError(str(exc), type="NotRegisteredError") from None
    step, _kind = parse_activity_id(info.activity_id)
    data = decode_payload(args[0].payload, activity.payload_converter) if args else {}
    prior = failures_of(info.heartbeat_details)
    beat = (
        _KeepAlive(_beat_interval(info.heartbeat_timeout), prior)
        if info.heartbeat_timeout
        else None
    )
    live = Liveness(
        previous=previous_heartbeat(info.heartbeat_details),
        sink=beat.user_beat if beat is not None else None,
    )
    started = time.time()
    try:
        async with _permit(defn, data, info):
            if defn.rate_limit is not None:
                await _pace(defn, data)
            return await run_attempt(
                defn,
                data,
                workflow_id=info.workflow_id or "",
                step=step,
                attempt=info.attempt,
                interceptors=interceptors,
                liveness=live,
            )
    except Exception as exc:
        failure = {
            **error_info(exc),
            "attempt": info.attempt,
            "at": started,
            "duration": time.time() - started,
        }
        if live.beaten:
            failure["heartbeat"] = live.details
        failures = [*prior, failure]
        activity.heartbeat(failures)  # what the next attempt reads as heartbeat_details
        retryable = is_retryable(defn, exc)
        final = not retryable or defn.retry.exhausted(info.attempt)
        raise ApplicationError(
            failure["message"],
            failures,
            type=failure["error_type"],
            non_retryable=not retryable,
            # A RetryAfter's wait instead of the retry policy's backoff, as on every engine.
            next_retry_delay=timedelta(seconds=exc.seconds)
            if isinstance(exc, RetryAfter)
            else None,
            # An attempt that will be retried is logged at debug level, the last one as a
            # warning; formatting a traceback per retried attempt also slowed the retries.
            category=ApplicationErrorCategory.UNSPECIFIED
            if final
            else ApplicationErrorCategory.BENIGN,
        ) from None
    finally:
        if beat is not None:
            beat.cancel()


def _permit(
    defn: ActivityDefinition[..., Any], data: dict[str, Any], info: activity.Info
) -> contextlib.AbstractAsyncContextManager[None]:
    """The concurrency permit the attempt runs under (`bridge.Limit`), or nothing."""
    limit = defn.concurrency
    if limit is None:
        return contextlib.nullcontext()
    step, _ = parse_activity_id(info.activity_id)
    holder = f"{info.workflow_id}#{step}"
    return held_permit(limit.permit_key(defn.name, data), holder, limit.max)


async def _pace(defn: ActivityDefinition[..., Any], data: dict[str, Any]) -> None:
    """Wait for the attempt's slot of its rate limit (`bridge.RateLimit`)."""
    limit = defn.rate_limit
    assert limit is not None
    ready_at = await take_token(limit.bucket_key(defn.name, data), limit.per_second, limit.burst)
    if ready_at > time.time():
        await asyncio.sleep(ready_at - time.time())


def _beat_interval(timeout: timedelta) -> float:
    # Three beats per timeout: one lost or late heartbeat does not fail a live attempt.
    return max(timeout.total_seconds() / 3, 0.05)
