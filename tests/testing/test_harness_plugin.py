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


# -- scenarios from plugins -----------------------------------------------------------------
def _installed(site: Path, name: str, entry_points: str) -> None:
    """A distribution `name` installed in `site` (a dist-info folder, as pip leaves one),
    with `entry_points` (the entry_points.txt format)."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


EXTRA_SCENARIOS = """
import sys

import pytest

import bridge
from bridge.plugins import hookimpl

__all__ = ["bridge_expected_backend", "test_extra_scenario"]


@hookimpl
def bridge_test_scenarios():
    return [sys.modules[__name__]]


@pytest.fixture
def bridge_expected_backend():
    return "sql"


@pytest.mark.asyncio
async def test_extra_scenario(bridge_client, bridge_expected_backend):
    backend = bridge_client.backend.name
    assert backend == bridge_expected_backend.upper()
"""


def test_a_package_adds_scenarios_through_the_testing_entry_point(tmp_path: Path) -> None:
    """The scenario runs per backend with the harness's fixtures and its own, its asserts
    are rewritten, and a plugin that cannot be imported is one skip that says why."""
    site = tmp_path / "site"
    _installed(site, "extra_scenarios", "[bridge.testing]\nextra = extra_scenarios\n")
    _installed(site, "broken_scenarios", "[bridge.testing]\nbroken = no_such_module_here\n")
    (site / "extra_scenarios.py").write_text(EXTRA_SCENARIOS)
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_suite.py").write_text("from bridge.testing.suite import *  # noqa: F403\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    selection = ["-k", "extra or broken", "--bridge-backend", "sql"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-v", *selection],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert "test_extra_scenario[sql] FAILED" in output, output
    assert "assert 'sql' == 'SQL'" in output, output  # rewritten: the values are shown
    assert "test_broken_scenarios SKIPPED" in output, output
    assert "no_such_module_here cannot be imported: No module named 'no_such_module_here'" in (
        output
    )


def test_the_agent_scenario_is_the_adapters_not_the_harnesss() -> None:
    pytest.importorskip("agents", reason='needs "durable-bridge[openai-agents]"')
    from bridge.testing import suite

    assert "test_agent_loop_with_tools" in suite.__all__
    assert suite.test_agent_loop_with_tools.__module__ == "adapters.openai_agents.testing"
