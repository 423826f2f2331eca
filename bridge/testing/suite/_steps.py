"""Scenarios about steps: order, retries, errors, timeouts, fan-out, sagas, start, codec."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

import bridge
from bridge.history import EventType
from bridge.testing import _workflows as wf
from bridge.testing.faults import FaultPlan
from bridge.testing.ledger import Ledger
from bridge.testing.scenario import new_id, result_of, times

__all__ = [
    "test_codec_round_trip",
    "test_gather",
    "test_idempotent_start",
    "test_non_retryable_error",
    "test_retry_with_backoff",
    "test_saga_compensation",
    "test_sequence",
    "test_timeout",
]


@pytest.mark.asyncio
async def test_sequence(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """Steps run in order, each once, and the history shows them as steps."""
    run = new_id("seq")
    labels = ["reserve", "charge", "ship"]
    result = await bridge_client.execute(
        wf.sequence, str(bridge_ledger.path), labels, id=run, timeout=30
    )
    assert result == ["RESERVE", "CHARGE", "SHIP"], f"sequence: result {result!r}"
    ran = [e.activity for e in bridge_ledger.entries()]
    assert ran == labels, f"sequence: steps ran as {ran}, expected {labels}"
    if "history_export" in bridge_client.backend.capabilities:
        history = await bridge_client.history(run)
        steps = bridge.history.step_sequence(history)
        assert steps == ["conformance.step"] * 3, f"sequence: history has steps {steps}"
        assert history[0].type is EventType.WORKFLOW_STARTED, "sequence: history's first event"
        assert history[-1].type is EventType.WORKFLOW_COMPLETED, "sequence: history's last event"


@pytest.mark.asyncio
async def test_retry_with_backoff(
    bridge_client: bridge.Client,
    bridge_worker: bridge.Worker,
    bridge_ledger: Ledger,
    bridge_faults: FaultPlan,
) -> None:
    """A failing attempt is retried after the policy's delay, and the delays grow."""
    run = new_id("retry")
    bridge_faults.fail("flaky", attempts=[1, 2, 3], error="ConnectionError")
    result = await bridge_client.execute(
        wf.retrying, str(bridge_ledger.path), str(bridge_faults), id=run, timeout=30
    )
    assert result == "ok", f"retry with backoff: result {result!r}"
    at = [e.at for e in bridge_ledger.entries()]
    assert len(at) == 4, f"retry with backoff: {len(at)} attempts, expected 4 (3 failures)"
    gaps = [b - a for a, b in itertools.pairwise(at)]
    wanted = [wf.BACKOFF.delay(n) for n in (1, 2, 3)]
    # Scheduling only ever lengthens a wait; a wait shorter than the policy's is a bug.
    short = [
        f"wait {n} was {g:.3f}s, policy says {d:.3f}s"
        for n, (g, d) in enumerate(zip(gaps, wanted, strict=True), start=1)
        if g < d - 0.005  # 5 ms for clock reads and float rounding (0.1 * 3 > 0.3)
    ]
    assert not short, f"retry with backoff: {'; '.join(short)}"
    assert gaps[0] < gaps[1] < gaps[2], f"retry with backoff: waits did not grow: {gaps}"
    if "history_export" in bridge_client.backend.capabilities:
        failed = [e for e in await bridge_client.history(run) if e.type is EventType.STEP_FAILED]
        attempts = [e.attempt for e in failed]
        assert attempts == [1, 2, 3], f"retry with backoff: failed attempts in history {attempts}"


