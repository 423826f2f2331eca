"""The Agents SDK's tracing inside durable workflows: set up outside sandboxes, replay-safe.

Two problems, each fixed at its root:

1. **Set-up in a sandbox.** The SDK makes its trace provider lazily, on first use: the
   default provider with the default processor, whose exporter builds an HTTP client. In
   Temporal's workflow sandbox that first use is workflow code, and building the client
   calls what the sandbox refuses (`platform.system`), so every agent run failed its
   workflow task unless the workflow module called `set_tracing_disabled(True)` first
   (which happened to make the provider at import, outside the sandbox). `prepare_tracing()`
   makes the provider where a worker starts, so workflow code only ever finds it made.
2. **Replays.** Workflow code runs again on every replay, and so do the spans the SDK
   starts in it (the run's trace, agent, tool and handoff spans). `prepare_tracing()` puts a
   guard in front of the user's processors that drops every callback made while the
   workflow context is replaying (`bridge.Context.is_replaying`), and gives spans made in
   workflow code ids drawn from a generator seeded by the run, so a replay makes the same
   ids as the first execution: a span begun before a crash and ended after it reaches the
   processors as one span, its start from the first execution and its end from the last.

The idea is temporalio's (`temporalio.openai_agents._temporal_trace_provider`): a provider
subclass whose multi-processor skips callbacks in replay and whose ids come from the
workflow's random. Its code is not reused because it asks `temporalio.workflow` (the sql
and langgraph engines replay without Temporal), draws ids from the workflow's own random
(here a separate generator, so turning tracing on or off never changes what `ctx.uuid()`
or `ctx.random()` return), stamps spans with the workflow clock (spans of replays are not
exported, so wall-clock times are right for live ones), and drops the set-disabled flags
of the provider it replaces (kept here).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import uuid
import weakref
from typing import Any

from agents import set_trace_provider
from agents.tracing import Span, Trace, TracingProcessor, get_trace_provider
from agents.tracing.provider import DefaultTraceProvider, SynchronousMultiTracingProcessor

from adapters.openai_agents._context import workflow_context
from bridge.workflow import Context

__all__ = ["ReplaySafeProcessor", "ReplaySafeTraceProvider", "prepare_tracing"]

log = logging.getLogger("bridge.openai_agents")


def _replaying() -> bool:
    ctx = workflow_context()
    return ctx is not None and ctx.is_replaying


class ReplaySafeProcessor(SynchronousMultiTracingProcessor):
    """The provider's processors, skipped while the workflow context is replaying.

    It stands where the provider keeps its multi-processor, so processors the user adds or
    sets later (`add_trace_processor`, `set_trace_processors`) land behind the guard too.
    Each callback is decided when it happens, as in temporalio: a span started in a replay
    and ended live reports its end (its start was reported by the execution that ran first).
    """

    def __init__(self, inner: SynchronousMultiTracingProcessor) -> None:
        super().__init__()
        self.inner = inner

    def add_tracing_processor(self, tracing_processor: TracingProcessor) -> None:
        self.inner.add_tracing_processor(tracing_processor)

    def set_processors(self, processors: list[TracingProcessor]) -> None:
        self.inner.set_processors(processors)

    def on_trace_start(self, trace: Trace) -> None:
        if not _replaying():
            self.inner.on_trace_start(trace)

    def on_trace_end(self, trace: Trace) -> None:
        if not _replaying():
            self.inner.on_trace_end(trace)

    def on_span_start(self, span: Span[Any]) -> None:
        if not _replaying():
            self.inner.on_span_start(span)

    def on_span_end(self, span: Span[Any]) -> None:
        if not _replaying():
            self.inner.on_span_end(span)

    def shutdown(self, timeout: float | None = None) -> None:
        self.inner.shutdown(timeout)

    def force_flush(self) -> None:
        self.inner.force_flush()


class ReplaySafeTraceProvider(DefaultTraceProvider):
    """The SDK's default provider with the replay guard and replay-stable ids in workflows."""

    def __init__(self, previous: DefaultTraceProvider) -> None:
        super().__init__()
        inner = previous._multi_processor
        self._multi_processor = (
            inner if isinstance(inner, ReplaySafeProcessor) else ReplaySafeProcessor(inner)
        )
        # What set_tracing_disabled (or the environment) decided stays decided.
        self._env_disabled = previous._env_disabled
        self._manual_disabled = previous._manual_disabled
        self._disabled = previous._disabled
        # One id generator per workflow execution; the Context is the execution (a replay
        # builds a new one), so the generator starts over exactly when the code does.
        self._ids: weakref.WeakKeyDictionary[Context, random.Random] = weakref.WeakKeyDictionary()
        self._ids_lock = threading.Lock()

    def _workflow_hex(self, digits: int) -> str | None:
        ctx = workflow_context()
        if ctx is None:
            return None
        with self._ids_lock:
            rng = self._ids.get(ctx)
            if rng is None:
                # The run's start differs between runs that reuse a workflow id, and
                # ctx.now() is replay-safe: the same on every execution of one run.
                seed = f"{ctx.workflow_id}\0{ctx.now().isoformat()}\0agents-tracing"
                rng = self._ids[ctx] = random.Random(hashlib.sha256(seed.encode()).digest())
            return uuid.UUID(int=rng.getrandbits(128), version=4).hex[:digits]

    def gen_trace_id(self) -> str:
        found = self._workflow_hex(32)
        return f"trace_{found}" if found is not None else super().gen_trace_id()

    def gen_span_id(self) -> str:
        found = self._workflow_hex(24)
        return f"span_{found}" if found is not None else super().gen_span_id()

    def gen_group_id(self) -> str:
        found = self._workflow_hex(24)
        return f"group_{found}" if found is not None else super().gen_group_id()


_prepare_lock = threading.Lock()


def prepare_tracing() -> None:
    """Set up the SDK's tracing here, and make it replay-safe; call where a worker starts.

    Call it outside any workflow sandbox (the lead's install hook runs it when a worker
    starts), before workflow code first traces: it makes the SDK's provider and default
    processor now, so Temporal's sandbox never meets their lazy set-up, and installs
    `ReplaySafeTraceProvider` in place of the default provider. Idempotent. A provider of
    the user's own (set with `set_trace_provider`, not a `DefaultTraceProvider`) is left
    as it is: its spans are its business, and a debug line says it is not guarded.
    """
    with _prepare_lock:
        provider = get_trace_provider()  # the lazy set-up, here, outside any sandbox
        if isinstance(provider, ReplaySafeTraceProvider):
            return
        if type(provider) is not DefaultTraceProvider:
            log.debug(
                "trace provider %s is the application's own: spans of replayed workflow "
                "code reach its processors again",
                type(provider).__name__,
            )
            return
        set_trace_provider(ReplaySafeTraceProvider(provider))
