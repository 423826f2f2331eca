"""OpenTelemetry spans for starts, runs and step attempts on every engine, in the caller's
trace, and log records that carry the same ids.

An interceptor (`bridge.interceptors`), so the one piece of code sees the starts of every
client, the attempts of every worker and the ends of the embedded journals' runs, whichever
engine runs them: Temporal's activity shim, the sql and langgraph journals all call the
same `run_attempt`.

- `StartWorkflow:<workflow>` is a span of the caller's current trace, around the start. The
  start carries the trace context (W3C `traceparent`/`tracestate`) in its headers
  (`StartCall.headers`), which the engine keeps with the run: the journals as a row of the
  run's journal, Temporal as its own start header (read by Temporal's OpenTelemetry
  interceptor, which the temporal backend installs when this interceptor is loaded).
- `RunActivity:<activity>` is one span per attempt (workflow id, step, attempt, activity,
  backend as attributes; an error is recorded on the span), a child of the start span.
  Journaled steps are answered from the journal on replay without an attempt, so a crash
  and resume never duplicates a step's span, and a retried attempt is a span of its own.
  Where the engine already made the attempt's span under that name (Temporal's
  interceptor), the attributes and the error go on that span instead of a second one.
- `RunWorkflow:<workflow>` is one span per run. The journals emit it after the transaction
  that ended the run committed (`Interceptor.run_ended_committed`), from the run's start
  to its end: a run ends once, and a failed transaction emits nothing, so a crash and
  resume neither loses nor repeats it, and no span is ever left open across processes.
  On Temporal it is Temporal's own, made at the run's first workflow task and never on a
  replay (with no duration, Temporal's choice).
- A child run gets its parent's headers (the journals copy them when they create the
  child; Temporal's interceptor carries them itself), so its spans are in the same trace.
- A run with no trace context (started without this interceptor, by a schedule, before
  tracing existed) has its spans in a trace derived from its workflow id
  (`run_span_context`), the same in every process that touches it.
- The bus: events published inside a span carry its context as the CloudEvents
  distributed-tracing extensions `traceparent`/`tracestate` (`bridge.bus.envelope.traced`),
  completion events the run's own; a consumer handles each event as a `HandleEvent:<type>`
  span in the trace the event carries (`handling`), and a webhook in the trace of the
  request's `traceparent` (`continued`), so a run either starts or signals continues it.

Log records: `LogContextFilter` adds `workflow_id`, `step`, `attempt`, `trace_id` and
`span_id` to the records it sees, from the step attempt or workflow code that emits them;
`JsonLogFormatter` writes one JSON object per line with them (see `docs/architecture.md`).

The spans go to the application's tracer provider (`opentelemetry.trace`); with
`opentelemetry-api` absent or `[tracing] enabled = false` the interceptor is not loaded
and costs nothing, and without a configured provider no span is made.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.interceptors import ActivityCall, Interceptor, RunEnded, StartCall

if TYPE_CHECKING:
    from opentelemetry.context import Context as TraceContext
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import SpanContext, Tracer

    from bridge.config import Settings

__all__ = [
    "LOG_FIELDS",
    "TRACEPARENT",
    "TRACESTATE",
    "JsonLogFormatter",
    "LogContextFilter",
    "TracingInterceptor",
    "continued",
    "current_headers",
    "handling",
    "interceptor",
    "log_context",
    "run_span_context",
]

#: The W3C Trace Context header names, used as keys of start headers and as CloudEvents
#: extension names alike.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: What `LogContextFilter` adds to a log record.
LOG_FIELDS = ("workflow_id", "step", "attempt", "trace_id", "span_id")


def run_span_context(workflow_id: str) -> SpanContext:
    """The remote parent of the spans of a run without trace context: trace and span ids
    from the workflow id, so every process that touches the run puts its spans in the same
    trace."""
    from opentelemetry.trace import SpanContext, TraceFlags

    trace_id, span_id = _derived_ids(workflow_id)
    return SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def _derived_ids(workflow_id: str) -> tuple[int, int]:
    digest = hashlib.sha256(workflow_id.encode()).digest()
    return (int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1)


@functools.cache
def _propagator() -> TextMapPropagator | None:
    """W3C Trace Context's propagator, or None without OpenTelemetry (looked for once: the
    bus asks on every publish, and a failed import is not cached by Python)."""
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return TraceContextTextMapPropagator()


def current_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, and `tracestate` when it
    has one); empty outside a valid span, or without OpenTelemetry."""
    propagator = _propagator()
    carrier: dict[str, str] = {}
    if propagator is not None:
        propagator.inject(carrier)
    return carrier


