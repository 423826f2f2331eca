"""The behaviour every backend must show, one test body for all of them."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

import bridge
from bridge.history import EventType
from bridge.workflow import WorkflowDefinition
from tests import ledger
from tests.conftest import ROOT, settings_env
from tests.wfs import Color, Order, Point, approval, order_roundtrip

# -- sequence -------------------------------------------------------------------------------
CALLS: list[str] = []


@bridge.activity
async def step(label: str) -> str:
    CALLS.append(label)
    return label.upper()


@bridge.workflow
async def sequence(ctx: bridge.Context, labels: list[str]) -> list[str]:
    return [await ctx.run(step, x) for x in labels]


async def test_sequence_runs_steps_in_order(client: bridge.Client) -> None:
    CALLS.clear()
    async with client.worker([sequence]):
        result = await client.execute(sequence, ["a", "b", "c"], id="seq-1", timeout=20)
    assert result == ["A", "B", "C"]
    assert CALLS == ["a", "b", "c"]
    history = await client.history("seq-1")
    assert bridge.history.step_sequence(history) == ["step", "step", "step"]
    assert history[0].type is EventType.WORKFLOW_STARTED
    assert history[-1].type is EventType.WORKFLOW_COMPLETED


# -- retry with backoff -----------------------------------------------------------------
ATTEMPT_TIMES: list[float] = []


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=5, initial_interval=0.1, backoff=3.0))
async def flaky() -> str:
    ATTEMPT_TIMES.append(time.monotonic())
    if len(ATTEMPT_TIMES) < 4:
        raise ConnectionError(f"attempt {len(ATTEMPT_TIMES)} failed")
    return "ok"


@bridge.workflow
async def retrying(ctx: bridge.Context) -> str:
    return await ctx.run(flaky)


async def test_retry_backoff_grows(client: bridge.Client) -> None:
    ATTEMPT_TIMES.clear()
    async with client.worker([retrying]):
        assert await client.execute(retrying, id="retry-1", timeout=20) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(ATTEMPT_TIMES)]
    assert len(gaps) == 3
    # Each wait honours the policy (0.1 s, 0.3 s, 0.9 s) and the waits grow; scheduling
    # jitter on a busy machine only ever lengthens a wait.
    assert [round(g, 2) >= d for g, d in zip(gaps, [0.1, 0.3, 0.9], strict=True)] == [True] * 3
    assert gaps[0] < gaps[1] < gaps[2], gaps
    failed = [e for e in await client.history("retry-1") if e.type is EventType.STEP_FAILED]
    assert [e.attempt for e in failed] == [1, 2, 3]
    assert all(e.error and e.error["error_type"] == "ConnectionError" for e in failed)


# -- non-retryable error ------------------------------------------------------------------
NON_RETRY_CALLS: list[int] = []


@bridge.activity(
    retry=bridge.RetryPolicy(max_attempts=5, initial_interval=0.01, non_retryable=[KeyError])
)
async def broken() -> str:
    NON_RETRY_CALLS.append(1)
    raise KeyError("no such customer")


@bridge.workflow
async def fails_fast(ctx: bridge.Context) -> str:
    try:
        return await ctx.run(broken)
    except bridge.ActivityError as exc:
        return (
            f"{exc.error_type} after {exc.attempts} attempt(s), non_retryable={exc.non_retryable}"
        )


async def test_non_retryable_error_fails_at_once(client: bridge.Client) -> None:
    NON_RETRY_CALLS.clear()
    async with client.worker([fails_fast]):
        result = await client.execute(fails_fast, id="nonretry-1", timeout=20)
    assert result == "KeyError after 1 attempt(s), non_retryable=True"
    assert NON_RETRY_CALLS == [1]


# -- timeout ------------------------------------------------------------------------------
SLOW_CALLS: list[int] = []


@bridge.activity(timeout=0.2, retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.01))
async def slow_then_fast() -> str:
    SLOW_CALLS.append(1)
    if len(SLOW_CALLS) == 1:
        await asyncio.sleep(5)
    return "fast enough"


@bridge.activity(timeout=0.1, retry=bridge.RetryPolicy(max_attempts=2, initial_interval=0.01))
async def always_slow() -> str:
    await asyncio.sleep(5)
    return "never"


@bridge.workflow
async def timeouts(ctx: bridge.Context) -> list[str]:
    first = await ctx.run(slow_then_fast)
    try:
        await ctx.run(always_slow)
    except bridge.ActivityError as exc:
        return [first, exc.error_type, str(exc.attempts)]
    return [first, "no timeout"]


async def test_timeout_fails_the_attempt_and_retries(client: bridge.Client) -> None:
    SLOW_CALLS.clear()
    started = time.monotonic()
    async with client.worker([timeouts]):
        result = await client.execute(timeouts, id="timeout-1", timeout=20)
    assert result == ["fast enough", "ActivityTimeoutError", "2"]
    assert len(SLOW_CALLS) == 2
    assert time.monotonic() - started < 4


# -- signals ------------------------------------------------------------------------------
async def test_signal_from_another_process(
    client: bridge.Client, settings: dict, ledger_path: str
) -> None:
    async with client.worker([approval]):
        handle = await client.start(approval, ledger_path, None, id="approval-1")
        for _ in range(500):
            if (await handle.describe()).status is bridge.Status.WAITING:
                break
            await asyncio.sleep(0.02)
        assert (await handle.describe()).waiting_for == "approve"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.cli",
            "signal",
            "approval-1",
            "approve",
            '"yes"',
            cwd=ROOT,
            env=settings_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert await handle.result(timeout=20) == "decided:yes"
    assert ledger.counts(ledger_path) == {"asked": 1, "decided:yes": 1}


async def test_signal_timeout_takes_the_other_path(client: bridge.Client, ledger_path: str) -> None:
    async with client.worker([approval]):
        result = await client.execute(approval, ledger_path, 0.3, id="approval-2", timeout=20)
    assert result == "timed-out"
    types = [e.type for e in await client.history("approval-2")]
    assert EventType.SIGNAL_TIMED_OUT in types


async def test_signal_sent_before_the_wait_is_kept(client: bridge.Client, ledger_path: str) -> None:
    handle = await client.start(approval, ledger_path, None, id="approval-3")
    await handle.signal("approve", "early")
    async with client.worker([approval]):
        assert await handle.result(timeout=20) == "decided:early"


# -- gather -------------------------------------------------------------------------------
@bridge.activity
async def slow_square(x: int) -> int:
    await asyncio.sleep(0.3)
    return x * x


@bridge.workflow
async def fan_out(ctx: bridge.Context, xs: list[int]) -> list[int]:
    return await ctx.gather(ctx.run(slow_square, x) for x in xs)


async def test_gather_runs_steps_concurrently(client: bridge.Client) -> None:
    async with client.worker([fan_out]):
        started = time.monotonic()
        result = await client.execute(fan_out, [1, 2, 3, 4, 5, 6], id="fan-1", timeout=20)
        elapsed = time.monotonic() - started
    assert result == [1, 4, 9, 16, 25, 36]
    assert elapsed < 1.5, f"six 0.3 s steps took {elapsed:.2f}s: not concurrent"
    assert len(bridge.history.step_sequence(await client.history("fan-1"))) == 6


# -- saga ---------------------------------------------------------------------------------
SAGA: list[str] = []


@bridge.activity
async def cancel_hotel(trip: str) -> None:
    SAGA.append(f"cancel_hotel:{trip}")


@bridge.activity
async def cancel_flight(trip: str) -> None:
    SAGA.append(f"cancel_flight:{trip}")


@bridge.activity(compensate=cancel_hotel)
async def book_hotel(trip: str) -> str:
    SAGA.append(f"book_hotel:{trip}")
    return "H1"


@bridge.activity(compensate=cancel_flight)
async def book_flight(trip: str) -> str:
    SAGA.append(f"book_flight:{trip}")
    return "F1"


@bridge.activity(retry=bridge.RetryPolicy(max_attempts=1))
async def charge(trip: str) -> str:
    SAGA.append(f"charge:{trip}")
    raise RuntimeError("card declined")


@bridge.workflow
async def trip_saga(ctx: bridge.Context, trip: str) -> str:
    try:
        await ctx.run(book_hotel, trip)
        await ctx.run(book_flight, trip)
        await ctx.run(charge, trip)
    except bridge.ActivityError as exc:
        await ctx.compensate()
        return f"rolled back: {exc.message}"
    return "booked"


async def test_saga_compensates_in_reverse_order(client: bridge.Client) -> None:
    SAGA.clear()
    async with client.worker([trip_saga]):
        result = await client.execute(trip_saga, "t1", id="saga-1", timeout=20)
    assert result == "rolled back: card declined"
    assert SAGA == [
        "book_hotel:t1",
        "book_flight:t1",
        "charge:t1",
        "cancel_flight:t1",
        "cancel_hotel:t1",
    ]
    types = [e.type for e in await client.history("saga-1")]
    assert types.count(EventType.COMPENSATION_COMPLETED) == 2


# -- idempotent start ---------------------------------------------------------------------
async def test_starting_an_existing_id_never_runs_it_twice(client: bridge.Client) -> None:
    CALLS.clear()
    first = await client.start(sequence, ["x"], id="idem-1")
    second = await client.start(sequence, ["x"], id="idem-1")
    assert first.created and not second.created
    async with client.worker([sequence]):
        assert await second.result(timeout=20) == ["X"]
    third = await client.start(sequence, ["x"], id="idem-1")
    assert not third.created
    assert await third.result(timeout=5) == ["X"]
    assert CALLS == ["x"]


# -- patched and non-determinism ----------------------------------------------------------
@bridge.activity
async def part(label: str) -> str:
    return label


async def _v1(ctx: bridge.Context) -> list[str]:
    a = await ctx.run(part, "a")
    await ctx.wait_for_signal("go")
    return [a, await ctx.run(part, "b")]


async def _v2_patched(ctx: bridge.Context) -> list[str]:
    out = [await ctx.run(part, "a")]
    if ctx.patched("add-c"):
        out.append(await ctx.run(part, "c"))
    await ctx.wait_for_signal("go")
    return [*out, await ctx.run(part, "b")]


async def _v2_unpatched(ctx: bridge.Context) -> list[str]:
    out = [await ctx.run(part, "a"), await ctx.run(part, "c")]
    await ctx.wait_for_signal("go")
    return [*out, await ctx.run(part, "b")]


V1 = WorkflowDefinition(_v1, name="versioned")
V2_PATCHED = WorkflowDefinition(_v2_patched, name="versioned")
V2_UNPATCHED = WorkflowDefinition(_v2_unpatched, name="versioned")


async def _park(client: bridge.Client, definition: WorkflowDefinition, id: str) -> None:
    async with client.worker([definition]):
        handle = await client.start(definition, id=id)
        for _ in range(500):
            if (await handle.describe()).status is bridge.Status.WAITING:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{id} never parked")


async def test_patched_keeps_old_runs_on_the_old_path(client: bridge.Client) -> None:
    await _park(client, V1, "old-run")
    async with client.worker([V2_PATCHED]):
        await _park(client, V2_PATCHED, "new-run")
        await client.signal("old-run", "go")
        await client.signal("new-run", "go")
        assert await client.result("old-run", timeout=20) == ["a", "b"]
        assert await client.result("new-run", timeout=20) == ["a", "c", "b"]


async def test_changed_workflow_raises_non_determinism(client: bridge.Client) -> None:
    await _park(client, V1, "nd-run")
    async with client.worker([V2_UNPATCHED]):
        await client.signal("nd-run", "go")
        with pytest.raises(bridge.WorkflowBlockedError) as info:
            await client.result("nd-run", timeout=20)
    desc = await client.describe("nd-run")
    assert desc.blocked and not desc.status.is_terminal
    message = (desc.error or {})["message"]
    # Both sides, as far as each engine can tell them: sql names the activity ("activity
    # 'part'"); Temporal's report says only that the code now schedules an activity.
    assert "step 1" in message and "signal 'go'" in message and "activity" in message
    assert "NonDeterminism" in (desc.error or {})["error_type"]
    assert "journal is kept" in str(info.value)
    # The journal is intact: the fixed (patched) code resumes the run where it was.
    async with client.worker([V2_PATCHED]):
        for _ in range(500):
            if not (await client.describe("nd-run")).blocked:
                break
            await asyncio.sleep(0.02)
        assert await client.result("nd-run", timeout=20) == ["a", "b"]


# -- the codec ----------------------------------------------------------------------------
async def test_rich_types_round_trip(client: bridge.Client) -> None:
    order = Order(
        id="o1",
        amount_cents=1250,
        placed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        color=Color.BLUE,
        where=Point(1, 2),
    )
    async with client.worker([order_roundtrip]):
        result = await client.execute(order_roundtrip, order, id="codec-1", timeout=20)
    assert result == order and isinstance(result, Order) and isinstance(result.where, Point)


class NotJson:
    pass


@bridge.activity
async def takes_anything(value: object) -> str:
    return "called"


@bridge.workflow
async def passes_bad_value(ctx: bridge.Context) -> str:
    return await ctx.run(takes_anything, NotJson())


async def test_unencodable_argument_fails_at_the_call_site(client: bridge.Client) -> None:
    with pytest.raises(bridge.SerializationError, match="parameter 'labels'"):
        await client.start(sequence, NotJson(), id="ser-1")
    with pytest.raises(bridge.WorkflowNotFoundError):
        await client.describe("ser-1")
    async with client.worker([passes_bad_value]):
        with pytest.raises(bridge.WorkflowFailedError, match="parameter 'value'"):
            await client.execute(passes_bad_value, id="ser-2", timeout=20)
    assert bridge.history.step_sequence(await client.history("ser-2")) == []


# -- cancellation -------------------------------------------------------------------------
async def test_cancelling_a_waiting_run_ends_it_cancelled(
    client: bridge.Client, ledger_path: str
) -> None:
    async with client.worker([approval]):
        handle = await client.start(approval, ledger_path, None, id="cancel-1")
        for _ in range(500):
            if (await handle.describe()).status is bridge.Status.WAITING:
                break
            await asyncio.sleep(0.02)
        await handle.cancel()
        with pytest.raises(bridge.WorkflowCancelledError):
            await handle.result(timeout=20)
    assert (await handle.describe()).status is bridge.Status.CANCELLED
    assert ledger.counts(ledger_path) == {"asked": 1}
