"""examples/temporal_features.py on every engine: each workflow's real result, the way a
Temporal user's sample would check it (queries and updates, several waits, children,
continue-as-new, heartbeats, cancellation, versioning, execution timeout).

Temporal's workflow ids belong to the session's one dev server, shared by every test, so
each run id carries a uuid."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest

import bridge
from bridge.errors import WorkflowFailedError
from bridge.testing import ledger
from bridge.workflow import WorkflowDefinition
from examples import temporal_features as example
from tests.conftest import wait_for_status


def new_id(what: str) -> str:
    return f"features-{what}-{uuid.uuid4().hex[:10]}"


def keys(ledger_path: str) -> list[str]:
    return [e.key for e in ledger.entries(ledger_path)]


async def until(check: Callable[[], object], *, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_greeting_entity_answers_queries_and_updates_until_its_exit_signal(
    client: bridge.Client,
) -> None:
    rid = new_id("entity")
    async with client.worker(example.WORKFLOWS):
        handle = await client.start(example.greeting_entity, "Ann", id=rid)
        await wait_for_status(client, rid, bridge.Status.WAITING)
        assert await client.query(rid, "greeting") == "Hello, Ann!"
        assert await handle.update("set_language", "fr") == "en"
        assert await client.query(rid, "greeting") == "Bonjour, Ann!"
        before = len(await client.history(rid))
        with pytest.raises(bridge.UpdateRejectedError, match="unsupported language 'xx'"):
            await client.update(rid, "set_language", "xx")
        assert len(await client.history(rid)) == before, "a rejected update left a trace"
        assert await client.query(rid, "language") == "fr"
        # The same update id twice: the handler runs once, both callers get its answer.
        first = await client.update(rid, "set_language", "de", update_id=f"{rid}-de")
        again = await client.update(rid, "set_language", "de", update_id=f"{rid}-de")
        assert (first, again) == ("fr", "fr")
        await handle.signal("exit")
        assert await handle.result(timeout=30) == "Hallo, Ann!"
    steps = bridge.history.step_sequence(await client.history(rid))
    assert steps.count("features.translate_greeting") == 2


async def test_greeting_collector_returns_all_three_greetings(client: bridge.Client) -> None:
    rid = new_id("collector")
    async with client.worker(example.WORKFLOWS):
        handle = await client.start(example.greeting_collector, id=rid)
        for name in ("user1", "user2", "user3"):
            await handle.signal("greet", name)
        await handle.signal("exit")  # no payload: still told apart from a timeout
        result = await handle.result(timeout=20)
        assert result == ["Hello, user1!", "Hello, user2!", "Hello, user3!"]
        # Temporal answers a query from a worker of the run's task queue: ask inside.
        assert await client.query(rid, "greetings") == result


async def test_onboarding_runs_children_and_abandons_the_trial_reminder(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = new_id("onboard")
    async with client.worker(example.WORKFLOWS):
        result = await client.execute(
            example.onboard_account, ledger_path, "acme", id=rid, timeout=60
        )
        assert result == {
            "resources": ["mailbox:acme", "workspace:acme"],
            "welcome": "mail to acme: welcome (mailbox:acme, workspace:acme)",
            "trial_reminder": f"{rid}/trial",
        }
        # The parent completed; the abandoned reminder still waits for the purchase.
        reminder = result["trial_reminder"]
        await wait_for_status(client, reminder, bridge.Status.WAITING)
        assert (await client.describe(rid)).status is bridge.Status.COMPLETED
        await client.signal(reminder, "converted", "pro")
        assert await client.result(reminder, timeout=30) == "acme converted to pro"
    events = await client.history(rid)
    started = [
        e.details.get("child_id")
        for e in events
        if e.type is bridge.EventType.CHILD_WORKFLOW_STARTED
    ]
    assert started == [f"{rid}/mailbox", f"{rid}/workspace", f"{rid}/welcome", f"{rid}/trial"]
    child = await client.history(f"{rid}/mailbox")
    assert child[0].details.get("parent_id") == rid
    assert sorted(ledger.counts_by_activity(ledger_path).items()) == [
        ("email:welcome (mailbox:acme, workspace:acme)", 1),
        ("provision:mailbox", 1),
        ("provision:workspace", 1),
    ]


async def test_counter_continues_as_new_and_returns_the_final_count(
    client: bridge.Client,
) -> None:
    rid = new_id("counter")
    async with client.worker(example.WORKFLOWS):
        assert await client.execute(example.counter, 25, 10, id=rid, timeout=60) == 25
        assert await client.query(rid, "count") == 25
    history = await client.history(rid)
    # The current run holds its own five iterations only, and names the run it continued.
    assert bridge.history.step_sequence(history) == ["features.add_one"] * 5
    previous = history[0].details.get("continued_from")
    assert isinstance(previous, str) and previous.startswith(f"{rid}@"), history[0].details
    earlier = await client.history(previous)
    assert bridge.history.step_sequence(earlier) == ["features.add_one"] * 10
    assert earlier[-1].type is bridge.EventType.WORKFLOW_CONTINUED_AS_NEW


async def test_upload_resumes_from_its_heartbeat_after_a_stuck_attempt(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = new_id("upload")
    async with client.worker(example.WORKFLOWS):
        t0 = time.monotonic()
        result = await client.execute(
            example.upload_file, ledger_path, "video.mp4", 6, 3, id=rid, timeout=60
        )
        elapsed = time.monotonic() - t0
    assert result == {"file": "video.mp4", "chunks": 6, "attempt": 2, "resumed_from": 3}
    # Every chunk sent once: the retry started where the stuck attempt stopped.
    assert keys(ledger_path) == [f"video.mp4:chunk-{n}" for n in range(6)]
    # The 1 s heartbeat timeout, not the 60 s the stuck attempt would have hung.
    assert elapsed < 10, f"the stuck attempt took {elapsed:.1f}s to fail"
    assert "ActivityHeartbeatTimeoutError" in str([e.to_dict() for e in await client.history(rid)])


async def test_upload_without_a_stall_heartbeats_through(client: bridge.Client) -> None:
    rid = new_id("upload-ok")
    async with client.worker(example.WORKFLOWS):
        result = await client.execute(
            example.upload_file, None, "a.txt", 3, None, id=rid, timeout=30
        )
    assert result == {"file": "a.txt", "chunks": 3, "attempt": 1, "resumed_from": 0}


async def test_cancelled_export_stops_its_copy_and_discards_the_file(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = new_id("export")
    async with client.worker(example.WORKFLOWS):
        handle = await client.start(example.export_table, ledger_path, "orders", 10_000, id=rid)
        await until(lambda: "orders:copy-started" in keys(ledger_path), what="the copy")
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await handle.cancel()
        await until(lambda: "orders:copy-cancelled" in keys(ledger_path), what="the cancel")
        heard = time.monotonic() - t0
        with pytest.raises(bridge.WorkflowCancelledError):
            await handle.result(timeout=30)
    assert heard < 1.5, f"the copy heard of the cancellation after {heard:.2f}s"
    assert ledger.counts_by_activity(ledger_path) == {
        "open:orders": 1,
        "copy_rows": 2,
        "discard:orders": 1,
    }
    assert (await client.describe(rid)).status is bridge.Status.CANCELLED


async def test_export_that_is_not_cancelled_completes(client: bridge.Client) -> None:
    rid = new_id("export-ok")
    async with client.worker(example.WORKFLOWS):
        result = await client.execute(example.export_table, None, "small", 3, id=rid, timeout=30)
    assert result == "3 rows exported to s3://exports/small.csv"


async def _park(
    client: bridge.Client, definition: WorkflowDefinition[..., object], id: str
) -> None:
    await client.start(definition, f"order-{id[-4:]}", id=id)
    await wait_for_status(client, id, bridge.Status.WAITING)


async def test_shipping_is_patched_then_the_patch_deprecated(client: bridge.Client) -> None:
    old, patched, new = new_id("ship-old"), new_id("ship-patched"), new_id("ship-new")
    order = {rid: f"order-{rid[-4:]}" for rid in (old, patched, new)}
    async with client.worker([example.SHIPPING_ORIGINAL]):
        await _park(client, example.SHIPPING_ORIGINAL, old)
    async with client.worker([example.SHIPPING_PATCHED]):
        await _park(client, example.SHIPPING_PATCHED, patched)
        await client.signal(old, "packed")
        # Started before the patch: the old path, no screening.
        assert await client.result(old, timeout=30) == [
            f"reserved {order[old]}",
            f"shipped {order[old]}",
        ]
    async with client.worker([example.SHIPPING_DEPRECATED]):
        await client.signal(patched, "packed")
        # Recorded the patch under deployment 2; replays through deprecate_patch unblocked.
        assert await client.result(patched, timeout=30) == [
            f"reserved {order[patched]}",
            f"screened {order[patched]}",
            f"shipped {order[patched]}",
        ]
        await _park(client, example.SHIPPING_DEPRECATED, new)
        await client.signal(new, "packed")
        assert await client.result(new, timeout=30) == [
            f"reserved {order[new]}",
            f"screened {order[new]}",
            f"shipped {order[new]}",
        ]


async def test_a_seat_not_paid_in_time_times_out(
    client: bridge.Client, ledger_path: str, backend_name: str
) -> None:
    rid = new_id("seat")
    async with client.worker(example.WORKFLOWS):
        began = time.monotonic()
        await client.start(example.hold_seat, ledger_path, "4A", id=rid, execution_timeout=1.5)
        with pytest.raises(WorkflowFailedError) as info:
            await client.result(rid, timeout=30)
        took = time.monotonic() - began
    assert info.value.error_type == "WorkflowTimeoutError"
    assert took < 15, f"the timeout was enforced after {took:.1f}s"
    assert (await client.describe(rid)).status is bridge.Status.FAILED
    # The seat is given back before the run fails, on every engine.
    assert ledger.counts_by_activity(ledger_path) == {"reserve:4A": 1, "release:4A": 1}


async def test_a_seat_paid_in_time_is_unaffected_by_its_timeout(client: bridge.Client) -> None:
    rid = new_id("seat-paid")
    async with client.worker(example.WORKFLOWS):
        handle = await client.start(example.hold_seat, None, "7C", id=rid, execution_timeout=60)
        await wait_for_status(client, rid, bridge.Status.WAITING)
        await handle.signal("paid", "visa-4242")
        assert await handle.result(timeout=30) == "seat 7C paid with visa-4242"
