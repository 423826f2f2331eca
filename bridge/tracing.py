"""OpenTelemetry spans for every start and every step attempt, on every engine.

An interceptor (`bridge.interceptors`), so the one piece of code sees the starts of every
client and the attempts of every worker, whichever engine runs them: Temporal's activity
shim, the sql and langgraph journals all call the same `run_attempt`.

- `StartWorkflow:<workflow>` is a span of the caller's current trace, around the start.
- `RunActivity:<activity>` is one span per attempt (workflow id, step, attempt, activity,
  backend as attributes; an error is recorded on the span). Journaled steps are answered
  from the journal on replay without an attempt, so a crash and resume never duplicates a
  step's span, and a retried attempt is a span of its own.

Every span of one run belongs to one trace whose id is derived from the workflow id
(SHA-256), with the run as a remote parent, so the attempts of a run are one trace across
worker processes, crashes and engines without a header channel to carry context; the
start span links to it. The caller's own trace context is not carried into the run yet.

The spans go to the application's tracer provider (`opentelemetry.trace`); with
`opentelemetry-api` absent or `[tracing] enabled = false` the interceptor is not loaded
and costs nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bridge.interceptors import ActivityCall, Interceptor, StartCall

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext, Tracer

    from bridge.config import Settings

__all__ = ["TracingInterceptor", "interceptor", "run_span_context"]


def run_span_context(workflow_id: str) -> SpanContext:
    """The remote parent of a run's spans: trace and span ids from the workflow id, so
    every process that touches the run puts its spans in the same trace."""
    from opentelemetry.trace import SpanContext, TraceFlags

    digest = hashlib.sha256(workflow_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


class TracingInterceptor(Interceptor):
    """Spans around starts and step attempts (see the module's docstring)."""

    def __init__(self, tracer: Tracer, backend: str) -> None:
        self._tracer = tracer
        self._backend = backend

    async def start_workflow(
        self, call: StartCall, next: Callable[[StartCall], Awaitable[bool]]
    ) -> bool:
        from opentelemetry.trace import Link, SpanKind

        with self._tracer.start_as_current_span(
            f"StartWorkflow:{call.workflow.name}",
            kind=SpanKind.CLIENT,
            attributes={
                "bridge.workflow_id": call.id,
                "bridge.workflow": call.workflow.name,
                "bridge.backend": self._backend,
            },
            links=[Link(run_span_context(call.id))],
        ) as span:
            created = await next(call)
            span.set_attribute("bridge.created", created)
            return created

    async def execute_activity(
        self, call: ActivityCall, next: Callable[[ActivityCall], Awaitable[Any]]
    ) -> Any:
        from opentelemetry.trace import (
            NonRecordingSpan,
            ProxyTracerProvider,
            SpanKind,
            get_tracer_provider,
            set_span_in_context,
        )

        if isinstance(get_tracer_provider(), ProxyTracerProvider):
            # No provider configured (yet): every span would be dropped; skip the work, as
            # every step of every run passes here.
            return await next(call)
        parent = set_span_in_context(NonRecordingSpan(run_span_context(call.workflow_id)))
        with self._tracer.start_as_current_span(
            f"RunActivity:{call.defn.name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={
                "bridge.workflow_id": call.workflow_id,
                "bridge.activity": call.defn.name,
                "bridge.step": call.step,
                "bridge.attempt": call.attempt,
                "bridge.backend": self._backend,
            },
        ):
            return await next(call)


def interceptor(settings: Settings) -> Interceptor | None:
    """The `tracing` entry point of `bridge.interceptors`: on when OpenTelemetry's API is
    installed, unless `[tracing] enabled = false`."""
    if settings.tracing.enabled is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        if settings.tracing.enabled:
            from bridge.errors import ConfigError

            raise ConfigError(
                "[tracing] enabled = true needs OpenTelemetry: pip install "
                "'durable-bridge[tracing]' (or opentelemetry-api and a configured SDK)"
            ) from None
        return None
    return TracingInterceptor(trace.get_tracer(settings.tracing.tracer), settings.backend)
