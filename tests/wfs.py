"""Workflows and activities the tests run, importable by worker subprocesses."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pydantic import BaseModel

import bridge
from tests import ledger

FAST = bridge.RetryPolicy(max_attempts=3, initial_interval=0.01, backoff=2.0)


# -- a 5-step workflow for crash tests ------------------------------------------------------
@bridge.activity(retry=FAST)
async def side_effect(ledger_path: str, label: str, gate: str, *, idempotency_key: str) -> str:
    """Waits for `gate` (a file) to exist, when given, then records its call in the ledger."""
    while gate and not os.path.exists(gate):
        await asyncio.sleep(0.02)
    await asyncio.to_thread(ledger.record, ledger_path, f"{label}|{idempotency_key}")
    return label


@bridge.workflow
async def five_steps(ctx: bridge.Context, ledger_path: str, gate_at: int, gate: str) -> list[str]:
    done = []
    for i in range(1, 6):
        done.append(
            await ctx.run(side_effect, ledger_path, f"step{i}", gate if i == gate_at else "")
        )
    return done


# -- types for the codec ------------------------------------------------------------------
class Color(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Point:
    x: int
    y: int


class Order(BaseModel):
    id: str
    amount_cents: int
    placed_at: datetime
    color: Color
    where: Point


@bridge.activity(retry=FAST)
async def echo_order(order: Order) -> Order:
    return order


@bridge.workflow
async def order_roundtrip(ctx: bridge.Context, order: Order) -> Order:
    return await ctx.run(echo_order, order)


# -- signals and timers -------------------------------------------------------------------
@bridge.activity(retry=FAST)
async def note(ledger_path: str, what: str) -> str:
    ledger.record(ledger_path, what)
    return what


@bridge.workflow
async def approval(ctx: bridge.Context, ledger_path: str, timeout: float | None) -> str:
    await ctx.run(note, ledger_path, "asked")
    decision = await ctx.wait_for_signal("approve", timeout=timeout)
    if decision is None:
        return await ctx.run(note, ledger_path, "timed-out")
    return await ctx.run(note, ledger_path, f"decided:{decision}")


@bridge.workflow
async def nap(ctx: bridge.Context, ledger_path: str, seconds: float) -> str:
    await ctx.run(note, ledger_path, "before")
    await ctx.sleep(seconds)
    return await ctx.run(note, ledger_path, "after")
