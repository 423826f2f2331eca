"""An out-of-tree backend (tests/third_party_backend/) passes the conformance suite, found by
its `bridge.backends` entry point alone, and its lacking capability shows as a skip."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROJECT = ROOT / "tests" / "third_party_backend"


def _installed() -> bool:
    return any(
        ep.name == "thirdparty" for ep in importlib.metadata.entry_points(group="bridge.backends")
    )


pytestmark = pytest.mark.skipif(
    not _installed(),
    reason="the example backend is not installed: pip install -e tests/third_party_backend "
    "(the Makefile does it)",
)


def _pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """pytest in the example project's directory: its own rootdir, conftest and settings,
    and nothing of this repository on the import path but the installed packages."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    base.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=PROJECT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_suite_passes_on_a_backend_found_by_its_entry_point(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    proc = _pytest("--bridge-report", str(report_path))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "bridge capability report" in output
    report = json.loads(report_path.read_text())["backends"]["thirdparty"]
    assert "cancellation" not in report["declared_capabilities"]
    assert report["counts"]["failed"] == 0
    # The scenarios needing cancellation are skipped by capability, the rest pass.
    needs_cancel = ("cancellation", "activity_cancellation")
    assert report["counts"]["passed"] == len(report["scenarios"]) - len(needs_cancel)
    for name in needs_cancel:
        assert report["scenarios"][name] == {
            "outcome": "skipped-by-capability",
            "detail": "lacks cancellation",
            "seconds": report["scenarios"][name]["seconds"],
        }


def test_without_its_entry_point_the_backend_is_unknown() -> None:
    proc = _pytest("-k", "test_sequence", env={"BRIDGE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "--bridge-backend thirdparty: no such backend is installed" in output, output
