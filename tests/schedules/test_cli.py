"""`bridge schedule ...`, run for real in subprocesses on a fresh SQLite journal.

No worker runs here: a schedule's fires are runs in the journal, which `bridge list` shows
before any worker executes them. The scheduler itself is tested in test_embedded.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("bridge")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bridge.cli"]


@pytest.fixture
def bridge_cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        BRIDGE_SQL_URL=f"sqlite:///{tmp_path}/journal.db",
        PYTHONPATH=str(ROOT),
        COLUMNS="200",
    )

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*_command(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert (proc.returncode == 0) == ok, (proc.stdout, proc.stderr)
        return proc

    return run


def test_create_list_describe_pause_resume_trigger_delete(bridge_cli) -> None:  # type: ignore[no-untyped-def]
    out = bridge_cli(
        "schedule",
        "create",
        "tests.schedules.sched_wfs:tick",
        '["c"]',
        "--id",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--overlap",
        "buffer_one",
    ).stdout
    assert "created schedule nightly" in out and "03:00:00" in out

    listed = bridge_cli("schedule", "list").stdout
    assert "nightly" in listed and "0 3 * * *" in listed and "active" in listed
    assert [d["id"] for d in json.loads(bridge_cli("schedule", "list", "--json").stdout)] == [
        "nightly"
    ]

    desc = json.loads(bridge_cli("schedule", "describe", "nightly").stdout)
    assert desc["workflow"] == "tick" and desc["args"] == {"label": "c"}
    assert desc["overlap"] == "buffer_one" and desc["paused"] is False

    assert "paused schedule nightly" in bridge_cli("schedule", "pause", "nightly").stdout
    assert json.loads(bridge_cli("schedule", "describe", "nightly").stdout)["paused"] is True
    assert "paused" in bridge_cli("schedule", "list").stdout
    bridge_cli("schedule", "resume", "nightly")
    assert json.loads(bridge_cli("schedule", "describe", "nightly").stdout)["paused"] is False

    bridge_cli("schedule", "trigger", "nightly")
    desc = json.loads(bridge_cli("schedule", "describe", "nightly").stdout)
    assert desc["fired"] == 1 and desc["recent"][0].startswith("nightly-")
    assert desc["recent"][0] in bridge_cli("list").stdout  # the run waits for a worker

    assert "deleted schedule nightly" in bridge_cli("schedule", "delete", "nightly").stdout
    gone = bridge_cli("schedule", "describe", "nightly", ok=False)
    assert "no schedule with id 'nightly'" in gone.stderr
    assert "bridge schedule list" in gone.stderr


def test_mistakes_are_one_line_errors(bridge_cli) -> None:  # type: ignore[no-untyped-def]
    bad = bridge_cli(
        "schedule", "create", "tests.schedules.sched_wfs:tick", '["c"]', "--id", "x",
        "--cron", "every day", ok=False,
    )  # fmt: skip
    assert "cron expression 'every day'" in bad.stderr and "5 fields" in bad.stderr
    missing = bridge_cli("schedule", "create", "tests.schedules.sched_wfs:tick", ok=False)
    assert "--id is required" in missing.stderr
    bridge_cli(
        "schedule", "create", "tests.schedules.sched_wfs:tick", '["c"]', "--id", "x",
        "--cron", "@hourly",
    )  # fmt: skip
    again = bridge_cli(
        "schedule", "create", "tests.schedules.sched_wfs:tick", '["c"]', "--id", "x",
        "--cron", "@hourly", ok=False,
    )  # fmt: skip
    assert "a schedule with id 'x' exists already" in again.stderr
    assert "no schedule with id 'y'" in bridge_cli("schedule", "trigger", "y", ok=False).stderr
