"""Triggers: events start runs (once per event, however often it is delivered), events signal
runs, and finished runs are published as completion events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.backend import Status
from bridge.bus import WORKFLOW_COMPLETED, WORKFLOW_FAILED, WORKFLOW_SOURCE, completion_event
from bridge.bus.envelope import Event
from bridge.bus.memory import MemoryTransport
from bridge.bus.triggers import Dispatcher, Trigger, registered_triggers
from bridge.migrate.router import Router
from bridge.testing import ledger

FAST = bridge.RetryPolicy(max_attempts=2, initial_interval=0.01)


@bridge.activity(retry=FAST)
def greet_side_effect(ledger_path: str, name: str, *, idempotency_key: str) -> str:
    ledger.record(ledger_path, idempotency_key, "greet")
    return f"hello {name}"


@bridge.workflow(name="triggers.greet")
async def greet(ctx: bridge.Context, data: dict[str, str]) -> str:
    return await ctx.run(greet_side_effect, data["ledger"], data["name"])


@bridge.workflow(name="triggers.greet_when_told")
async def greet_when_told(ctx: bridge.Context, ledger_path: str) -> str:
    name = await ctx.wait_for_signal("name")
    return await ctx.run(greet_side_effect, ledger_path, str(name))


@bridge.workflow(name="triggers.explode")
async def explode(ctx: bridge.Context, data: Any) -> str:
    raise ValueError(f"cannot handle {data!r}")


def uploaded(n: int, ledger_path: str, *, source: str = "uploads") -> Event:
    return Event(
        id=f"up-{n}",
        source=source,
        type="doc.uploaded",
        data={"ledger": ledger_path, "name": f"doc{n}"},
    )


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float = 30, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def drain(transport: MemoryTransport, subscription: str) -> list[Event]:
    out = []
    for delivery in await transport.claim(subscription, max_messages=1000):
        out.append(delivery.event)
        await transport.ack(delivery)
    return out


# -- bridge.on ----------------------------------------------------------------------------------
def test_on_binds_and_registers() -> None:
    trigger = bridge.on("test.greet.v1", greet)
    assert isinstance(trigger, Trigger) and trigger in registered_triggers()
    event = Event(id="e1", source="tests", type="test.greet.v1", data={"name": "x"})
    assert trigger.workflow_id(event) == "tests/e1"  # the event's duplicate key
    assert tuple(trigger.args_from(event)) == ({"name": "x"},)
    # Binding the same type to the same target again replaces the binding.
    again = bridge.on("test.greet.v1", greet, id_from=lambda e: f"greet/{e.id}")
    assert again in registered_triggers() and trigger not in registered_triggers()
    assert again.workflow_id(event) == "greet/e1"

    signal = bridge.on("test.named.v1", signal="name")
    named = Event(id="e2", source="tests", type="test.named.v1", subject="run-7", data="ada")
    assert signal.workflow_id(named) == "run-7" and signal.payload_from(named) == "ada"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bridge.on("t", greet, signal="s"), "pass a workflow to start, or signal='name'"),
        (lambda: bridge.on("t"), "pass a workflow to start, or signal='name'"),
        (lambda: bridge.on("", greet), "the event type must be a non-empty string"),
        (lambda: bridge.on("t", signal="s", args_from=list), "use payload_from, not args_from"),
        (lambda: bridge.on("t", greet, payload_from=str), "use args_from, not payload_from"),
        (lambda: bridge.on("t", print), "is not a bridge workflow"),  # type: ignore[arg-type]
    ],
)
def test_on_refuses_bad_bindings(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(bridge.BridgeError) as info:
        call()
    assert message in str(info.value)


def test_signal_trigger_needs_a_subject_or_id_from() -> None:
    trigger = bridge.on("test.nosubject.v1", signal="name")
    with pytest.raises(bridge.ConfigError, match="has no subject"):
        trigger.workflow_id(Event(id="e", source="s", type="test.nosubject.v1"))


def test_dispatcher_needs_triggers() -> None:
    with pytest.raises(bridge.ConfigError, match="no triggers"):
        Dispatcher(transport=MemoryTransport(), target=None, triggers=[])  # type: ignore[arg-type]


def test_completion_event_convention() -> None:
    done = completion_event(
        workflow_id="doc/1", workflow="ingest", engine="sql", status=Status.COMPLETED, result=3
    )
    assert (done.type, done.source, done.id, done.subject) == (
        WORKFLOW_COMPLETED,
        WORKFLOW_SOURCE,
        "doc/1/completed",
        "doc/1",
    )
    assert done.data == {"workflow_id": "doc/1", "workflow": "ingest", "engine": "sql", "result": 3}
    failed = completion_event(
        workflow_id="doc/1",
        workflow="ingest",
        engine="langgraph",
        status=Status.FAILED,
        error={"error_type": "ValueError", "message": "bad"},
    )
    assert (failed.type, failed.id) == (WORKFLOW_FAILED, "doc/1/failed")
    assert failed.data["error"] == {"error_type": "ValueError", "message": "bad"}
    cancelled = completion_event(
        workflow_id="doc/2", workflow="ingest", engine="sql", status=Status.CANCELLED
    )
    assert cancelled.type == WORKFLOW_FAILED and cancelled.data["error"]["error_type"] == (
        "WorkflowCancelledError"
    )
    with pytest.raises(ValueError, match="not finished"):
        completion_event(workflow_id="x", workflow="w", engine="sql", status=Status.RUNNING)


# -- the dispatcher on one engine ---------------------------------------------------------------
async def test_redelivered_events_start_one_run_each(
    sql_settings: dict[str, Any], ledger_path: str
) -> None:
    # A third of the claims are duplicated, a fifth of the acks lost, claims in random order.
    transport = MemoryTransport(seed=3, duplicate_rate=0.3, drop_ack_rate=0.2, reorder=True)
    await transport.subscribe("watch", [WORKFLOW_COMPLETED, WORKFLOW_FAILED])
    trigger = bridge.on("doc.uploaded", greet, id_from=lambda e: f"greet/{e.data['name']}")
    async with await bridge.connect(sql_settings) as client:
        dispatcher = Dispatcher(
            transport=transport,
            target=client,
            triggers=[trigger],
            poll_interval=0.01,
            lease_seconds=0.3,
        )
        events: list[Event] = []
        async with client.worker([greet]), dispatcher:
            for n in range(20):
                await transport.publish(uploaded(n, ledger_path))
                await transport.publish(uploaded(n, ledger_path))  # a re-publish: dropped
            # The same upload announced again by another source: same workflow id, no new run.
            await transport.publish(uploaded(3, ledger_path, source="mirror"))

            async def twenty_completions() -> bool:
                events.extend(await drain(transport, "watch"))
                return len({e.key for e in events}) >= 20

            await until(twenty_completions, what="20 completion events")
        runs = await client.list(limit=100)
    assert transport.injected["duplicates"] > 0 and transport.injected["dropped_acks"] > 0
    assert sorted(r.id for r in runs) == sorted(f"greet/doc{n}" for n in range(20))
    assert all(r.status is Status.COMPLETED for r in runs)
    assert ledger.duplicates(ledger_path) == {}
    assert len(ledger.entries(ledger_path)) == 20
    # The test's own subscription gets duplicates too (same transport): count distinct keys.
    assert len({e.key for e in events}) == 20 and {e.data["engine"] for e in events} == {"sql"}
    assert {e.data["result"] for e in events} == {f"hello doc{n}" for n in range(20)}


async def test_signal_events_reach_their_run_even_before_it_starts(
    sql_settings: dict[str, Any], ledger_path: str
) -> None:
    transport = MemoryTransport()
    triggers = [
        bridge.on(
            "person.arrived",
            greet_when_told,
            id_from=lambda e: f"door/{e.subject}",
            args_from=lambda e: [ledger_path],
        ),
        bridge.on("person.named", signal="name", id_from=lambda e: f"door/{e.subject}"),
    ]
    async with await bridge.connect(sql_settings) as client:
        dispatcher = Dispatcher(
            transport=transport,
            target=client,
            triggers=triggers,
            poll_interval=0.01,
            retry_base=0.05,
        )
        async with client.worker([greet_when_told]), dispatcher:
            # The name arrives first: the run does not exist yet, so it is retried.
            await transport.publish(
                Event(id="n1", source="s", type="person.named", subject="p1", data="ada")
            )
            await asyncio.sleep(0.2)
            await transport.publish(Event(id="a1", source="s", type="person.arrived", subject="p1"))

            async def finished() -> bool:
                runs = await client.list(status=Status.COMPLETED)
                return [r.id for r in runs] == ["door/p1"]

            await until(finished, what="the run to be started, signalled and finished")
            assert await client.result("door/p1", timeout=30) == "hello ada"
            # A late signal for the finished run is dropped, not retried into the dead letters.
            await transport.publish(
                Event(id="n2", source="s", type="person.named", subject="p1", data="bob")
            )

            async def settled() -> bool:
                return transport.backlog("bridge.triggers") == 0

            await until(settled, what="the late signal to be acked")
    assert dispatcher.consumer.stats.failed >= 1  # the early signal failed at least once
    assert not transport.dead_letters


async def test_failures_are_published_and_bad_triggers_dead_lettered(
    sql_settings: dict[str, Any],
) -> None:
    transport = MemoryTransport(max_deliveries=2)
    await transport.subscribe("watch", [WORKFLOW_COMPLETED, WORKFLOW_FAILED])
    triggers = [
        bridge.on("job.exploding", explode, id_from=lambda e: f"explode/{e.id}"),
        bridge.on("job.misrouted", explode, id_from=lambda e: None),  # type: ignore[arg-type,return-value]
    ]
    async with await bridge.connect(sql_settings) as client:
        dispatcher = Dispatcher(
            transport=transport,
            target=client,
            triggers=triggers,
            poll_interval=0.01,
            retry_base=0.01,
        )
        events: list[Event] = []
        async with client.worker([explode]), dispatcher:
            await transport.publish(Event(id="j1", source="s", type="job.exploding", data=1))
            await transport.publish(Event(id="j2", source="s", type="job.misrouted", data=2))

            async def published_and_buried() -> bool:
                events.extend(await drain(transport, "watch"))
                return bool(events) and bool(transport.dead_letters)

            await until(published_and_buried, what="a failure event and a dead letter")
    [failed] = events
    assert (failed.type, failed.id, failed.subject) == (
        WORKFLOW_FAILED,
        "explode/j1/failed",
        "explode/j1",
    )
    assert failed.data["error"]["error_type"] == "ValueError"
    [(dead, attempts, error)] = transport.dead_letters["bridge.triggers"]
    assert dead.id == "j2" and attempts == 2 and "id_from returned None" in (error or "")


# -- through the router ---------------------------------------------------------------------------
async def test_router_rewatches_open_runs_after_a_restart(
    tmp_path: Path, sql_settings: dict[str, Any], langgraph_settings: dict[str, Any]
) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[migrate."triggers.greet"]\nfrom = "sql"\nto = "langgraph"\nramp = 50\n'
    )
    explicit = {
        "sql": sql_settings["sql"],
        "langgraph": langgraph_settings["langgraph"],
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
    }
    ledger_path = str(tmp_path / "ledger.db")
    # A router without a completion transport starts the runs; they finish unwatched.
    async with await Router.connect(explicit, cwd=tmp_path) as first:
        for n in range(6):
            await first.start(greet, {"ledger": ledger_path, "name": f"n{n}"}, id=f"g{n}")
        engines = {f"g{n}": first.engine_of(f"g{n}") for n in range(6)}
        sql, langgraph = await first.client("sql"), await first.client("langgraph")
        async with sql.worker([greet]), langgraph.worker([greet]):
            for n in range(6):
                await first.result(f"g{n}", timeout=30)
    assert set(engines.values()) == {"sql", "langgraph"}

    # The next router watches every open route again and publishes each completion once.
    transport = MemoryTransport()
    await transport.subscribe("watch", [WORKFLOW_COMPLETED])
    async with await Router.connect(explicit, cwd=tmp_path, completions=transport) as second:
        assert await second.watch_open() == 6
        assert await second.watch_open() == 6  # watching twice is one watch
        events: list[Event] = []

        async def all_six() -> bool:
            events.extend(await drain(transport, "watch"))
            return len(events) >= 6 and not second.table.open_routes()

        await until(all_six, what="six completion events")
        assert await second.watch_open() == 0
    assert {e.subject: e.data["engine"] for e in events} == engines
