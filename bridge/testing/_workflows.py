"""The standard workflows of the conformance suite, importable by worker subprocesses.

Every activity that has a side effect appends it to the ledger (a SQLite file whose path is
a workflow argument) under its idempotency key and its label, so the suite counts side
effects across processes and kills. Faults come from a fault plan file, never from module
state. Names carry the `conformance.` prefix so they never clash with a project's own.
Workflows live at module level because Temporal's sandbox re-imports this module per run.
"""

from __future__ import annotations

import asyncio
import enum
import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from typing_extensions import TypedDict

import bridge
from bridge.testing import faults, ledger
from bridge.workflow import WorkflowDefinition

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01, backoff=2.0)
#: The labels of the 5-step workflow the crash scenario kills at every boundary.
FIVE = ("reserve", "charge", "pack", "ship", "notify")


async def _record(ledger_path: str, key: str, label: str) -> None:
    await asyncio.to_thread(ledger.record, ledger_path, key, label)


# -- sequence, and the 5-step workflow for crash-resume --------------------------------------
@bridge.activity(name="conformance.step", retry=FAST)
async def step(ledger_path: str, label: str, gate: str = "", *, idempotency_key: str) -> str:
    """Waits for `gate` (a file) when given, then records one side effect."""
    while gate and not os.path.exists(gate):
        await asyncio.sleep(0.02)
    await _record(ledger_path, idempotency_key, label)
    return label.upper()


@bridge.workflow(name="conformance.sequence")
async def sequence(ctx: bridge.Context, ledger_path: str, labels: list[str]) -> list[str]:
    return [await ctx.run(step, ledger_path, label) for label in labels]


@bridge.workflow(name="conformance.five_steps")
async def five_steps(ctx: bridge.Context, ledger_path: str, gate_at: int, gate: str) -> list[str]:
    """Five steps; step `gate_at` (1-based) waits for the gate file, so a kill lands before it."""
    return [
        await ctx.run(step, ledger_path, label, gate if i == gate_at else "")
        for i, label in enumerate(FIVE, start=1)
    ]


# -- retry with backoff ----------------------------------------------------------------------
#: The policy the retry scenario checks the waits against.
BACKOFF = bridge.RetryPolicy(max_attempts=5, initial_interval=0.1, backoff=3.0)


@bridge.activity(name="conformance.flaky", retry=BACKOFF)
async def flaky(ledger_path: str, plan: str, *, idempotency_key: str) -> str:
    """Records every attempt, then fails as the fault plan says."""
    attempt = bridge.activity_info().attempt
    await _record(ledger_path, f"{idempotency_key}#{attempt}", "flaky")
    await faults.apply(plan, "flaky")
    return "ok"


@bridge.workflow(name="conformance.retrying")
async def retrying(ctx: bridge.Context, ledger_path: str, plan: str) -> str:
    return await ctx.run(flaky, ledger_path, plan)


# -- non-retryable error ---------------------------------------------------------------------
@bridge.activity(
    name="conformance.lookup_customer",
    retry=bridge.RetryPolicy(max_attempts=5, initial_interval=0.01, non_retryable=[KeyError]),
)
async def lookup_customer(ledger_path: str, *, idempotency_key: str) -> str:
    attempt = bridge.activity_info().attempt
    await _record(ledger_path, f"{idempotency_key}#{attempt}", "lookup_customer")
    raise KeyError("no such customer")


@bridge.workflow(name="conformance.fails_fast")
async def fails_fast(ctx: bridge.Context, ledger_path: str) -> str:
    try:
        return await ctx.run(lookup_customer, ledger_path)
    except bridge.ActivityError as exc:
        return (
            f"{exc.error_type} after {exc.attempts} attempt(s), non_retryable={exc.non_retryable}"
        )


# -- timeout ---------------------------------------------------------------------------------
@bridge.activity(
    name="conformance.slow_then_fast",
    timeout=0.2,
    retry=bridge.RetryPolicy(max_attempts=3, initial_interval=0.01),
)
async def slow_then_fast(ledger_path: str, plan: str, *, idempotency_key: str) -> str:
    attempt = bridge.activity_info().attempt
    await _record(ledger_path, f"{idempotency_key}#{attempt}", "slow_then_fast")
    await faults.apply(plan, "slow_then_fast")
    return "fast enough"


