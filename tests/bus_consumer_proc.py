"""A consumer process for the SQL outbox crash test (tests/bus/test_outbox.py).

    python -m tests.bus_consumer_proc URL STARTED_PATH [HANG_ON_ID]

Handles subscription "ledger": each event is written to `bus_test_ledger` through the
handler's connection (so in the inbox's transaction). Before that, the event id is appended
to STARTED_PATH outside any transaction, so the test can tell which handlers had begun. The
handler for event HANG_ON_ID hangs after its write, so a SIGKILL from the test is sure to
land mid-handler with uncommitted work.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table

from bridge.bus import Consumer, Event, SqlOutbox

ledger_meta = MetaData()
ledger = Table(
    "bus_test_ledger",
    ledger_meta,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
)

SUBSCRIPTION = "ledger"
LEASE_SECONDS = 1.0


async def main(url: str, started_path: str, hang_on: str | None) -> None:
    outbox = SqlOutbox(url=url)
    started = open(started_path, "a")  # noqa: SIM115 - kept open for the process's life

    async def handler(event: Event, conn: Any) -> None:
        started.write(f"{os.getpid()} {event.id}\n")
        started.flush()
        os.fsync(started.fileno())
        conn.execute(ledger.insert().values(event_id=event.id, pid=os.getpid()))
        await asyncio.sleep(60 if event.id == hang_on else 0.002)

    consumer = Consumer(
        transport=outbox,
        subscription=SUBSCRIPTION,
        handler=handler,
        batch_size=5,
        lease_seconds=LEASE_SECONDS,
        poll_interval=0.02,
    )
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
