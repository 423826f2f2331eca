"""A journal written by an earlier release is read and its open runs finished by this one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import bridge
from bridge.history import EventType
from tests.journal.old_journals import FILES, WORKFLOWS, settings


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_an_old_journal_is_read_and_its_open_runs_finish(
    backend: str, tmp_path: Path
) -> None:
    if backend == "langgraph":
        pytest.importorskip("langgraph")
    path = tmp_path / "journal.db"
    shutil.copyfile(FILES[backend], path)  # the checked-in file is never written
    client = await bridge.connect(settings(backend, path))
    try:
        statuses = {d.id: (d.status, d.waiting_for) for d in await client.list()}
        assert statuses == {
            "done": (bridge.Status.COMPLETED, None),
            "on-signal": (bridge.Status.WAITING, "go"),
            "on-timer": (bridge.Status.WAITING, None),
        }
        assert await client.result("done", timeout=1) == 7
        kinds = [e.type for e in await client.history("done")]
        assert kinds[0] is EventType.WORKFLOW_STARTED
        assert EventType.SIGNAL_RECEIVED in kinds and kinds[-1] is EventType.WORKFLOW_COMPLETED

        async with client.worker(WORKFLOWS):
            # The timer was armed seconds after the first step, long ago: it is due at once.
            assert await client.result("on-timer", timeout=20) == 111
            await client.signal("on-signal", "go", 3)
            assert await client.result("on-signal", timeout=20) == 14
        steps = [e.step for e in await client.history("on-signal") if e.step is not None]
        assert sorted(set(steps)) == [0, 1, 2]
    finally:
        await client.close()
