"""Events per second end to end through the SQL outbox: publish -> handler committed.

Publisher tasks publish events one `await outbox.publish(event)` at a time (concurrent
publishes share a commit: group commit); a `Consumer` in the same process claims batches
and handles each event in one transaction per batch: the inbox row, a ledger row written
by the handler through its connection, and the ack. The clock stops when the last event's
handler has committed; the ledger is then checked (every event exactly once).

    .venv/bin/python -m bench.bus_outbox                       # SQLite and PostgreSQL
    .venv/bin/python -m bench.bus_outbox --backend sqlite --events 2000
    .venv/bin/python -m bench.bus_outbox --durability NORMAL

PostgreSQL runs in a fresh database on BRIDGE_BENCH_PG (default
postgresql+psycopg://postgres@127.0.0.1:5432/test), dropped afterwards; it is skipped with
a note when the server does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func, select

from bridge.bus import Consumer, Event, SqlOutbox

PG_ADMIN = os.environ.get("BRIDGE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_meta = MetaData()
_ledger = Table(
    "bench_bus_ledger",
    _meta,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
)


@dataclass
class Row:
    backend: str
    durability: str
    events: int
    publishers: int
    batch: int
    seconds: float
    handled: int
    duplicates: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def run_once(url: str, *, events: int, publishers: int, batch: int, durability: str) -> Row:
    outbox = SqlOutbox(url=url, durability=durability)  # type: ignore[arg-type]
    with outbox.engine.begin() as conn:
        _meta.create_all(conn)
    handled = 0
    record = _ledger.insert()  # built once, as a tuned handler would

    async def handler(event: Event, conn: Any) -> None:
        nonlocal handled
        conn.execute(record, {"event_id": event.id})
        handled += 1

    consumer = Consumer(
        transport=outbox,
        subscription="bench",
        handler=handler,
        batch_size=batch,
        poll_interval=0.001,
    )
    await consumer.subscribe()
    run = uuid.uuid4().hex[:8]

    async def publish(p: int) -> None:
        for i in range(p, events, publishers):
            await outbox.publish(Event.new("bench.tick", {"i": i}, source="bench", id=f"{run}-{i}"))

    started = time.perf_counter()
    consuming = asyncio.ensure_future(consumer.run(until=lambda: handled >= events))
    await asyncio.gather(*(publish(p) for p in range(publishers)))
    await consuming
    seconds = time.perf_counter() - started
    with outbox._reader() as conn:
        rows, distinct = conn.execute(
            select(func.count(), func.count(_ledger.c.event_id.distinct()))
        ).one()
    await outbox.close()
    if rows != events or distinct != events:
        raise SystemExit(f"ledger check failed: {rows} rows, {distinct} distinct, {events} sent")
    return Row(
        backend=url.split(":", 1)[0].split("+", 1)[0],
        durability=durability if url.startswith("sqlite") else "-",
        events=events,
        publishers=publishers,
        batch=batch,
        seconds=seconds,
        handled=consumer.stats.handled,
        duplicates=consumer.stats.duplicates,
    )


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        yield f"sqlite:///{Path(tmp)}/bus.db"


@contextmanager
def postgres_url() -> Iterator[str | None]:
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"bench_bus_{os.getpid()}"
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:
        print(f"PostgreSQL skipped: {PG_ADMIN} does not answer ({type(exc).__name__})")
        yield None
        return
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--publishers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=200, help="deliveries per claim")
    ap.add_argument("--durability", choices=["FULL", "NORMAL"], default="FULL")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    kw = {
        "events": args.events,
        "publishers": args.publishers,
        "batch": args.batch,
        "durability": args.durability,
    }
    rows: list[Row] = []
    for _ in range(args.repeat):
        if args.backend in ("sqlite", "all"):
            with sqlite_url() as url:
                rows.append(asyncio.run(run_once(url, **kw)))
        if args.backend in ("postgres", "all"):
            with postgres_url() as url:
                if url is not None:
                    rows.append(asyncio.run(run_once(url, **kw)))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nSQL outbox, publish -> handler committed (inbox + ledger + ack); loadavg {load}")
    print(
        f"{'backend':<11}{'durability':>11}{'events':>8}{'publishers':>11}{'batch':>7}"
        f"{'seconds':>9}{'events/s':>10}"
    )
    for r in rows:
        print(
            f"{r.backend:<11}{r.durability:>11}{r.events:>8}{r.publishers:>11}{r.batch:>7}"
            f"{r.seconds:>9.2f}{r.rate:>10,.0f}"
        )


if __name__ == "__main__":
    main()
