"""The interceptor chain (`bridge.interceptors`): order, pass-through, how factories build
it, and a code-registered interceptor that sees every activity attempt and the start of a
real run on the sql backend."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import bridge
from bridge import interceptors
from bridge.bus._journal_interceptor import OutboxPublisher
from bridge.config import Settings, load_settings
from bridge.interceptors import ActivityCall, Interceptor, StartCall, call_activity, call_start
from bridge.migrate._shadow_answer import ShadowAnswers
from bridge.tracing import TracingInterceptor
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(60)


class Tracer(Interceptor):
    """Notes when a call enters and leaves it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def execute_activity(
        self, call: ActivityCall, next: Callable[[ActivityCall], Awaitable[Any]]
    ) -> Any:
        self.log.append(f"{self.name} in")
        out = await next(call)
        self.log.append(f"{self.name} out")
        return out

    async def start_workflow(
        self, call: StartCall, next: Callable[[StartCall], Awaitable[bool]]
    ) -> bool:
        self.log.append(f"{self.name} start {call.id}")
        return await next(call)


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.01))
async def ic_flaky(x: int) -> int:
    if bridge.activity_info().attempt == 1:
        raise ConnectionError("first attempt fails")
    return x + 1


@bridge.activity
async def ic_double(x: int) -> int:
    return 2 * x


@bridge.workflow
async def ic_flow(ctx: bridge.Context, x: int) -> int:
    return await ctx.run(ic_double, await ctx.run(ic_flaky, x))


async def test_the_first_interceptor_is_outermost_and_the_base_passes_through() -> None:
    log: list[str] = []
    chain = (Tracer("a", log), Interceptor(), Tracer("b", log))
    call = ActivityCall(ic_double, {"x": 1}, "wf-1", 0, 1)

    async def attempt(c: ActivityCall) -> int:
        log.append(f"attempt {c.data}")
        return 42

    assert await call_activity(chain, call, attempt) == 42
    assert log == ["a in", "b in", "attempt {'x': 1}", "b out", "a out"]

    log.clear()

    async def start(c: StartCall) -> bool:
        log.append(f"backend start {c.id}")
        return True

    assert await call_start(chain, StartCall(ic_flow, {"x": 1}, "wf-2"), start) is True
    assert log == ["a start wf-2", "b start wf-2", "backend start wf-2"]
    # No chain: straight to the end.
    assert await call_activity((), call, attempt) == 42


def test_load_asks_every_factory_in_order_and_leaves_out_features_that_are_off() -> None:
    log: list[str] = []
    first, second = Tracer("first", log), Tracer("second", log)

    def on(settings: Settings) -> Interceptor:
        return first

    def only_with_outbox(settings: Settings) -> Interceptor | None:
        return second if settings.sql.outbox else None

    interceptors.register(on)
    interceptors.register(only_with_outbox)
    interceptors.register(on)  # registering twice keeps one
    try:
        plain = interceptors.load(load_settings({"backend": "sql"}))
        outbox = interceptors.load(load_settings({"backend": "sql", "sql": {"outbox": True}}))
    finally:
        interceptors.unregister(on)
        interceptors.unregister(only_with_outbox)
    # The installed entry points come first, by name (the outbox only when `[sql] outbox`
    # is set; shadow answers always; tracing with OpenTelemetry installed), then the
    # factories registered in code, in their order.
    assert [type(i) for i in plain] == [ShadowAnswers, TracingInterceptor, Tracer]
    assert plain[2] is first
    assert [type(i) for i in outbox] == [
        OutboxPublisher,
        ShadowAnswers,
        TracingInterceptor,
        Tracer,
        Tracer,
    ]
    assert outbox[3:] == (first, second)
    assert first not in interceptors.load(load_settings({"backend": "sql"}))  # unregistered


async def test_a_registered_interceptor_sees_every_attempt_and_the_start_on_sql(
    sql_settings: dict[str, Any],
) -> None:
    seen: list[tuple[str, str, int, int]] = []
    starts: list[tuple[str, dict[str, Any]]] = []

    class Seen(Interceptor):
        async def execute_activity(
            self, call: ActivityCall, next: Callable[[ActivityCall], Awaitable[Any]]
        ) -> Any:
            seen.append((call.workflow_id, call.defn.name, call.step, call.attempt))
            return await next(call)

        async def start_workflow(
            self, call: StartCall, next: Callable[[StartCall], Awaitable[bool]]
        ) -> bool:
            starts.append((call.id, call.args))
            return await next(call)

    def factory(settings: Settings) -> Interceptor:
        return Seen()

    interceptors.register(factory)
    try:
        async with await bridge.connect(sql_settings) as client, client.worker([ic_flow]):
            assert await client.execute(ic_flow, 4, id="ic-1", timeout=30) == 10
    finally:
        interceptors.unregister(factory)
    assert starts == [("ic-1", {"x": 4})]
    # Every attempt, the failed one included, in order; the retry is a second attempt.
    assert seen == [
        ("ic-1", "ic_flaky", 0, 1),
        ("ic-1", "ic_flaky", 0, 2),
        ("ic-1", "ic_double", 1, 1),
    ]


def test_the_bridges_own_interceptors_stay_when_plugin_autoload_is_off() -> None:
    """BRIDGE_DISABLE_PLUGIN_AUTOLOAD drops other packages' interceptors, but a worker must
    still answer shadow runs: without it their side effects would run for real."""
    code = (
        "from bridge import interceptors; from bridge.config import load_settings;"
        "print([type(i).__name__ for i in interceptors.load(load_settings())])"
    )
    env = {**os.environ, "BRIDGE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['ShadowAnswers',", "'TracingInterceptor']"]