def _headers_context(headers: Mapping[str, str]) -> TraceContext | None:
    """The trace context W3C `headers` carry, or None when they carry no valid one (or
    OpenTelemetry is not installed)."""
    parent = headers.get(TRACEPARENT)
    propagator = _propagator()
    if not parent or propagator is None:
        return None
    from opentelemetry.trace import get_current_span

    carrier = {TRACEPARENT: parent}
    if state := headers.get(TRACESTATE):
        carrier[TRACESTATE] = state
    found = propagator.extract(carrier)
    return found if get_current_span(found).get_span_context().is_valid else None


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Run the block in the trace that W3C `headers` carry (a bus event's extensions, an
    HTTP request's headers): spans and starts made inside belong to that trace. Without a
    valid `traceparent`, or without OpenTelemetry, the block runs as it is."""
    found = _headers_context(headers)
    if found is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(found)
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def handling(
    name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
) -> Iterator[None]:
    """Run the block as span `name` (kind CONSUMER) in the trace `headers` carry
    (`continued`): a bus consumer's handling of one event, so the run it starts or signals
    shows in the publisher's trace. No span without a configured tracer provider."""
    with continued(headers):
        if _propagator() is None or not _tracing_configured():
            yield
            return
        from opentelemetry.trace import SpanKind, get_tracer

        with get_tracer("durable-bridge").start_as_current_span(
            name, kind=SpanKind.CONSUMER, attributes=dict(attributes)
        ):
            yield


def _run_parent(workflow_id: str, headers: Mapping[str, str]) -> TraceContext:
    """The parent of a run's spans: the context its start carried, else the derived one."""
    found = _headers_context(headers)
    if found is not None:
        return found
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    return set_span_in_context(NonRecordingSpan(run_span_context(workflow_id)))


def _tracing_configured() -> bool:
    """False while no tracer provider is configured: every span would be dropped, so the
    hooks that every attempt and run pass skip the work."""
    from opentelemetry.trace import ProxyTracerProvider, get_tracer_provider

    return not isinstance(get_tracer_provider(), ProxyTracerProvider)


class TracingInterceptor(Interceptor):
    """Spans around starts, step attempts and runs (see the module's docstring)."""

    def __init__(self, tracer: Tracer, backend: str) -> None:
        self._tracer = tracer
        self._backend = backend

    async def start_workflow(
        self, call: StartCall, next: Callable[[StartCall], Awaitable[bool]]
    ) -> bool:
        from opentelemetry.trace import SpanKind

        with self._tracer.start_as_current_span(
            f"StartWorkflow:{call.workflow.name}",
            kind=SpanKind.CLIENT,
            attributes={
                "bridge.workflow_id": call.id,
                "bridge.workflow": call.workflow.name,
                "bridge.backend": self._backend,
            },
        ) as span:
            carried = current_headers()
            if carried:
                call = replace(call, headers={**call.headers, **carried})
            created = await next(call)
            span.set_attribute("bridge.created", created)
            return created

    async def execute_activity(
        self, call: ActivityCall, next: Callable[[ActivityCall], Awaitable[Any]]
    ) -> Any:
        from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span

        if not _tracing_configured():
            return await next(call)
        name = f"RunActivity:{call.defn.name}"
        attributes = {
            "bridge.workflow_id": call.workflow_id,
            "bridge.activity": call.defn.name,
            "bridge.step": call.step,
            "bridge.attempt": call.attempt,
            "bridge.backend": self._backend,
        }
        engines = get_current_span()
        if engines.is_recording() and getattr(engines, "name", None) == name:
            # The engine made this attempt's span (Temporal's interceptor, in the caller's
            # trace already): one span per attempt, with our attributes and error.
            engines.set_attributes(attributes)
            try:
                return await next(call)
            except Exception as exc:
                engines.record_exception(exc)
                engines.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
        with self._tracer.start_as_current_span(
            name,
            context=_run_parent(call.workflow_id, call.headers),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        ):
            return await next(call)

    def run_ended_committed(self, ended: RunEnded) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        if not _tracing_configured():
            return
        span = self._tracer.start_span(
            f"RunWorkflow:{ended.workflow}",
            context=_run_parent(ended.workflow_id, ended.headers),
            kind=SpanKind.SERVER,
            attributes={
                "bridge.workflow_id": ended.workflow_id,
                "bridge.workflow": ended.workflow,
                "bridge.backend": ended.engine,
                "bridge.status": ended.status.value,
            },
            start_time=None if ended.started_at is None else int(ended.started_at * 1e9),
        )
        if ended.status.value != "COMPLETED":
            error = ended.error or {}
            span.set_status(
                Status(
                    StatusCode.ERROR,
                    f"{error.get('error_type', ended.status.value)}: {error.get('message', '')}",
                )
            )
        span.end()


def log_context() -> dict[str, Any]:
    """The ids of what is running here: `workflow_id`, `step` and `attempt` of the step
    attempt (or `workflow_id` in workflow code), `trace_id` and `span_id` (hex) of the
    current span, else of the run's trace; None where unknown."""
    from bridge.activity import _current_info
    from bridge.workflow import _current_context

    info, run = _current_info.get(), _current_context.get()
    out: dict[str, Any] = dict.fromkeys(LOG_FIELDS)
    if info is not None:
        out.update(workflow_id=info.workflow_id, step=info.step, attempt=info.attempt)
    elif run is not None:
        out["workflow_id"] = run.workflow_id
    ids = _current_span_ids()
    if ids is None and out["workflow_id"] is not None:
        ids = _run_ids(out["workflow_id"], getattr(run, "headers", None) or {})
    if ids is not None:
        out["trace_id"], out["span_id"] = ids
    return out


def _current_span_ids() -> tuple[str, str] | None:
    if _propagator() is None:
        return None  # no OpenTelemetry
    from opentelemetry.trace import get_current_span

    found = get_current_span().get_span_context()
    if not found.is_valid:
        return None
    return format(found.trace_id, "032x"), format(found.span_id, "016x")


def _run_ids(workflow_id: str, headers: Mapping[str, str]) -> tuple[str, str]:
    """The trace and parent span ids of a run's spans, read from its `traceparent`
    (`00-<trace id>-<span id>-<flags>`) or derived from its id (`run_span_context`)."""
    parts = headers.get(TRACEPARENT, "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        return parts[1], parts[2]
    trace_id, span_id = _derived_ids(workflow_id)
    return format(trace_id, "032x"), format(span_id, "016x")


class LogContextFilter(logging.Filter):
    """Adds `log_context()` (workflow id, step, attempt, trace and span ids) to each record,
    so a format string can name them (`%(workflow_id)s`) and log lines join the spans of
    the same attempt. Install it on a handler, which sees the records of every logger:
    `handler.addFilter(bridge.tracing.LogContextFilter())`. A value the record already has
    (passed with `extra=`) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in log_context().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the ids of
    `log_context()` that are known, and the traceback when there is one. The ids come from
    the record (a `LogContextFilter` set them) or, when it has none, from where the record
    is formatted, which is where it was emitted for the usual synchronous handlers."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = (
            {key: getattr(record, key) for key in LOG_FIELDS}
            if all(hasattr(record, key) for key in LOG_FIELDS)
            else log_context()
        )
        out.update((key, value) for key, value in ids.items() if value is not None)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


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
