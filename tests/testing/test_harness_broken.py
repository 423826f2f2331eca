"""The conformance suite catches broken backends, naming the scenario and the difference.

Each case runs the suite in a pytest subprocess (as a project would) against a test-only
backend from tests/broken_backends.py, and reads both the failure output and the JSON
capability report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CONFTEST = """\
import tests.broken_backends  # registers the broken backends (not an entry point)
"""
TEST_MODULE = "from bridge.testing.suite import *  # noqa: F403\n"
PYTEST_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def run_suite(tmp_path: Path, backend: str, select: str) -> tuple[str, dict[str, Any]]:
    """Run the scenarios matching `select` on `backend`; (output, report)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_conformance.py").write_text(TEST_MODULE)
    (project / "pytest.ini").write_text(PYTEST_INI)
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--bridge-backend",
            backend,
            "--bridge-report",
            str(report),
            "-k",
            select,
            "test_conformance.py",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, (
        f"expected failing tests (exit 1), got {proc.returncode}:\n{output}"
    )
    return output, json.loads(report.read_text())


@pytest.mark.slow
def test_a_backend_that_reruns_a_completed_step_is_caught(tmp_path: Path) -> None:
    output, report = run_suite(
        tmp_path,
        "broken-rerun",
        "(test_signal and not timeout) or test_crash_resume_at_every_step_boundary",
    )
    scenarios = report["backends"]["broken-rerun"]["scenarios"]
    crash = scenarios["crash_resume_at_every_step_boundary"]
    assert crash["outcome"] == "failed"
    # The kill after step 2 lands while step 3 waits to start; resuming re-runs step 2.
    expected = "crash-resume after step 2 ('charge'): step 'charge' ran 2 times, expected 1"
    assert expected in output, output
    signal = scenarios["signal"]
    assert signal["outcome"] == "failed"
    assert "signal: step 'asked' ran" in signal["detail"], signal
    assert (
        "FAILED test_conformance.py::test_crash_resume_at_every_step_boundary[broken-rerun]"
        in output
    )


@pytest.mark.slow
def test_a_backend_that_drops_a_signal_is_caught(tmp_path: Path) -> None:
    output, report = run_suite(
        tmp_path, "broken-drop-signal", "(test_signal and not timeout) or test_sequence"
    )
    scenarios = report["backends"]["broken-drop-signal"]["scenarios"]
    assert scenarios["sequence"]["outcome"] == "passed"
    signal = scenarios["signal"]
    assert signal["outcome"] == "failed"
    assert "signal (sent before the wait)" in signal["detail"], signal
    assert "did not finish" in signal["detail"] and "waiting for 'approve'" in signal["detail"]
    assert "FAILED test_conformance.py::test_signal[broken-drop-signal]" in output
