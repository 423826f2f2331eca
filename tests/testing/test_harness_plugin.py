"""The pytest plugin stays out of the way until asked, and refuses unknown names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.testing import capabilities
from tests.conftest import ROOT


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_project_that_does_not_ask_sees_no_change(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        "def test_plain(request):\n    assert 'bridge_backend_name' not in request.fixturenames\n"
    )
    proc = _pytest(tmp_path, "-q")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "1 passed" in output
    assert "bridge capability report" not in output
    assert not (tmp_path / ".bridge").exists()


def test_options_are_listed_in_help(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--help")
    for option in ("--bridge-backend", "--bridge-reference", "--bridge-report"):
        assert option in proc.stdout


def test_unknown_capability_names_are_errors() -> None:
    assert capabilities.validate(["signals"], where="here") == frozenset({"signals"})
    with pytest.raises(ConfigError, match=r"here: unknown capability 'signal'; known: "):
        capabilities.validate(["signal"], where="here")
    assert capabilities.lacking({"signals"}, ["signals", "patched"]) == ["patched"]


def test_every_backend_declares_only_known_capabilities() -> None:
    from backends.sql import SqlBackend

    assert capabilities.validate(SqlBackend.capabilities, where="sql") == SqlBackend.capabilities
    for module, cls in (
        ("backends.temporal._backend", "TemporalBackend"),
        ("backends.langgraph._backend", "LangGraphBackend"),
    ):
        backend = getattr(pytest.importorskip(module), cls)
        capabilities.validate(backend.capabilities, where=cls)
