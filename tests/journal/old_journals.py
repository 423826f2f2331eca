"""Journals written by an earlier release, kept to prove that a new release still finishes them.

`python -m tests.journal.old_journals` wrote `old_sql.db` and `old_langgraph.db` beside this
file with the code of commit 3cdb218 (before the journal core was shared): on each, one run
finished, one parked on a signal and one parked on a two-second timer (long due when a test
opens the file). `test_old_journals.py` opens copies of them with the current code and
finishes the open runs. Do not regenerate them with newer code: they are the old format.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import bridge

HERE = Path(__file__).resolve().parent
FILES = {"sql": HERE / "old_sql.db", "langgraph": HERE / "old_langgraph.db"}


@bridge.activity
async def add(a: int, b: int) -> int:
    return a + b


@bridge.workflow(name="old_signalled")
async def signalled(ctx: bridge.Context, x: int) -> int:
    y = await ctx.run(add, x, 1)
    got = await ctx.wait_for_signal("go")
    return await ctx.run(add, y, got)


@bridge.workflow(name="old_timed")
async def timed(ctx: bridge.Context, x: int) -> int:
    y = await ctx.run(add, x, 1)
    await ctx.sleep(2.0)
    return await ctx.run(add, y, 10)


WORKFLOWS = [signalled, timed]


def settings(backend: str, path: Path) -> dict[str, Any]:
    return {"backend": backend, backend: {"url": f"sqlite:///{path}", "poll_interval": 0.02}}


async def _until(client: bridge.Client, id: str, status: bridge.Status) -> None:
    for _ in range(500):
        if (await client.describe(id)).status is status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{id} never became {status}")


async def write(backend: str, path: Path) -> None:
    """The three runs: `done` (finished, 1+1+5), `on-signal` and `on-timer` (parked)."""
    client = await bridge.connect(settings(backend, path))
    try:
        async with client.worker(WORKFLOWS):
            await client.start(signalled, 1, id="done")
            await _until(client, "done", bridge.Status.WAITING)
            await client.signal("done", "go", 5)
            assert await client.result("done", timeout=10) == 7
            await client.start(signalled, 10, id="on-signal")
            await client.start(timed, 100, id="on-timer")
            await _until(client, "on-signal", bridge.Status.WAITING)
            await _until(client, "on-timer", bridge.Status.WAITING)
    finally:
        await client.close()


def main() -> None:
    for backend, target in FILES.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "journal.db"
            asyncio.run(write(backend, path))
            leftovers = sorted(p.name for p in Path(tmp).iterdir() if p != path)
            assert not leftovers, f"WAL not checkpointed into {path}: {leftovers}"
            shutil.copyfile(path, target)
        print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
