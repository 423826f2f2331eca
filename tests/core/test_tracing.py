"""Spans on every engine: one per step attempt (a retried attempt is its own span), the
run's spans in one trace derived from its id, none duplicated after a worker stops mid-run
and another resumes it; a start span linked to the run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bridge
from bridge.tracing import run_span_context
from tests.core import tracing_wfs

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once: OpenTelemetry allows one) exporting to
    memory, emptied for each test."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


async def test_one_span_per_attempt_in_the_runs_trace_and_none_after_a_resume(
    settings: dict[str, Any], backend_name: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    gate = tmp_path / "gate"
    run_id = f"traced-{backend_name}"
    async with await bridge.connect(settings) as client:
        await client.start(tracing_wfs.traced, str(gate), id=run_id)
        async with client.worker([tracing_wfs.traced]):
            # The worker gets past the retried step into the gated one, then stops there.
            for _ in range(600):
                if any(
                    s.name == "RunActivity:tracing.fails_once"
                    and s.attributes["bridge.attempt"] == 2
                    for s in spans.get_finished_spans()
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
    steps = [s for s in finished if s.name.startswith("RunActivity:")]
    by_name: dict[str, list[Any]] = {}
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
    run_trace = run_span_context(run_id).trace_id
    assert {s.context.trace_id for s in steps} == {run_trace}
    for s in steps:
        assert s.attributes["bridge.workflow_id"] == run_id
        assert s.attributes["bridge.backend"] == backend_name
    start = [s for s in finished if s.name == "StartWorkflow:tracing.traced"]
    assert len(start) == 1
    assert [link.context.trace_id for link in start[0].links] == [run_trace]
    assert start[0].attributes["bridge.created"] is True


def test_tracing_can_be_switched_off() -> None:
    from bridge.config import load_settings
    from bridge.tracing import interceptor

    assert interceptor(load_settings({"tracing": {"enabled": False}})) is None
    assert interceptor(load_settings({})) is not None