@bridge.activity(
    name="conformance.always_slow",
    timeout=0.1,
    retry=bridge.RetryPolicy(max_attempts=2, initial_interval=0.01),
)
async def always_slow() -> str:
    await asyncio.sleep(5)
    return "never"


@bridge.workflow(name="conformance.timeouts")
async def timeouts(ctx: bridge.Context, ledger_path: str, plan: str) -> list[str]:
    first = await ctx.run(slow_then_fast, ledger_path, plan)
    try:
        await ctx.run(always_slow)
    except bridge.ActivityError as exc:
        return [first, exc.error_type, str(exc.attempts)]
    return [first, "no timeout"]


# -- signals, timers, cancellation -----------------------------------------------------------
@bridge.activity(name="conformance.note", retry=FAST)
async def note(ledger_path: str, what: str, *, idempotency_key: str) -> str:
    await _record(ledger_path, idempotency_key, what)
    return what


@bridge.workflow(name="conformance.approval")
async def approval(ctx: bridge.Context, ledger_path: str, timeout: float | None) -> str:
    await ctx.run(note, ledger_path, "asked")
    decision = await ctx.wait_for_signal("approve", timeout=timeout)
    if decision is None:
        return await ctx.run(note, ledger_path, "timed-out")
    return await ctx.run(note, ledger_path, f"decided:{decision}")


@bridge.workflow(name="conformance.nap")
async def nap(ctx: bridge.Context, ledger_path: str, seconds: float) -> str:
    await ctx.run(note, ledger_path, "before")
    await ctx.sleep(seconds)
    return await ctx.run(note, ledger_path, "after")


# -- gather ----------------------------------------------------------------------------------
@bridge.activity(name="conformance.slow_square", retry=FAST)
async def slow_square(x: int) -> int:
    await asyncio.sleep(0.3)
    return x * x


@bridge.workflow(name="conformance.fan_out")
async def fan_out(ctx: bridge.Context, xs: list[int]) -> list[int]:
    return await ctx.gather(ctx.run(slow_square, x) for x in xs)


# -- saga ------------------------------------------------------------------------------------
@bridge.activity(name="conformance.cancel_hotel", retry=FAST)
async def cancel_hotel(ledger_path: str, trip: str, *, idempotency_key: str) -> None:
    await _record(ledger_path, idempotency_key, f"cancel_hotel:{trip}")


@bridge.activity(name="conformance.cancel_flight", retry=FAST)
async def cancel_flight(ledger_path: str, trip: str, *, idempotency_key: str) -> None:
    await _record(ledger_path, idempotency_key, f"cancel_flight:{trip}")


@bridge.activity(name="conformance.book_hotel", retry=FAST, compensate=cancel_hotel)
async def book_hotel(ledger_path: str, trip: str, *, idempotency_key: str) -> str:
    await _record(ledger_path, idempotency_key, f"book_hotel:{trip}")
    return "H1"


@bridge.activity(name="conformance.book_flight", retry=FAST, compensate=cancel_flight)
async def book_flight(ledger_path: str, trip: str, *, idempotency_key: str) -> str:
    await _record(ledger_path, idempotency_key, f"book_flight:{trip}")
    return "F1"


@bridge.activity(name="conformance.charge_card", retry=bridge.RetryPolicy(max_attempts=1))
async def charge_card(ledger_path: str, trip: str, *, idempotency_key: str) -> str:
    await _record(ledger_path, idempotency_key, f"charge:{trip}")
    raise RuntimeError("card declined")


@bridge.workflow(name="conformance.trip_saga")
async def trip_saga(ctx: bridge.Context, ledger_path: str, trip: str) -> str:
    try:
        await ctx.run(book_hotel, ledger_path, trip)
        await ctx.run(book_flight, ledger_path, trip)
        await ctx.run(charge_card, ledger_path, trip)
    except bridge.ActivityError as exc:
        await ctx.compensate()
        return f"rolled back: {exc.message}"
    return "booked"


# -- patched and non-determinism (definitions, not registered: two share one name) -----------
@bridge.activity(name="conformance.part", retry=FAST)
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


