"""Spans on every engine: one per step attempt (a retried attempt is its own span) and one per
run, in the trace of whoever started the run (a caller's span, a parent run, a bus event),
none duplicated after a worker stops mid-run and another resumes it; a run started without
trace context in a trace derived from its id; log records with the attempt's ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bridge
from bridge.bus.envelope import Event
from bridge.bus.memory import MemoryTransport
from bridge.bus.triggers import Dispatcher
from bridge.tracing import JsonLogFormatter, LogContextFilter, run_span_context
from tests.core import tracing_wfs

_EXPORTER = InMemorySpanExporter()


class _WhileCollecting(SpanProcessor):
    """Exports finished spans to memory only while a test of this module collects them:
    the provider stays for the whole session (OpenTelemetry allows one), and later tests'
    spans must not pile up."""

    collecting = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.collecting:
            _EXPORTER.export([span])


_COLLECTOR = _WhileCollecting()
_WITH_COLLECTOR: set[int] = set()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider exporting to memory, emptied for each test."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if id(provider) not in _WITH_COLLECTOR:
        provider.add_span_processor(_COLLECTOR)
        _WITH_COLLECTOR.add(id(provider))
    _EXPORTER.clear()
    _COLLECTOR.collecting = True
    yield _EXPORTER
    _COLLECTOR.collecting = False
    _EXPORTER.clear()


def _named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name.startswith(prefix)]


def _unique(name: str, backend_name: str) -> str:
    # Temporal's dev server is shared by the session (and keeps closed runs' ids).
    return f"{name}-{backend_name}-{uuid.uuid4().hex[:8]}"


async def test_one_span_per_attempt_and_per_run_in_the_callers_trace_after_a_resume(
    settings: dict[str, Any], backend_name: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    gate = tmp_path / "gate"
    run_id = _unique("traced", backend_name)
    async with await bridge.connect(settings) as client:
        with trace.get_tracer("tests").start_as_current_span("caller") as caller:
            await client.start(tracing_wfs.traced, str(gate), id=run_id)
        async with client.worker([tracing_wfs.traced]):
            # The worker gets past the retried step into the gated one, then stops there.
            for _ in range(600):
                if any(
                    s.attributes["bridge.attempt"] == 2
                    for s in _named(spans, "RunActivity:tracing.fails_once")
                ):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the run never got past its retried step")
            await asyncio.sleep(0.3)
        gate.touch()
        async with client.worker([tracing_wfs.traced]):
            assert await client.result(run_id, timeout=60) == ["a", "b", "through"]

    finished = spans.get_finished_spans()
    steps = _named(spans, "RunActivity:")
    by_name: dict[str, list[ReadableSpan]] = {}
    for s in steps:
        by_name.setdefault(s.name, []).append(s)
    # Journaled steps are answered from the journal after the resume: no second span.
    assert len(by_name["RunActivity:tracing.plain"]) == 1
    # The failed first attempt and its retry are a span each, the failure recorded.
    attempts = sorted(
        s.attributes["bridge.attempt"] for s in by_name["RunActivity:tracing.fails_once"]
    )
    assert attempts == [1, 2]
    failed = next(
        s for s in by_name["RunActivity:tracing.fails_once"] if s.attributes["bridge.attempt"] == 1
    )
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert any(e.name == "exception" for e in failed.events)
    # The gated step: at least the attempt that finished after the resume.
    assert by_name["RunActivity:tracing.gated"][-1].status.status_code is not trace.StatusCode.ERROR
    # Every span of the run, before and after the resume, is in the caller's trace.
    caller_trace = caller.get_span_context().trace_id
    assert {s.context.trace_id for s in steps} == {caller_trace}
    for s in steps:
        assert s.attributes["bridge.workflow_id"] == run_id
        assert s.attributes["bridge.backend"] == backend_name
        assert isinstance(s.attributes["bridge.step"], int)
    start = [s for s in finished if s.name == "StartWorkflow:tracing.traced"]
    assert len(start) == 1
    assert start[0].parent is not None
    assert start[0].parent.span_id == caller.get_span_context().span_id
    assert start[0].attributes["bridge.created"] is True
    # One run span, whatever the crash and resume.
    runs = _named(spans, "RunWorkflow:tracing.traced")
    assert len(runs) == 1
    assert runs[0].context.trace_id == caller_trace
    assert runs[0].attributes["bridge.workflow_id"] == run_id
    assert runs[0].attributes["bridge.backend"] == backend_name


async def test_a_run_started_without_trace_context_is_in_its_derived_trace(
    settings: dict[str, Any], backend_name: str, spans: InMemorySpanExporter
) -> None:
    if backend_name == "temporal":
        pytest.skip(
            "Temporal's interceptor makes workflow spans only under a start's trace context; "
            "a run started without one has root attempt spans there"
        )
    run_id = _unique("untraced", backend_name)
    async with await bridge.connect({**settings, "tracing": {"enabled": False}}) as starter:
        await starter.start(tracing_wfs.child, "x", id=run_id)
    async with await bridge.connect(settings) as client, client.worker([tracing_wfs.child]):
        assert await client.result(run_id, timeout=60) == "child x"
    derived = run_span_context(run_id)
    (step,) = _named(spans, "RunActivity:")
    (run,) = _named(spans, "RunWorkflow:")
    assert step.context.trace_id == run.context.trace_id == derived.trace_id
    assert step.parent is not None and step.parent.span_id == derived.span_id
    assert not _named(spans, "StartWorkflow:")


async def test_a_childs_spans_are_in_its_parents_trace(
    settings: dict[str, Any], backend_name: str, spans: InMemorySpanExporter
) -> None:
    run_id = _unique("parent", backend_name)
    workflows = [tracing_wfs.parent, tracing_wfs.child]
    async with await bridge.connect(settings) as client:
        with trace.get_tracer("tests").start_as_current_span("caller") as caller:
            await client.start(tracing_wfs.parent, "p", id=run_id)
        async with client.worker(workflows):
            assert await client.result(run_id, timeout=60) == ["p", "child p"]
    caller_trace = caller.get_span_context().trace_id
    steps = _named(spans, "RunActivity:")
    assert len(steps) == 2
    assert {s.context.trace_id for s in steps} == {caller_trace}
    owners = {s.attributes["bridge.workflow_id"] for s in steps}
    assert run_id in owners and len(owners) == 2
    runs = _named(spans, "RunWorkflow:")
    assert sorted(s.name for s in runs) == [
        "RunWorkflow:tracing.child",
        "RunWorkflow:tracing.parent",
    ]
    assert {s.context.trace_id for s in runs} == {caller_trace}


async def test_a_run_an_event_starts_continues_the_events_trace(
    settings: dict[str, Any], backend_name: str, spans: InMemorySpanExporter
) -> None:
    transport = MemoryTransport()
    event_id = uuid.uuid4().hex[:8]
    trigger = bridge.on(
        "tracing.requested", tracing_wfs.from_event, id_from=lambda e: f"from-event-{e.id}"
    )
    async with await bridge.connect(settings) as client:
        dispatcher = Dispatcher(
            transport=transport, target=client, triggers=[trigger], poll_interval=0.01
        )
        async with dispatcher, client.worker([tracing_wfs.from_event]):
            with trace.get_tracer("tests").start_as_current_span("publisher") as publisher:
                await transport.publish(
                    Event.new("tracing.requested", {"label": "e"}, source="tests", id=event_id)
                )
            for _ in range(600):
                if _named(spans, "RunActivity:"):
                    break
                await asyncio.sleep(0.05)
            assert await client.result(f"from-event-{event_id}", timeout=60) == "e"
    published = publisher.get_span_context()
    (handled,) = _named(spans, "HandleEvent:tracing.requested")
    assert handled.parent is not None and handled.parent.span_id == published.span_id
    (start,) = _named(spans, "StartWorkflow:tracing.from_event")
    assert start.parent is not None and start.parent.span_id == handled.context.span_id
    (step,) = _named(spans, "RunActivity:")
    assert step.context.trace_id == published.trace_id


async def test_a_log_record_inside_an_attempt_carries_its_ids(
    settings: dict[str, Any], backend_name: str, spans: InMemorySpanExporter
) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger(tracing_wfs.LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    run_id = _unique("logged", backend_name)
    try:
        async with await bridge.connect(settings) as client:
            await client.start(tracing_wfs.logged, "here", id=run_id)
            async with client.worker([tracing_wfs.logged]):
                assert await client.result(run_id, timeout=60) == "here"
    finally:
        logger.removeHandler(handler)
    records: Sequence[dict[str, Any]] = [json.loads(line) for line in lines.getvalue().splitlines()]
    (record,) = [r for r in records if r["message"] == "inside here"]
    (step,) = _named(spans, "RunActivity:tracing.logs")
    assert record["workflow_id"] == run_id
    assert record["step"] == step.attributes["bridge.step"]
    assert record["attempt"] == 1
    assert record["trace_id"] == format(step.context.trace_id, "032x")
    assert record["span_id"] == format(step.context.span_id, "016x")
    assert record["level"] == "INFO" and record["logger"] == tracing_wfs.LOGGER


def test_log_context_outside_any_run_has_no_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    assert LogContextFilter().filter(record)
    assert record.workflow_id is None and record.trace_id is None  # type: ignore[attr-defined]
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "plain" and "workflow_id" not in line


def test_tracing_can_be_switched_off() -> None:
    from bridge.config import load_settings
    from bridge.tracing import interceptor

    assert interceptor(load_settings({"tracing": {"enabled": False}})) is None
    assert interceptor(load_settings({})) is not None
