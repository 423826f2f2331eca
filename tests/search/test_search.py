"""Search attributes on every engine: set at start, changed by the workflow, found by query.

The same scenario runs on sql, langgraph and temporal (and sql on PostgreSQL when one is
reachable). Temporal's visibility store is eventually consistent, so lists are polled
until they show what is expected. Every run carries `batch` (this test's own value), and
every query names it, so runs of other tests on the shared Temporal server never match.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.search import SearchAttribute
from tests.conftest import fast_sql, settings_env, wait_for_status
from tests.search.wfs import order, retag

pytestmark = pytest.mark.timeout(90)


async def _ids(client: bridge.Client, query: str) -> set[str]:
    return {d.id for d in await client.list(query=query, limit=50)}


async def _eventually(client: bridge.Client, query: str, expected: set[str]) -> None:
    """`client.list(query)` gives exactly `expected`, within a few seconds (Temporal's
    visibility lags its runs a little; the journals answer at once)."""
    deadline = time.monotonic() + 15
    while True:
        found = await _ids(client, query)
        if found == expected or time.monotonic() > deadline:
            assert found == expected, query
            return
        await asyncio.sleep(0.1)


def _bridge_cli(settings: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("bridge")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "bridge.cli"]
    env = settings_env(settings) | {"COLUMNS": "400"}
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def _scenario(settings: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:10]
    a, b, c = (f"search-{tag}-{x}" for x in "abc")
    due = SearchAttribute.datetime("due")
    client = await bridge.connect(settings)
    try:
        worker = client.worker([order])
        async with worker:
            common = {"batch": tag, "vip": False}
            await client.start(
                order,
                "c-42",
                "",
                id=a,
                search_attributes={
                    **common,
                    "customer": "c-42",
                    "amount": 12,
                    "vip": True,
                    due: datetime(2030, 6, 1, tzinfo=UTC),
                },
            )
            await client.start(
                order,
                "c-42",
                "",
                id=b,
                search_attributes={
                    **common,
                    "customer": "c-42",
                    "amount": 5,
                    due: "2029-01-01T00:00:00Z",
                },
            )
            await client.start(
                order,
                "c-7",
                "c-99",
                id=c,
                search_attributes={**common, "customer": "c-7", "amount": 20},
            )
            for id in (a, b, c):
                await wait_for_status(client, id, bridge.Status.WAITING)

            mine = f"batch = '{tag}'"
            await _eventually(client, f"{mine} AND customer = 'c-99'", {c})  # upserted
            await _eventually(client, f'customer = "c-42" AND {mine}', {a, b})
            await _eventually(client, f"{mine} AND customer = 'c-7'", set())
            await _eventually(client, f"{mine} AND customer = 'c-42' AND amount > 10", {a})
            await _eventually(
                client, f"{mine} AND customer IN ('c-42', 'c-99') AND amount >= 12", {a, c}
            )
            await _eventually(
                client, f"{mine} AND ((customer = 'c-42' AND vip = true) OR amount = 99)", {a, c}
            )
            await _eventually(client, f"{mine} AND customer != 'c-42'", {c})
            await _eventually(client, f"{mine} AND customer NOT IN ('c-42', 'c-1')", {c})
            await _eventually(client, f"{mine} AND (amount < 12 OR amount > 50)", {b, c})
            await _eventually(client, f"{mine} AND amount <= 5", {b})
            await _eventually(client, f"{mine} AND due >= '2030-01-01T00:00:00Z'", {a})
            await _eventually(
                client,
                f"{mine} AND ExecutionStatus = 'Running' AND WorkflowType = 'search_order'",
                {a, b, c},
            )
            await _eventually(client, f"{mine} AND WorkflowId IN ('{b}', 'nope')", {b})

            desc = await client.describe(c)
            assert desc.search_attributes == {
                "batch": tag,
                "customer": "c-99",
                "amount": 99,
                "vip": False,
            }
            assert (await client.describe(a)).search_attributes["due"] == datetime(
                2030, 6, 1, tzinfo=UTC
            )

            cli = await asyncio.to_thread(
                _bridge_cli, settings, "list", "--where", f'customer = "c-42" AND {mine}'
            )
            assert cli.returncode == 0, cli.stdout + cli.stderr
            assert a in cli.stdout and b in cli.stdout and c not in cli.stdout, cli.stdout

        # A new worker (a restart): each run replays its journal or history through the
        # upsert; nothing is repeated or lost.
        async with client.worker([order]):
            for id in (a, b, c):
                await client.signal(id, "go")
            assert await client.result(c, timeout=30) == "c-7"
            assert await client.result(a, timeout=30) == "c-42"
            await client.result(b, timeout=30)
        assert (await client.describe(c)).search_attributes["customer"] == "c-99"
        await _eventually(client, f"{mine} AND customer = 'c-99' AND amount = 99", {c})
        await _eventually(client, f"{mine} AND ExecutionStatus = 'Completed'", {a, b, c})
        await _eventually(client, f"{mine} AND ExecutionStatus = 'Running'", set())
        store = getattr(client.backend, "store", None)
        if store is not None:  # the journal engines: one attributes row, written once
            rows = [s for s in store.load_steps(c) if s.kind == "attributes"]
            assert len(rows) == 1
            assert rows[0].args["attributes"]["customer"] == {"kind": "keyword", "value": "c-99"}

        with pytest.raises(bridge.InvalidSearchQueryError, match="position 11"):
            await client.list(query="customer = ")
        cli = await asyncio.to_thread(_bridge_cli, settings, "list", "--where", "customer = ")
        assert cli.returncode != 0
        assert "bad search query at position 11" in cli.stdout + cli.stderr
    finally:
        await client.close()


async def test_search_attributes(settings: dict[str, Any]) -> None:
    await _scenario(settings)


async def test_search_attributes_postgresql(pg_url: str) -> None:
    await _scenario({"backend": "sql", "sql": fast_sql(pg_url)})


async def test_start_refuses_bad_attributes(sql_settings: dict[str, Any]) -> None:
    """A bad value fails at `start`, naming the key, before anything is written."""
    client = await bridge.connect(sql_settings)
    try:
        with pytest.raises(bridge.InvalidSearchAttributeError, match="'amount' holds int values"):
            await client.start(
                order, "x", "", id="bad", search_attributes={SearchAttribute.int("amount"): "x"}
            )
        with pytest.raises(bridge.InvalidSearchAttributeError, match="reserved"):
            await client.start(order, "x", "", id="bad", search_attributes={"WorkflowId": "x"})
        assert await client.list() == []
    finally:
        await client.close()


async def test_cli_start_with_attributes(sql_settings: dict[str, Any], tmp_path: Path) -> None:
    """`bridge start --attr` sets attributes that `bridge status` shows."""
    env = dict(sql_settings)
    started = await asyncio.to_thread(
        _bridge_cli,
        env,
        "start",
        "tests.search.wfs:order",
        '["c-42", ""]',
        "--id",
        "cli-run",
        "--attr",
        "customer=c-42",
        "--attr",
        "amount=12",
    )
    assert started.returncode == 0, started.stdout + started.stderr
    status = await asyncio.to_thread(_bridge_cli, env, "status", "cli-run")
    assert 'amount=12 customer="c-42"' in status.stdout, status.stdout
    listed = await asyncio.to_thread(_bridge_cli, env, "list", "-w", "amount = 12")
    assert "cli-run" in listed.stdout, listed.stdout + listed.stderr
    assert os.path.exists(sql_settings["sql"]["url"].removeprefix("sqlite:///"))


async def test_keyword_lists_and_unset(settings: dict[str, Any]) -> None:
    """A keyword list matches `=` / IN when any item does, `!=` / NOT IN when none does; an
    attribute set to None is gone (no comparison matches it)."""
    tag = uuid.uuid4().hex[:10]
    x, y = f"tags-{tag}-x", f"tags-{tag}-y"
    client = await bridge.connect(settings)
    try:
        async with client.worker([retag]):
            start = {"batch": tag, "customer": "c-1", "tags": ["old"]}
            await client.start(retag, ["red", "blue"], id=x, search_attributes=start)
            await client.start(retag, ["green"], id=y, search_attributes=start)
            await client.result(x, timeout=30)
            await client.result(y, timeout=30)
        mine = f"batch = '{tag}'"
        await _eventually(client, f"{mine} AND tags = 'blue'", {x})
        await _eventually(client, f"{mine} AND tags IN ('green', 'red')", {x, y})
        await _eventually(client, f"{mine} AND tags != 'red'", {y})
        await _eventually(client, f"{mine} AND tags NOT IN ('green', 'blue')", set())
        await _eventually(client, f"{mine} AND tags = 'old'", set())
        await _eventually(client, f"{mine} AND customer = 'c-1'", set())
        desc = await client.describe(x)
        assert desc.search_attributes == {"batch": tag, "tags": ["red", "blue"]}
    finally:
        await client.close()


def test_dev_server_registers_search_attributes() -> None:
    """`DevServer(search_attributes=...)` passes `--search-attribute KEY=TYPE`, for keys a
    workflow upserts that no start names (a start registers its own keys)."""
    from backends.temporal._devserver import DevServer

    server = DevServer(binary=Path("temporal"), search_attributes={"region": "Keyword"})
    command = server.command()
    assert command[command.index("--search-attribute") + 1] == "region=Keyword"


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_read_only_old_journal_is_searched(backend: str, tmp_path: Path) -> None:
    """A read-only journal an older release wrote has no attributes table: its runs have
    no attributes, attribute comparisons match nothing and the built-ins still work."""
    import shutil

    from tests.journal.old_journals import FILES
    from tests.journal.old_journals import settings as old_settings

    if backend == "langgraph":
        pytest.importorskip("langgraph")
    folder = tmp_path / "archive"
    folder.mkdir()
    path = folder / "journal.db"
    shutil.copyfile(FILES[backend], path)
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        client = await bridge.connect(old_settings(backend, path))
        try:
            assert client.backend.store.read_only  # type: ignore[attr-defined]
            assert await _ids(client, "customer = 'x' OR customer != 'x'") == set()
            assert await _ids(client, "WorkflowId = 'done'") == {"done"}
            assert await _ids(client, "ExecutionStatus = 'Running'") == {"on-signal", "on-timer"}
            assert (await client.describe("done")).search_attributes == {}
        finally:
            await client.close()
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_store_applies_what_the_journal_holds(sql_url: str) -> None:
    """Two upserts written in one batch both count, in index order; a late write of
    another value at a decided index (a worker that lost its lease) changes nothing."""
    from backends.sql import open_store
    from bridge.config import SqlSettings
    from bridge.journal.context import ATTRIBUTES, COMPLETED, StepRecord
    from bridge.search import encode_attributes

    def row(idx: int, values: dict[str, Any]) -> StepRecord:
        encoded = encode_attributes(values, where="a test")
        return StepRecord(
            workflow_id="r",
            idx=idx,
            kind=ATTRIBUTES,
            name=ATTRIBUTES,
            status=COMPLETED,
            args={"attributes": encoded},
            started_at=1.0,
            finished_at=1.0,
        )

    store = open_store(SqlSettings(url=sql_url))
    try:
        start = encode_attributes({"customer": "c-1", "amount": 1}, where="a test")
        assert store.create_run("r", "search_order", {}, search_attributes=start)
        store.write_steps([row(0, {"customer": "c-2"}), row(1, {"amount": 5, "customer": "c-3"})])
        store.write_steps([row(2, {"amount": None})])
        expected = {"customer": {"kind": "keyword", "value": "c-3"}}
        assert store.read_attributes(["r"]) == {"r": expected}
        store.write_steps([row(0, {"customer": "stale"})])
        assert store.read_attributes(["r"]) == {"r": expected}
    finally:
        store.close()


async def test_routing_client_lists_by_query_on_every_engine(
    tmp_path: Path, langgraph_settings: dict[str, Any]
) -> None:
    """With migration rules, `list(query=)` asks every engine the same query, and a routed
    start carries its search attributes to the engine the rules chose."""
    from bridge.client import connect_engine

    settings = {
        "backend": "sql",
        "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db"),
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
        "engines": {"langgraph": langgraph_settings},
        "migrate": {"search_order": {"from": "sql", "to": "langgraph", "ramp": 0}},
    }
    sql = await connect_engine({"backend": "sql", "sql": settings["sql"]})
    lg = await connect_engine(langgraph_settings)
    routing = await bridge.connect(settings)
    try:
        await sql.start(order, "c-42", "", id="on-sql", search_attributes={"customer": "c-42"})
        await lg.start(order, "c-42", "", id="on-lg", search_attributes={"customer": "c-42"})
        await lg.start(order, "c-7", "", id="other", search_attributes={"customer": "c-7"})
        found = await routing.list(query="customer = 'c-42'")
        assert {(d.id, d.engine) for d in found} == {("on-sql", "sql"), ("on-lg", "langgraph")}
        with pytest.raises(bridge.InvalidSearchQueryError):
            await routing.list(query="customer =")
        routed = await routing.start(order, "c-1", "", search_attributes={"customer": "c-1"})
        found = await routing.list(query="customer = 'c-1'")
        assert [(d.id, d.engine) for d in found] == [(routed.id, "sql")]  # ramp 0: stays
        assert (await routing.describe(routed.id)).search_attributes == {"customer": "c-1"}
    finally:
        await routing.close()
        await lg.close()
        await sql.close()
