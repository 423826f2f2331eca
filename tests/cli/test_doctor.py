"""`bridge doctor` checks the configured journal and says what it found (issue 13, defect 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.journal.test_integrity import corrupt_a_table_page, make_journal


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "doctor"],
        cwd=ROOT,
        env={**base, **env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_doctor_says_ok_then_reports_a_damaged_page(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    url = await make_journal(path)
    done = doctor({"BRIDGE_SQL_URL": url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"SQLite journal {path}: PRAGMA quick_check found no damage",
        "OK",
    ]

    page = corrupt_a_table_page(path)
    done = doctor({"BRIDGE_SQL_URL": url})
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: the SQLite journal {path} is damaged")
    assert f"page {page}" in done.stderr and "restore the file from a backup" in done.stderr
    assert "OK" not in done.stdout


async def test_doctor_checks_the_langgraph_journal_too(tmp_path: Path) -> None:
    path = tmp_path / "lg.db"
    path.write_bytes(b"garbage " * 1024)
    done = doctor({"BRIDGE_BACKEND": "langgraph", "BRIDGE_LANGGRAPH_URL": f"sqlite:///{path}"})
    assert done.returncode == 1
    assert f"the SQLite journal {path} is damaged" in done.stderr


def test_doctor_on_a_backend_without_a_journal_file() -> None:
    done = doctor({"BRIDGE_BACKEND": "temporal"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["backend temporal: no journal of its own to check", "OK"]
