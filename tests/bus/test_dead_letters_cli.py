"""`bridge bus dead-letters list|replay|drop` on a real SQLite outbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from bridge.bus._cli import bus_app
from bridge.bus.envelope import Event
from bridge.bus.outbox import SqlOutbox


async def _bury(url: str, ids: list[str]) -> None:
    """Publish events and fail each delivery once: with max_deliveries=1 they are dead."""
    outbox = SqlOutbox(url=url, max_deliveries=1)
    try:
        await outbox.subscribe("mailer", ["order.paid"])
        for i in ids:
            await outbox.publish(Event.new("order.paid", {"order": i}, source="shop", id=i))
        for delivery in await outbox.claim("mailer", max_messages=10):
            await outbox.nack(delivery, error=f"smtp down for {delivery.event.id}")
    finally:
        await outbox.close()


async def _claim_ids(url: str) -> list[str]:
    outbox = SqlOutbox(url=url)
    try:
        return sorted(d.event.id for d in await outbox.claim("mailer", max_messages=10))
    finally:
        await outbox.close()


def test_list_replay_and_drop_dead_letters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bus.db"
    asyncio.run(_bury(url, ["o1", "o2", "o3"]))
    runner = CliRunner()

    listed = runner.invoke(bus_app, ["dead-letters", "list", "--url", url, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["subscription"], r["event"]["id"], r["attempts"]) for r in rows] == [
        ("mailer", "o1", 1),
        ("mailer", "o2", 1),
        ("mailer", "o3", 1),
    ]
    assert rows[0]["error"] == "smtp down for o1"

    replayed = runner.invoke(
        bus_app, ["dead-letters", "replay", "mailer", "o1", "o2", "--url", url]
    )
    assert replayed.exit_code == 0 and "replayed 2 dead letters" in replayed.output
    # Replayed letters are deliveries again, and no longer dead.
    assert asyncio.run(_claim_ids(url)) == ["o1", "o2"]
    dropped = runner.invoke(bus_app, ["dead-letters", "drop", "mailer", "--url", url])
    assert dropped.exit_code == 0 and "dropped 1 dead letter of 'mailer'" in dropped.output
    empty = runner.invoke(bus_app, ["dead-letters", "list", "--url", url])
    assert empty.exit_code == 0 and "no dead letters" in empty.output
