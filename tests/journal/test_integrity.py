"""`check_integrity` finds garbage in the middle of a SQLite journal (issue 13, defect 8)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine

import bridge
from bridge.errors import StorageError
from bridge.journal.integrity import check_integrity
from tests.wfs import five_steps

RUNS = 300  # enough runs for bridge_workflows to span several pages


async def make_journal(path: Path) -> str:
    """A real sql journal with `RUNS` runs in it, written back to its file (no WAL left)."""
    url = f"sqlite:///{path}"
    client = await bridge.connect({"backend": "sql", "sql": {"url": url}})
    try:
        for i in range(RUNS):
            await client.start(five_steps, str(path.parent / "ledger.db"), 0, "", id=f"r{i:04d}")
    finally:
        await client.close()  # the last connection to close checkpoints the WAL
    assert not Path(f"{path}-wal").exists()
    return url


def corrupt_a_table_page(path: Path) -> int:
    """Overwrite 64 bytes inside a leaf page of bridge_workflows, past its page header (the
    cell pointers), in the middle of the file; the page number."""
    conn = sqlite3.connect(path)
    try:
        pages = [
            p
            for (p,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'bridge_workflows' AND pagetype = 'leaf'"
                " ORDER BY pageno"
            )
        ]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    page = pages[len(pages) // 2]
    with open(path, "r+b") as fh:
        fh.seek((page - 1) * page_size + 8)
        fh.write(b"\xde\xad\xbe\xef" * 16)
    return int(page)


async def test_an_intact_journal_passes(tmp_path: Path) -> None:
    url = await make_journal(tmp_path / "journal.db")
    assert "found no damage" in check_integrity(url)


async def test_garbage_in_a_table_page_is_reported_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    url = await make_journal(path)
    page = corrupt_a_table_page(path)
    with pytest.raises(StorageError) as info:
        check_integrity(url)
    message = str(info.value)
    assert str(path) in message
    assert f"page {page}" in message  # SQLite's own finding
    assert "restore the file from a backup" in message and "bridge doctor" in message
    # The engine a worker holds is checked the same way.
    engine = create_engine(url)
    try:
        with pytest.raises(StorageError, match="is damaged"):
            check_integrity(engine)
    finally:
        engine.dispose()


def test_a_missing_journal_is_reported_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    with pytest.raises(StorageError, match=f"no SQLite journal at {path}"):
        check_integrity(f"sqlite:///{path}")
    assert not path.exists()


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"not a database " * 512)
    with pytest.raises(StorageError, match="file is not a database"):
        check_integrity(f"sqlite:///{path}")


def test_a_postgresql_journal_is_left_to_its_server() -> None:
    report = check_integrity("postgresql+psycopg://u:secret@db.example/x")
    assert "its server" in report and "secret" not in report


async def test_a_worker_refuses_a_damaged_journal_before_claiming_a_run(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    url = await make_journal(path)
    corrupt_a_table_page(path)
    client = await bridge.connect({"backend": "sql", "sql": {"url": url}})
    try:
        worker = client.worker([five_steps])
        with pytest.raises(StorageError, match="is damaged"):
            await asyncio.wait_for(worker.run(), 30)
    finally:
        await client.close()
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists()  # no run was claimed, so no step ran