async def _v3_deprecated(ctx: bridge.Context) -> list[str]:
    out = [await ctx.run(part, "a")]
    ctx.deprecate_patch("add-c")
    out.append(await ctx.run(part, "c"))
    await ctx.wait_for_signal("go")
    return [*out, await ctx.run(part, "b")]


VERSIONED = "conformance.versioned"
V1 = WorkflowDefinition(_v1, name=VERSIONED)
V2_PATCHED = WorkflowDefinition(_v2_patched, name=VERSIONED)
V2_UNPATCHED = WorkflowDefinition(_v2_unpatched, name=VERSIONED)
V3_DEPRECATED = WorkflowDefinition(_v3_deprecated, name=VERSIONED)


# -- the codec: every supported type in one value ---------------------------------------------
class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Shape:
    name: str
    points: list[Point]
    size: Size
    tags: dict[str, int] = field(default_factory=dict)


class Customer(BaseModel):
    id: uuid.UUID
    name: str
    since: date


class Address(TypedDict):
    street: str
    zip: str


class Everything(BaseModel):
    """One field per kind of value the codec promises to bring back as itself."""

    dataclass_: Point
    nested_dataclass: Shape
    model: Customer
    typed_dict: Address
    enum_: Size
    int_enum: Priority
    datetime_utc: datetime
    datetime_offset: datetime
    date_: date
    uuid_: uuid.UUID
    decimal: Decimal
    timedelta_: timedelta
    list_of_models: list[Customer]
    dict_of_dataclasses: dict[str, Point]
    int_keyed_dict: dict[int, str]
    tuple_: tuple[int, str, float]
    optional_present: Point | None
    optional_none: Point | None
    plain_json: Any
    unicode: str
    infinity: float
    big_int: int


@bridge.activity(name="conformance.echo_everything", retry=FAST)
async def echo_everything(value: Everything) -> Everything:
    return value


@bridge.workflow(name="conformance.codec_round_trip")
async def codec_round_trip(ctx: bridge.Context, value: Everything) -> Everything:
    return await ctx.run(echo_everything, value)


#: Every workflow the suite's in-process worker serves.
# -- queries, waiting on several things, continue-as-new ---------------------------------
@bridge.workflow(name="conformance.stages")
async def stages(ctx: bridge.Context, ledger_path: str) -> str:
    """Publishes its stage as a query, then waits for the first of two signals."""
    state = {"stage": "started"}
    ctx.set_query_handler("stage", lambda: state["stage"])
    await ctx.run(step, ledger_path, "stage-1")
    state["stage"] = "waiting"
    got = await ctx.wait_for_signal(["approve", "reject"], timeout=60)
    state["stage"] = "decided"
    return "timed-out" if got is None else f"{got.name}:{got.payload}"


@bridge.workflow(name="conformance.held")
async def held(ctx: bridge.Context) -> list[object]:
    """`wait_condition` over state another branch changes after a durable sleep (which parks
    the run on the journal engines), and one that times out."""
    state = {"ready": False}

    async def release() -> None:
        await ctx.sleep(0.2)
        state["ready"] = True

    async def wait() -> bool:
        return await ctx.wait_condition(lambda: state["ready"], timeout=30)

    released, _ = await ctx.gather(wait(), release())
    never = await ctx.wait_condition(lambda: False, timeout=0.2)
    return [released, never]


@bridge.workflow(name="conformance.counter")
async def counter(ctx: bridge.Context, total: int, done: int = 0) -> int:
    """Counts to `total`, continuing as new every 3 iterations."""
    while done < total:
        done = await ctx.run(increment, done)
        if done % 3 == 0 and done < total:
            ctx.continue_as_new(total, done)
    return done


@bridge.activity(name="conformance.increment", retry=FAST)
async def increment(n: int) -> int:
    return n + 1


@bridge.workflow(name="conformance.tally")
async def tally(ctx: bridge.Context, ledger_path: str) -> dict[str, Any]:
    """Takes updates until one closes it: `add` (validated: positive amounts only) changes
    the total and answers it; `close` takes a step, then ends the run."""
    state: dict[str, Any] = {"total": 0, "closed": False}

    def add(amount: int) -> int:
        state["total"] += amount
        return int(state["total"])

    def positive(amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"amount must be positive, got {amount}")

    async def close(label: str) -> str:
        done = await ctx.run(step, ledger_path, label)
        state["closed"] = True
        return done

    ctx.set_update_handler("add", add, validator=positive)
    ctx.set_update_handler("close", close)
    ctx.set_query_handler("total", lambda: state["total"])
    await ctx.wait_condition(lambda: state["closed"])
    return state


