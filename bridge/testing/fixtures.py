"""The harness's fixtures, registered by `bridge.testing.plugin` when pytest-asyncio is there.

Every name starts with `bridge_`, so a project's own `client` or `settings` fixtures never
shadow them (nor they a project's). A test that requests any of them runs once per backend
under test (the plugin parametrizes `bridge_backend_name`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import bridge
from bridge.client import connect_engine
from bridge.testing import capabilities
from bridge.testing.faults import FaultPlan
from bridge.testing.hookspecs import TestEnvironment
from bridge.testing.ledger import Ledger
from bridge.testing.plugin import HARNESS, Environments

#: The module every worker subprocess imports: the suite's standard workflows.
WORKFLOWS_MODULE = "bridge.testing._workflows"


@pytest.fixture(scope="session")
def bridge_environments(request: pytest.FixtureRequest) -> Iterator[Environments]:
    """The session's backend environments (a Temporal dev server, say), entered on first use
    and left at the end of the session: one per backend per session."""
    environments = request.config.stash[HARNESS].environments
    yield environments
    environments.close()


@pytest.fixture
def bridge_backend_name(request: pytest.FixtureRequest) -> str:
    """The backend under test (parametrized by the plugin: one test per backend)."""
    name: str = request.param
    return name


@pytest.fixture
def bridge_environment(
    bridge_backend_name: str, bridge_environments: Environments
) -> TestEnvironment:
    return bridge_environments.get(bridge_backend_name)


@pytest.fixture
def bridge_settings(bridge_environment: TestEnvironment, tmp_path: Path) -> dict[str, Any]:
    """Settings (as for `bridge.connect`) of a fresh, empty store of the backend under test."""
    return bridge_environment.settings(tmp_path)


@pytest_asyncio.fixture(loop_scope="function")
async def bridge_client(
    bridge_settings: dict[str, Any], bridge_backend_name: str, request: pytest.FixtureRequest
) -> AsyncIterator[bridge.Client]:
    """A connected client; skips the test when the backend lacks a capability it requires."""
    # The backend under test itself, whatever migration rules the project's bridge.toml has.
    client = await connect_engine(bridge_settings)
    try:
        declared = capabilities.validate(
            type(client.backend).capabilities,
            where=f"{type(client.backend).__qualname__}.capabilities",
        )
        harness = request.config.stash[HARNESS]
        harness.report.declare(bridge_backend_name, declared)
        required = [name for mark in request.node.iter_markers("requires") for name in mark.args]
        capabilities.validate(required, where=f"@pytest.mark.requires on {request.node.name}")
        missing = capabilities.lacking(declared, required)
        if missing:
            harness.report.skipped_for(request.node.nodeid, missing)
            pytest.skip(
                f"backend {bridge_backend_name!r} does not declare {', '.join(missing)} "
                f"(skipped by capability)"
            )
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(loop_scope="function")
async def bridge_worker(bridge_client: bridge.Client) -> AsyncIterator[bridge.Worker]:
    """An in-process worker serving the suite's standard workflows while the test runs."""
    from bridge.testing import _workflows

    async with bridge_client.worker(_workflows.STANDARD) as worker:
        yield worker


@pytest.fixture
def bridge_ledger(tmp_path: Path) -> Ledger:
    """A crash-proof side-effect ledger (a SQLite file) the standard activities append to."""
    return Ledger(tmp_path / "ledger.db")


@pytest.fixture
def bridge_faults(tmp_path: Path) -> FaultPlan:
    """An empty fault plan: which attempt of which activity fails or hangs."""
    return FaultPlan(tmp_path / "faults.json")


class WorkerProcesses:
    """Worker subprocesses of the backend under test (killed at teardown whatever happened).

    Each runs `bridge.testing._worker_main` with the backend's settings as BRIDGE_*
    variables, importing the suite's workflows plus the environment's `worker_modules`.
    """

    def __init__(
        self, settings: dict[str, Any], environment: TestEnvironment, tmp_path: Path
    ) -> None:
        self.settings = settings
        self.modules = [WORKFLOWS_MODULE, *environment.worker_modules]
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**settings_env(self.settings), **(extra or {})}

    def start(self, *modules: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge.testing._worker_main", *self.modules, *modules],
                env=self.env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp_path.glob("worker*.log"))
        )

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """`settings` as BRIDGE_* variables (over this process's environment minus its own
    BRIDGE_* settings), and this process's import path, for a worker subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    if os.environ.get("BRIDGE_DISABLE_PLUGIN_AUTOLOAD"):
        env["BRIDGE_DISABLE_PLUGIN_AUTOLOAD"] = os.environ["BRIDGE_DISABLE_PLUGIN_AUTOLOAD"]
    env["BRIDGE_BACKEND"] = str(settings["backend"])
    for section, values in settings.items():
        if section == "backend_options":
            import json

            env["BRIDGE_BACKEND_OPTIONS"] = json.dumps(values)
        elif isinstance(values, dict):
            for key, value in values.items():
                env[f"BRIDGE_{section.upper()}_{key.upper()}"] = str(value)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


@pytest.fixture
def bridge_worker_processes(
    bridge_settings: dict[str, Any], bridge_environment: TestEnvironment, tmp_path: Path
) -> Iterator[WorkerProcesses]:
    """Start worker subprocesses for crash tests; each is killed at teardown."""
    workers = WorkerProcesses(bridge_settings, bridge_environment, tmp_path)
    yield workers
    workers.close()
