"""Acceptance: the seeds' debtor workflow migrating from the sql engine to langgraph.

200 debtors are started through events with a 30% ramp to langgraph, the ramp is raised to
100% in bridge.toml while those runs wait for their call-completed webhook, and 100 more
debtors follow. The webhooks (call completed, payment) arrive as events, reordered and
duplicated by the transport, and must reach the engine that owns each run. Then: every run
completed exactly once, on exactly one engine; exactly 200 completion events; no side effect
ran twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.backend import Status
from bridge.bus import WORKFLOW_COMPLETED, WORKFLOW_FAILED
from bridge.bus.envelope import Event
from bridge.bus.memory import MemoryTransport
from bridge.bus.triggers import Dispatcher
from bridge.errors import WorkflowNotFoundError
from bridge.migrate._ramp import on_new_engine
from bridge.migrate.router import EngineState, Router
from bridge.testing import ledger
from examples import debtor as example

FIRST_WAVE = 100  # started at a 30% ramp, still in flight when the ramp goes to 100%
SECOND_WAVE = 100  # started after the ramp went to 100%
TOTAL = FIRST_WAVE + SECOND_WAVE
PAYMENT_TIMEOUT = 1.5  # seconds (seven days in production)
MIN_CALL_INTERVAL = 1.0  # seconds (a day in production)

RULE = """\
[migrate.debtor]
from = "sql"
to = "langgraph"
ramp = {ramp}
"""


def debtor_ids(start: int, stop: int) -> list[str]:
    return [f"d{i:03d}" for i in range(start, stop)]


def overdue(debtor_id: str, notice: int = 0) -> Event:
    return Event(
        id=f"overdue-{debtor_id}-{notice}",
        source="billing",
        type=example.OVERDUE,
        data={"debtor_id": debtor_id, "room": f"room-{debtor_id}", "amount_cents": 12_500},
    )


def call_completed(debtor_id: str) -> Event:
    return Event(
        id=f"call-{debtor_id}",
        source="livekit",
        type=example.CALL_COMPLETED,
        data={"debtor_id": debtor_id, "transcript": f"Spoke with {debtor_id}. Promised to pay."},
    )


def payment(debtor_id: str) -> Event:
    return Event(
        id=f"payment-{debtor_id}",
        source="billing",
        type=example.PAYMENT_RECEIVED,
        data={"debtor_id": debtor_id, "amount_cents": 12_500},
    )


def paying(debtor_id: str) -> bool:
    return int(debtor_id[1:]) % 2 == 0


class Completions:
    """Drains a subscription of completion events, counting raw deliveries and distinct ids."""

    def __init__(self, transport: MemoryTransport, name: str) -> None:
        self.transport = transport
        self.name = name
        self.raw: list[Event] = []

    async def drain(self) -> None:
        for delivery in await self.transport.claim(self.name, max_messages=500):
            self.raw.append(delivery.event)
            await self.transport.ack(delivery)

    @property
    def distinct(self) -> set[tuple[str, str]]:
        return {e.key for e in self.raw}


async def wait_for(check: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_debtors_migrate_from_sql_to_langgraph(
    tmp_path: Path, sql_settings: dict[str, Any], langgraph_settings: dict[str, Any]
) -> None:
    ledger_path = str(tmp_path / "ledger.db")
    (tmp_path / "bridge.toml").write_text(RULE.format(ramp=30))
    # The engines' settings are explicit; the rule comes from bridge.toml, so raising the
    # ramp is an edit of that file plus reload(), no code change.
    explicit = {
        "backend": "sql",
        "sql": {**sql_settings["sql"], "durability": "NORMAL"},
        "langgraph": {**langgraph_settings["langgraph"], "durability": "NORMAL"},
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
    }
    # Incoming webhooks and notices: duplicated and reordered on the way.
    inbound = MemoryTransport(seed=6, duplicate_rate=0.1, reorder=True)
    # Completion events: a clean transport, so the raw count is what was published.
    outbound = MemoryTransport()
    await outbound.subscribe("billing.completions", [WORKFLOW_COMPLETED, WORKFLOW_FAILED])
    completions = Completions(outbound, "billing.completions")

    triggers = example.bind_triggers(
        ledger_path=ledger_path,
        payment_timeout=PAYMENT_TIMEOUT,
        min_call_interval=MIN_CALL_INTERVAL,
    )
    router = await Router.connect(explicit, cwd=tmp_path, completions=outbound)
    assert router.rule("debtor") is not None and router.rule("debtor").ramp == 30  # type: ignore[union-attr]
    sql, langgraph = await router.client("sql"), await router.client("langgraph")
    dispatcher = Dispatcher(transport=inbound, target=router, triggers=triggers, poll_interval=0.02)
    first, second = debtor_ids(0, FIRST_WAVE), debtor_ids(FIRST_WAVE, TOTAL)
    try:
        async with (
            sql.worker([example.debtor]),
            langgraph.worker([example.debtor]),
            dispatcher,
        ):
            # Wave 1 at 30%, each notice sent twice more under new event ids.
            for d in first:
                await inbound.publish(overdue(d))
            for d in first[::5]:
                await inbound.publish(overdue(d, notice=1))
                await inbound.publish(overdue(d, notice=2))

            async def waiting_for_call(ids: list[str]) -> bool:
                for d in ids:
                    if router.route(example.run_id(d)) is None:
                        return False
                    desc = await router.describe(example.run_id(d))
                    if desc.waiting_for != "call_completed":
                        return False
                return True

            await wait_for(
                lambda: waiting_for_call(first), timeout=60, what="wave 1 to wait for its calls"
            )
            owners = {d: router.engine_of(example.run_id(d)) for d in first}
            expected = {d: "langgraph" if on_new_engine("debtor", d, 30) else "sql" for d in first}
            assert owners == expected, "the ramp did not bucket by SHA-256 of the debtor id"
            on_new = sum(o == "langgraph" for o in owners.values())
            assert 15 <= on_new <= 45, f"{on_new} of {FIRST_WAVE} on langgraph at a 30% ramp"

            # The ramp goes to 100% by configuration while wave 1 is in flight.
            (tmp_path / "bridge.toml").write_text(RULE.format(ramp=100))
            router.reload()
            states = {s.engine: s for s in router.status()}
            assert states["sql"].state is EngineState.DRAINING
            assert states["sql"].open == FIRST_WAVE - on_new
            assert states["langgraph"].state is EngineState.ACTIVE

            for d in second:
                await inbound.publish(overdue(d))
            # Webhooks for every debtor, wave 1's reaching the engine each run started on.
            for d in first + second:
                await inbound.publish(call_completed(d))
                if paying(d):
                    await inbound.publish(payment(d))

            async def all_completed() -> bool:
                await completions.drain()
                return len(completions.distinct) >= TOTAL

            await wait_for(all_completed, timeout=90, what=f"{TOTAL} completion events")
            await asyncio.sleep(0.3)  # a duplicate completion, if any, would arrive now
            await completions.drain()

        # Every run completed exactly once, on the engine that owns it, and on no other.
        routes = {d: router.engine_of(example.run_id(d)) for d in first + second}
        assert {d: routes[d] for d in first} == expected
        assert all(routes[d] == "langgraph" for d in second)
        for d, engine in routes.items():
            owner = sql if engine == "sql" else langgraph
            other = langgraph if engine == "sql" else sql
            desc = await owner.describe(example.run_id(d))
            assert desc.status is Status.COMPLETED, (d, desc)
            outcome = desc.result
            assert outcome["paid"] is paying(d) and outcome["escalated"] is not paying(d)
            assert outcome["calls"] == (1 if paying(d) else 2)
            with pytest.raises(WorkflowNotFoundError):
                await other.describe(example.run_id(d))
        status = {s.engine: s for s in router.status()}
        assert status["sql"].state is EngineState.DRAINED and status["sql"].open == 0
        assert status["langgraph"].state is EngineState.ACTIVE
        assert status["langgraph"].open == 0
    finally:
        await router.close()

    # Exactly 200 completion events, raw and distinct, each naming the engine that ran it.
    assert len(completions.raw) == TOTAL
    assert len(completions.distinct) == TOTAL
    assert {e.type for e in completions.raw} == {WORKFLOW_COMPLETED}
    assert {e.subject: e.data["engine"] for e in completions.raw} == {
        example.run_id(d): routes[d] for d in routes
    }

    # No side effect ran twice, and each ran as often as the cases call for.
    assert ledger.duplicates(ledger_path) == {}
    unpaid = sum(not paying(d) for d in routes)
    assert ledger.counts_by_activity(ledger_path) == Counter(
        dispatch_call=TOTAL, summarize_call=TOTAL, escalate=unpaid
    )
    # The transport really duplicated and reordered; nothing was dead-lettered.
    assert inbound.injected["duplicates"] > 0
    assert not inbound.dead_letters


@pytest.mark.parametrize("backend_name", ["sql", "langgraph"])
async def test_never_two_calls_within_the_interval(
    backend_name: str, request: pytest.FixtureRequest, ledger_path: str
) -> None:
    """The once-a-day guard, with a day of 0.6 s: a debtor called just before this case is
    not called again until the interval has passed, and the escalation (a second call)
    waits for it too. The waits are durable timers in the history."""
    interval = 0.6
    settings = request.getfixturevalue(f"{backend_name}_settings")
    case = example.Debtor(
        debtor_id="d-guard",
        room="room-guard",
        amount_cents=100,
        payment_timeout=0.05,  # unpaid: escalates soon after the summary
        min_call_interval=interval,
        last_call_at=datetime.now(UTC),
        ledger=ledger_path,
    )
    async with await bridge.connect(settings) as client:
        async with client.worker([example.debtor]):
            handle = await client.start(example.debtor, case, id="debtor/d-guard")
            await client.signal(handle.id, "call_completed", {"transcript": "Hello. Later."})
            outcome = await handle.result(timeout=30)
        history = await handle.history()
    assert (outcome.paid, outcome.escalated, outcome.calls) == (False, True, 2)
    assert outcome.summary == "d-guard: Hello"
    calls = [e.at for e in ledger.entries(ledger_path) if e.activity != "summarize_call"]
    assert len(calls) == 2 and calls[0] - case.last_call_at.timestamp() >= interval * 0.95
    assert calls[1] - calls[0] >= interval * 0.95
    kinds = [e.type for e in history]
    assert kinds.count(bridge.EventType.TIMER_STARTED) == 2  # one wait before each call
    assert ledger.duplicates(ledger_path) == {}