@pytest.mark.asyncio
async def test_non_retryable_error(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """An error listed as non-retryable fails the step at its first attempt."""
    run = new_id("nonretry")
    result = await bridge_client.execute(wf.fails_fast, str(bridge_ledger.path), id=run, timeout=30)
    expected = "KeyError after 1 attempt(s), non_retryable=True"
    assert result == expected, (
        f"non-retryable error: workflow saw {result!r}, expected {expected!r}"
    )
    n = bridge_ledger.counts_by_activity()["lookup_customer"]
    assert n == 1, f"non-retryable error: the activity ran {times(n)}, expected once"


@pytest.mark.asyncio
async def test_timeout(
    bridge_client: bridge.Client,
    bridge_worker: bridge.Worker,
    bridge_ledger: Ledger,
    bridge_faults: FaultPlan,
) -> None:
    """An attempt past its timeout fails as ActivityTimeoutError and is retried."""
    run = new_id("timeout")
    bridge_faults.hang("slow_then_fast", seconds=5, attempts=[1])
    started = time.monotonic()
    result = await bridge_client.execute(
        wf.timeouts, str(bridge_ledger.path), str(bridge_faults), id=run, timeout=30
    )
    elapsed = time.monotonic() - started
    expected = ["fast enough", "ActivityTimeoutError", "2"]
    assert result == expected, f"timeout: result {result!r}, expected {expected!r}"
    n = bridge_ledger.counts_by_activity()["slow_then_fast"]
    assert n == 2, f"timeout: the timed-out step ran {times(n)}, expected 2 (one retry)"
    assert elapsed < 4, f"timeout: took {elapsed:.1f}s; a 0.2 s timeout did not cut a 5 s attempt"


@pytest.mark.asyncio
@pytest.mark.requires("gather")
async def test_gather(bridge_client: bridge.Client, bridge_worker: bridge.Worker) -> None:
    """ctx.gather runs its steps concurrently and returns results by position."""
    run = new_id("fan")
    started = time.monotonic()
    result = await bridge_client.execute(wf.fan_out, [1, 2, 3, 4, 5, 6], id=run, timeout=30)
    elapsed = time.monotonic() - started
    assert result == [1, 4, 9, 16, 25, 36], f"gather: result {result!r}"
    assert elapsed < 1.5, f"gather: six 0.3 s steps took {elapsed:.2f}s, so they ran one by one"


@pytest.mark.asyncio
@pytest.mark.requires("compensation")
async def test_saga_compensation(
    bridge_client: bridge.Client, bridge_worker: bridge.Worker, bridge_ledger: Ledger
) -> None:
    """A failed step rolls back the completed ones, newest first, each once."""
    run = new_id("saga")
    result = await bridge_client.execute(
        wf.trip_saga, str(bridge_ledger.path), "t1", id=run, timeout=30
    )
    assert result == "rolled back: card declined", f"saga compensation: result {result!r}"
    expected = [
        "book_hotel:t1",
        "book_flight:t1",
        "charge:t1",
        "cancel_flight:t1",
        "cancel_hotel:t1",
    ]
    ran = [e.activity for e in bridge_ledger.entries()]
    assert ran == expected, f"saga compensation: side effects {ran}, expected {expected}"
    if "history_export" in bridge_client.backend.capabilities:
        types = [e.type for e in await bridge_client.history(run)]
        n = types.count(EventType.COMPENSATION_COMPLETED)
        assert n == 2, f"saga compensation: history has {n} completed compensations, expected 2"


@pytest.mark.asyncio
@pytest.mark.requires("idempotent_start")
async def test_idempotent_start(bridge_client: bridge.Client, bridge_ledger: Ledger) -> None:
    """Starting an id that exists (running or finished) never runs it again."""
    run = new_id("idem")
    path = str(bridge_ledger.path)
    first = await bridge_client.start(wf.sequence, path, ["x"], id=run)
    second = await bridge_client.start(wf.sequence, path, ["x"], id=run)
    assert first.created, "idempotent start: the first start did not create the run"
    assert not second.created, "idempotent start: a second start of a pending id created a run"
    async with bridge_client.worker(wf.STANDARD):
        assert await result_of(bridge_client, run, scenario="idempotent start") == ["X"]
    third = await bridge_client.start(wf.sequence, path, ["x"], id=run)
    assert not third.created, "idempotent start: starting a finished id created a run"
    assert await third.result(timeout=5) == ["X"], "idempotent start: the recorded result changed"
    n = bridge_ledger.counts_by_activity()["x"]
    assert n == 1, f"idempotent start: step 'x' ran {times(n)}, expected once"


def _everything() -> wf.Everything:
    return wf.Everything(
        dataclass_=wf.Point(1, 2),
        nested_dataclass=wf.Shape("tri", [wf.Point(0, 0), wf.Point(1, 0)], wf.Size.LARGE, {"a": 1}),
        model=wf.Customer(
            id=uuid.UUID("12345678-1234-5678-1234-567812345678"), name="Ada", since=date(2020, 1, 2)
        ),
        typed_dict=wf.Address(street="Main 1", zip="12345"),
        enum_=wf.Size.SMALL,
        int_enum=wf.Priority.HIGH,
        datetime_utc=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime_offset=datetime(
            2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))
        ),
        date_=date(1999, 12, 31),
        uuid_=uuid.UUID("c0ffee00-0000-4000-8000-000000000001"),
        decimal=Decimal("3.14159265358979323846"),
        timedelta_=timedelta(days=1, seconds=2, microseconds=3),
        list_of_models=[
            wf.Customer(id=uuid.UUID(int=1), name="Bo", since=date(2021, 5, 6)),
            wf.Customer(id=uuid.UUID(int=2), name="Cy", since=date(2022, 7, 8)),
        ],
        dict_of_dataclasses={"a": wf.Point(1, 2), "b": wf.Point(3, 4)},
        int_keyed_dict={1: "one", 2: "two"},
        tuple_=(1, "a", 2.5),
        optional_present=wf.Point(5, 6),
        optional_none=None,
        plain_json={"k": [1, "two", 3.0, None, False]},
        unicode="zürich ✓ 東京",
        infinity=float("inf"),
        big_int=2**63 + 1,
    )


@pytest.mark.asyncio
async def test_codec_round_trip(bridge_client: bridge.Client, bridge_worker: bridge.Worker) -> None:
    """Every type the codec supports crosses workflow input, activity and result unchanged."""
    run = new_id("codec")
    value = _everything()
    result = await bridge_client.execute(wf.codec_round_trip, value, id=run, timeout=30)
    assert isinstance(result, wf.Everything), (
        f"codec round-trip: result is a {type(result).__name__}, expected Everything"
    )
    wrong = [
        f"{name}: {getattr(result, name)!r} ({type(getattr(result, name)).__name__}), "
        f"expected {getattr(value, name)!r} ({type(getattr(value, name)).__name__})"
        for name in wf.Everything.model_fields
        if getattr(result, name) != getattr(value, name)
        or type(getattr(result, name)) is not type(getattr(value, name))
    ]
    assert not wrong, "codec round-trip: " + "; ".join(wrong)
