"""bridge.Limit: at most `max` steps of a key at once, across workers; the rest queue durably."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.errors import ConfigError
from tests.conftest import Workers, fast_sql
from tests.core import concurrency_wfs as cw

TENANTS = ("t-a", "t-b", "t-c")


def test_a_limit_must_name_a_parameter() -> None:
    with pytest.raises(ConfigError, match="names no parameter"):

        @bridge.activity(concurrency=bridge.Limit(key="customer", max=2))
        def f(tenant: str) -> None: ...

    with pytest.raises(ConfigError, match="whole number"):
        bridge.Limit(key="tenant", max=0)


def test_a_callable_key_and_a_shared_pool() -> None:
    limit = bridge.Limit(key=lambda tenant, **_: tenant.upper(), max=1, name="provider")
    assert limit.permit_key("embed", {"tenant": "t-a", "item": 1}) == "provider:T-A"
    assert bridge.Limit(key="tenant", max=1).permit_key("embed", {"tenant": "x"}) == "embed:x"


@pytest.fixture(params=["sql", "langgraph"])
def journal_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The journal engines: a queued step parks its run on sql and waits in its LangGraph
    task on langgraph (see GraphContext._wait_for_permit)."""
    return request.getfixturevalue(f"{request.param}_settings")


async def test_steps_of_a_tenant_queue_and_all_complete(
    journal_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = str(tmp_path / "intervals.log")
    client = await bridge.connect(journal_settings)
    async with client, client.worker([cw.embed_all]):
        ids = [(await client.start(cw.embed_all, t, 8, log)).id for t in TENANTS]
        results = await asyncio.gather(*(client.result(i, timeout=60) for i in ids))
        statuses = [(await client.describe(i)).status for i in ids]
    assert results == [sum(2 * i for i in range(8))] * 3
    assert statuses == [bridge.Status.COMPLETED] * 3
    assert cw.count(log) == 24  # every step ran once
    assert max(cw.peaks(log).values()) == cw.PER_TENANT  # the limit, and it was reached


async def test_a_cancelled_run_gives_its_permits_back(
    journal_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = str(tmp_path / "intervals.log")
    client = await bridge.connect(journal_settings)
    async with client, client.worker([cw.embed_all]):
        first = (await client.start(cw.embed_all, "t-a", 6, log)).id
        await asyncio.sleep(0.05)
        await client.cancel(first)
        second = (await client.start(cw.embed_all, "t-a", 3, log)).id
        assert await client.result(second, timeout=30) == 6
    store = client.backend.store  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        left = conn.execute(store.schema.permits.select()).all()
    assert left == []


async def _sixty_steps_three_workers(
    settings: dict[str, Any], tmp_path: Path, *, spread: bool = True
) -> None:
    log = str(tmp_path / "intervals.log")
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        calls = [(t, i) for t in TENANTS for i in range(20)]
        ids = [(await client.start(cw.embed_one, t, i, log)).id for t, i in calls]
        for _ in range(3):
            workers.start("tests.core.concurrency_wfs")
        results = await asyncio.gather(*(client.result(i, timeout=120) for i in ids))
        listed = {e.name for e in await client.list(limit=200)}
    finally:
        workers.close()
        await client.close()
    assert sorted(results) == sorted(2 * i for _ in TENANTS for i in range(20))
    # The bridge's own semaphore workflows on Temporal are not the user's runs.
    assert "embed_one" in listed and not listed & {"bridge.permits", "bridge.rate"}
    assert cw.count(log) == 60
    peaks = cw.peaks(log)
    assert set(peaks) == set(TENANTS)
    assert max(peaks.values()) <= cw.PER_TENANT, peaks
    pids = {line.split()[3] for line in Path(log).read_text().splitlines()}
    if spread:  # sql: a parked run goes back to whichever worker claims it next
        assert len(pids) >= 2, "the steps should have spread over the worker processes"


@pytest.mark.postgres
async def test_sixty_steps_three_tenants_three_workers_on_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    await _sixty_steps_three_workers({"backend": "sql", "sql": fast_sql(pg_url)}, tmp_path)


async def test_sixty_steps_three_tenants_three_workers_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bridge.db"
    await _sixty_steps_three_workers({"backend": "sql", "sql": fast_sql(url)}, tmp_path)


async def test_sixty_steps_three_tenants_three_workers_on_langgraph(
    langgraph_settings: dict[str, Any], tmp_path: Path
) -> None:
    # One worker may claim every run first (it claims up to its concurrency at once) and
    # wait in their tasks: the limit must hold whichever worker runs the steps.
    await _sixty_steps_three_workers(langgraph_settings, tmp_path, spread=False)


async def test_sixty_steps_three_tenants_three_workers_on_temporal(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    await _sixty_steps_three_workers(temporal_settings, tmp_path, spread=False)


async def _paced_by_two_workers(settings: dict[str, Any], tmp_path: Path) -> None:
    """Two runs per tenant, each a gather of 5 attempts, served by two worker processes:
    the attempts of a tenant start 1/RATE apart at least, whichever worker makes them."""
    log = str(tmp_path / "starts.log")
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        ids = [
            (await client.start(cw.paced_all, t, 5, log)).id for t in ("t-a", "t-b") for _ in "12"
        ]
        for _ in range(2):
            workers.start("tests.core.concurrency_wfs")
        await asyncio.gather(*(client.result(i, timeout=120) for i in ids))
    finally:
        workers.close()
        await client.close()
    for tenant, times in cw.starts(log).items():
        assert len(times) == 10, tenant
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # 1/RATE = 0.2 s apart; a little slack for clocks read in two processes.
        assert min(gaps) >= 0.9 / cw.RATE, (tenant, gaps)
        assert times[-1] - times[0] >= 9 * 0.9 / cw.RATE


async def test_rate_limit_paces_attempts_across_workers_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bridge.db"
    await _paced_by_two_workers({"backend": "sql", "sql": fast_sql(url)}, tmp_path)


@pytest.mark.postgres
async def test_rate_limit_paces_attempts_across_workers_on_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    await _paced_by_two_workers({"backend": "sql", "sql": fast_sql(pg_url)}, tmp_path)


async def test_rate_limit_paces_attempts_across_workers_on_temporal(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    await _paced_by_two_workers(temporal_settings, tmp_path)


def test_a_rate_limit_is_checked() -> None:
    with pytest.raises(ConfigError, match="per_second"):
        bridge.RateLimit(per_second=0)
    with pytest.raises(ConfigError, match="names no parameter"):

        @bridge.activity(rate_limit=bridge.RateLimit(per_second=1, key="customer"))
        def f(tenant: str) -> None: ...
