"""SQL executor specifics: leases, parked runs holding nothing, replay-safe sources."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

import bridge
from backends.sql import SqlBackend
from tests.wfs import approval, five_steps

SETTINGS: dict[str, Any] = {"poll_interval": 0.02, "lease_seconds": 1.0}


async def test_waiting_run_holds_no_coroutine(sql_url: str, ledger_path: str) -> None:
    client = await bridge.connect({"sql": {"url": sql_url, **SETTINGS}})
    try:
        worker = client.worker([approval])
        async with worker:
            await client.start(approval, ledger_path, None, id="parked")
            for _ in range(500):
                if (await client.describe("parked")).status is bridge.Status.WAITING:
                    break
                await asyncio.sleep(0.02)
            assert (await client.describe("parked")).status is bridge.Status.WAITING
            assert worker._tasks == {}, "a parked run must not keep a task in the worker"
            await client.signal("parked", "approve", "ok")
            assert await client.result("parked", timeout=10) == "decided:ok"
    finally:
        await client.close()


async def test_expired_lease_of_another_host_is_taken_over(sql_url: str, ledger_path: str) -> None:
    client = await bridge.connect({"sql": {"url": sql_url, **SETTINGS}})
    try:
        await client.start(five_steps, ledger_path, 0, "", id="orphan")
        backend = client.backend
        assert isinstance(backend, SqlBackend)
        expires = time.time() + 1.0
        with backend.store.engine.begin() as conn:  # a worker on another machine holds it
            conn.execute(
                sqlalchemy.text(
                    "UPDATE bridge_workflows SET status='RUNNING', "
                    "lease_owner='elsewhere:1:dead', lease_expires_at=:t WHERE id='orphan'"
                ),
                {"t": expires},
            )
        async with client.worker([five_steps]):
            result = await client.result("orphan", timeout=20)
        assert result == [f"step{i}" for i in range(1, 6)]
        assert time.time() >= expires, "taken before the other host's lease ran out"
    finally:
        await client.close()


@bridge.activity
async def remember(value: str, number: float, moment: str) -> str:
    return value


@bridge.workflow
async def sources(ctx: bridge.Context) -> list[str]:
    first = await ctx.run(remember, ctx.uuid(), ctx.random(), ctx.now().isoformat())
    await ctx.wait_for_signal("go")  # the rest runs in a new execution: a full replay
    second = await ctx.run(remember, ctx.uuid(), ctx.random(), ctx.now().isoformat())
    return [first, second]


async def test_now_uuid_random_are_replay_safe(sql_url: str) -> None:
    client = await bridge.connect({"sql": {"url": sql_url, **SETTINGS}})
    try:
        async with client.worker([sources]):
            await client.start(sources, id="sources")
            for _ in range(500):
                if (await client.describe("sources")).status is bridge.Status.WAITING:
                    break
                await asyncio.sleep(0.02)
            await client.signal("sources", "go")
            first, second = await client.result("sources", timeout=10)
        # A replay that drew other values would have diverged from the journal (digest).
        assert first != second and len(first) == 36
    finally:
        await client.close()


def test_a_step_decided_twice_is_reported_and_never_overwritten(sql_url: str) -> None:
    from backends.sql import open_store
    from bridge.config import SqlSettings
    from bridge.journal.context import StepRecord

    store = open_store(SqlSettings(url=sql_url))
    try:
        store.create_run("w", "wf", {})
        first = StepRecord(
            workflow_id="w",
            idx=0,
            kind="activity",
            name="a",
            status="completed",
            output=1,
            started_at=1.0,
            finished_at=2.0,
        )
        assert store.write_batch([first], []) == ([], set())
        assert store.write_batch([first], []) == ([], set()), "the same outcome is no clash"
        other = StepRecord(**{**first.__dict__, "output": 2})
        assert store.write_batch([other], []) == ([], {"w"})
        assert store.load_steps("w")[0].output == 1
    finally:
        store.close()


@pytest.mark.parametrize("store_kind", ["sql", "langgraph"])
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_start_and_claim_on_each_database(
    store_kind: str, db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A start says whether it created the run; a worker claims up to its free concurrency.
    A one-statement `UPDATE .. WHERE id IN
    (SELECT .. LIMIT n FOR UPDATE SKIP LOCKED)` may lease every ready run on PostgreSQL."""
    if db == "sqlite":
        url = f"sqlite:///{tmp_path}/{store_kind}.db"
    else:
        url = request.getfixturevalue("pg_database")
    if store_kind == "sql":
        from backends.sql import open_store as open_sql
        from bridge.config import SqlSettings

        store: Any = open_sql(SqlSettings(url=url))
    else:
        from backends.langgraph import open_store as open_lg
        from bridge.config import LangGraphSettings

        store = open_lg(LangGraphSettings(url=url))
    create = store.create_run
    name = f"claim-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session
    try:
        for i in range(5):
            assert create(f"{name}-{i}", name, {})
        # On PostgreSQL this read False for every start (psycopg gives no rowcount there).
        assert not create(f"{name}-0", name, {})
        first = store.claim("owner-a", [name], 1)
        assert len(first) == 1
        rest = store.claim("owner-b", [name], 10)
        assert sorted(r.id for r in [*first, *rest]) == [f"{name}-{i}" for i in range(5)]
        assert store.claim("owner-c", [name], 10) == []
    finally:
        store.close()
