"""Several worker processes sharing one journal: leases keep every side effect single."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.conftest import Workers, fast_sql
from tests.wfs import five_steps

RUNS = 200


async def two_workers_share(settings: dict[str, Any], tmp_path: Path, ledger_path: str) -> None:
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        ids = [f"run-{i:03d}" for i in range(RUNS)]
        for id in ids:
            await client.start(five_steps, ledger_path, 0, "", id=id)
        workers.start()
        workers.start()
        results = await asyncio.gather(*(client.result(id, timeout=240) for id in ids))
        owners = {e.id: e.status for e in await client.list(limit=RUNS + 10)}
    finally:
        workers.close()
        await client.close()
    assert all(r == [f"step{i}" for i in range(1, 6)] for r in results)
    assert len(owners) == RUNS and set(owners.values()) == {bridge.Status.COMPLETED}
    calls = ledger.counts(ledger_path)
    assert len(calls) == RUNS * 5
    repeated = {k: v for k, v in calls.items() if v != 1}
    assert not repeated, f"side effects ran more than once: {repeated}"
    # Both processes did work: the leases spread the runs.
    logs = [p.read_text() for p in sorted(tmp_path.glob("worker*.log"))]
    assert len(logs) == 2


def shared_settings(url: str) -> dict[str, Any]:
    # A 10 s lease (the default is 30 s): two busy workers on a 2-core machine can stall
    # their event loops for seconds on SQLite's write lock, and a lease shorter than a stall
    # hands runs over while their steps are in flight (at-least-once, as designed).
    return {"backend": "sql", "sql": {**fast_sql(url), "lease_seconds": 10.0}}


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_workers_on_postgres(pg_url: str, tmp_path: Path, ledger_path: str) -> None:
    await two_workers_share(shared_settings(pg_url), tmp_path, ledger_path)


@pytest.mark.slow
async def test_two_workers_on_sqlite(tmp_path: Path, ledger_path: str) -> None:
    url = f"sqlite:///{tmp_path}/bridge.db"
    await two_workers_share(shared_settings(url), tmp_path, ledger_path)
