"""A journal this process may not write is inspected, never written (issue 13, defect 10).

The tests run as root, which may write any file whatever its mode, so "cannot write" is
made true by the store itself: a SQLite file (or directory) with no write bit is opened with
SQLite's `mode=ro` (and `immutable` where no -shm file can exist). The tests prove it: a
write through the store's own engine fails, and the file and its directory are unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

import bridge
from tests.conftest import ROOT
from tests.journal.old_journals import FILES, WORKFLOWS, settings, signalled


@pytest.fixture
def archive(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A copy of an old journal (one run finished, two parked) in a directory and file
    without write bits; the bits are given back at teardown so pytest can clean up."""
    backend = request.node.callspec.params["backend"]
    if backend == "langgraph":
        pytest.importorskip("langgraph")
    folder = tmp_path / "archive"
    folder.mkdir()
    path = folder / "journal.db"
    shutil.copyfile(FILES[backend], path)
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield path
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


@pytest.mark.parametrize("backend", ["sql", "langgraph"])
async def test_a_read_only_journal_is_listed_and_inspected(backend: str, archive: Path) -> None:
    before = archive.read_bytes()
    client = await bridge.connect(settings(backend, archive))
    try:
        store = client.backend.store  # type: ignore[attr-defined]
        assert store.read_only
        with store.engine.connect() as conn, pytest.raises(sqlalchemy.exc.OperationalError) as info:
            conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        assert "readonly" in str(info.value), "the store could have written the file"

        listed = {d.id: d.status for d in await client.list()}
        assert listed == {
            "done": bridge.Status.COMPLETED,
            "on-signal": bridge.Status.WAITING,
            "on-timer": bridge.Status.WAITING,
        }
        assert (await client.describe("on-signal")).waiting_for == "go"
        assert await client.result("done", timeout=1) == 7
        assert len(await client.history("done")) > 3

        with pytest.raises(bridge.StorageError, match="read-only") as refused:
            await client.start(signalled, 1, id="new")
        assert str(archive) in str(refused.value)
        with pytest.raises(bridge.StorageError, match="read-only"):
            await client.signal("on-signal", "go", 1)
        with pytest.raises(bridge.StorageError, match="a worker cannot run"):
            await client.worker(WORKFLOWS).run()
    finally:
        await client.close()
    assert archive.read_bytes() == before
    assert os.listdir(archive.parent) == ["journal.db"], "no -wal/-shm may appear"


@pytest.mark.parametrize("backend", ["sql"])
def test_bridge_list_and_status_work_on_a_read_only_journal(backend: str, archive: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(BRIDGE_SQL_URL=f"sqlite:///{archive}", COLUMNS="200", PYTHONPATH=str(ROOT))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli", *args],
            cwd=archive.parent.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "on-signal" in listed.stdout and "on-timer" in listed.stdout
    status = cli("status", "done")
    assert status.returncode == 0, status.stderr
    assert "COMPLETED" in status.stdout.upper()
    assert os.listdir(archive.parent) == ["journal.db"]


def test_an_empty_read_only_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "journal.db"
    path.touch(mode=0o444)
    folder.chmod(0o555)
    try:
        from backends.sql import open_store
        from bridge.config import SqlSettings

        with pytest.raises(
            bridge.StorageError, match=r"read-only.*no journal tables.*write access"
        ):
            open_store(SqlSettings(url=f"sqlite:///{path}"))
        assert path.read_bytes() == b""
    finally:
        folder.chmod(0o755)