# -- activity liveness: heartbeats and cancellation ------------------------------------------
LIVENESS_RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.05, backoff=1.0)


@bridge.activity(name="conformance.goes_silent", retry=LIVENESS_RETRY, heartbeat_timeout=1.0)
async def goes_silent(ledger_path: str) -> Any:
    """Heartbeats its progress, then hangs on its first attempt; the retry returns what
    the first attempt last reported."""
    info = bridge.activity_info()
    await _record(ledger_path, f"silent-attempt-{info.attempt}", "goes_silent")
    if info.attempt == 1:
        bridge.heartbeat({"done": 2})
        await asyncio.sleep(30)
    return info.heartbeat_details


@bridge.workflow(name="conformance.silent")
async def silent(ctx: bridge.Context, ledger_path: str) -> Any:
    return await ctx.run(goes_silent, ledger_path)


@bridge.activity(name="conformance.beating", retry=LIVENESS_RETRY, heartbeat_timeout=5.0)
async def beating(ledger_path: str) -> str:
    """Heartbeats until cancelled, recording that it heard of the cancellation."""
    await _record(ledger_path, "beating-started", "beating")
    try:
        for _ in range(600):
            bridge.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        await asyncio.shield(_record(ledger_path, "beating-cancelled", "beating"))
        raise
    return "finished"


@bridge.workflow(name="conformance.beating_run")
async def beating_run(ctx: bridge.Context, ledger_path: str) -> str:
    return await ctx.run(beating, ledger_path)


# -- child workflows ------------------------------------------------------------------------
@bridge.workflow(name="conformance.child_double")
async def child_double(ctx: bridge.Context, ledger_path: str, n: int) -> int:
    await ctx.run(step, ledger_path, f"child-{n}")
    return n * 2


@bridge.workflow(name="conformance.child_fails")
async def child_fails(ctx: bridge.Context, message: str) -> int:
    raise ValueError(message)


@bridge.workflow(name="conformance.child_waits")
async def child_waits(ctx: bridge.Context) -> str:
    return str(await ctx.wait_for_signal("go"))


@bridge.workflow(name="conformance.children")
async def children(ctx: bridge.Context, ledger_path: str) -> dict[str, Any]:
    """One child awaited, two run concurrently, one that fails."""
    one = await ctx.execute_child(child_double, ledger_path, 1)
    a = await ctx.start_child(child_double, ledger_path, 2)
    b = await ctx.start_child(child_double, ledger_path, 3)
    both = await ctx.gather(a.result(), b.result())
    try:
        await ctx.execute_child(child_fails, "boom")
        failure: list[str] = []
    except bridge.ChildWorkflowError as exc:
        failure = [exc.status, exc.error_type]
    return {"one": one, "both": both, "failure": failure}


@bridge.workflow(name="conformance.child_policy")
async def child_policy(ctx: bridge.Context, policy: str) -> str:
    """Starts a child that waits for a signal and ends at once, leaving it open."""
    return (await ctx.start_child(child_waits, parent_close_policy=policy)).id


# -- execution timeout ------------------------------------------------------------------------
@bridge.workflow(name="conformance.timed_hold")
async def timed_hold(ctx: bridge.Context, ledger_path: str, trip: str) -> str:
    """Books a hotel, then waits for a payment that never comes; the caller's execution
    timeout cancels it, and it gives the room back before the run fails."""
    await ctx.run(book_hotel, ledger_path, trip)
    try:
        await ctx.wait_for_signal("paid")
    except asyncio.CancelledError:
        await ctx.compensate()
        raise
    return "paid"


STANDARD = [
    child_double,
    child_fails,
    child_waits,
    children,
    child_policy,
    sequence,
    five_steps,
    retrying,
    fails_fast,
    timeouts,
    approval,
    nap,
    fan_out,
    trip_saga,
    codec_round_trip,
    stages,
    held,
    counter,
    tally,
    silent,
    beating_run,
    timed_hold,
]
