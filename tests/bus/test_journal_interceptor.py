"""The bus's journal interceptor: with `[sql] outbox = true` the journal creates the outbox
tables itself and writes each run's completion event in the transaction that ends the run;
without it, the journal database holds no bus table at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import bridge
from tests.conftest import fast_sql

pytestmark = pytest.mark.timeout(60)


@bridge.workflow
async def ji_echo(ctx: bridge.Context, x: int) -> int:
    return x


def _bus_rows(url: str) -> list[tuple[str, str]] | None:
    """(id, type) of every stored event; None when the outbox tables do not exist."""
    engine = sa.create_engine(url)
    try:
        if not sa.inspect(engine).has_table("bridge_bus_events"):
            return None
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, type FROM bridge_bus_events ORDER BY id"))
            return [(r.id, r.type) for r in rows]
    finally:
        engine.dispose()


@pytest.mark.parametrize("outbox", [True, False])
async def test_the_journal_publishes_endings_only_with_the_outbox_on(
    outbox: bool, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/journal.db"
    settings = {"backend": "sql", "sql": {**fast_sql(url), "outbox": outbox}}
    async with await bridge.connect(settings) as client:
        # Opening the journal created the tables (no SqlOutbox was ever made here).
        assert _bus_rows(url) == ([] if outbox else None)
        async with client.worker([ji_echo]):
            assert await client.execute(ji_echo, 7, id="ji-1", timeout=20) == 7
    ended = [("ji-1/completed", "bridge.workflow.completed.v1")]
    assert _bus_rows(url) == (ended if outbox else None)
