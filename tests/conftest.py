"""Shared fixtures: a client per backend on a fresh database, worker subprocesses, a ledger."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bridge

ROOT = Path(__file__).resolve().parent.parent

# Temporal's sandbox imports workflow modules afresh for every run, in its worker threads.
# pytest rewrites the asserts of test modules (and of the bridge.testing plugin) as they are
# imported, and with bytecode writing off (PYTHONDONTWRITEBYTECODE=1 on this machine) it
# parses their source with ast.parse on every such import; under those threads CPython
# 3.11's AST constructor now and then fails with "SystemError: AST constructor recursion
# depth mismatch" (python/cpython#106905, pytest-dev/pytest#10763), seen here as a worker
# that cannot load its workflow module. With the rewritten code cached, it is read, not
# parsed. The cache lives under .bridge/, out of the source tree.
sys.dont_write_bytecode = False
sys.pycache_prefix = str(ROOT / ".bridge" / "pycache")
PG_URL = os.environ.get("BRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Each engine other than sql brings its fixtures in tests/fixtures_<name>.py, which must
# define a `<name>_settings` fixture; the behaviour tests then run on it too.
_ENGINE_FIXTURES = {
    name: f"tests.fixtures_{name}"
    for name in ("temporal", "langgraph")
    if importlib.util.find_spec(f"tests.fixtures_{name}") is not None
}
pytest_plugins = list(_ENGINE_FIXTURES.values())
# A project of its own (installed by the Makefile), run by
# tests/testing/test_third_party_backend.py.
collect_ignore = ["third_party_backend"]
BACKENDS = ["sql", *_ENGINE_FIXTURES]


def pytest_bridge_default_backends(config: pytest.Config) -> list[str]:
    """The conformance suite (tests/testing/test_conformance.py) runs on every backend here unless
    --bridge-backend names some; one whose engine is missing is skipped with the reason."""
    return BACKENDS


def fast_sql(url: str) -> dict[str, Any]:
    """SQL settings tuned for tests: quick polling, short leases."""
    return {"url": url, "poll_interval": 0.02, "lease_seconds": 3.0}


@pytest.fixture
def sql_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bridge.db"


@pytest.fixture
def ledger_path(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.db")


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sql_settings(sql_url: str) -> dict[str, Any]:
    return {"backend": "sql", "sql": fast_sql(sql_url)}


@pytest.fixture
def settings(backend_name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings (as for bridge.connect) of a fresh store on the backend under test."""
    return request.getfixturevalue(f"{backend_name}_settings")


@pytest.fixture
async def client(settings: dict[str, Any]) -> AsyncIterator[bridge.Client]:
    c = await bridge.connect(settings)
    yield c
    await c.close()


def settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """The same settings as BRIDGE_* variables, for subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_BACKEND"] = settings["backend"]
    for section, values in settings.items():
        if isinstance(values, dict):
            for key, value in values.items():
                text = json.dumps(value) if isinstance(value, dict | list) else str(value)
                env[f"BRIDGE_{section.upper()}_{key.upper()}"] = text
    env["PYTHONPATH"] = str(ROOT)
    return env


class Workers:
    """Worker subprocesses, killed at teardown whatever happened."""

    def __init__(self, settings: dict[str, Any], tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *modules: str) -> subprocess.Popen[bytes]:
        with open(self.tmp_path / f"worker{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.worker_proc", *modules],
                cwd=ROOT,
                env=settings_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def workers(settings: dict[str, Any], tmp_path: Path) -> Iterator[Workers]:
    w = Workers(settings, tmp_path)
    yield w
    w.close()


def wait_until(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def postgres_available() -> str | None:
    """None when the server answers, else the reason to skip."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'durable-bridge[postgres]')"
    try:
        psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=2"
        ).close()
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test session's own, so parallel runs never share tables."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"bridge_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's database with no journal tables in it."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_database)
    with engine.begin() as conn:
        for table in (
            # feature tables first (bridge.journal.schema), then the journal's own
            "bridge_schedules",
            "bridge_attributes",
            "bridge_permits",
            "bridge_rate_buckets",
            "bridge_signals",
            "bridge_timers",
            "bridge_steps",
            "bridge_workflows",
            "bridge_meta",
        ):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    return pg_database


async def wait_for_status(
    client: bridge.Client, id: str, status: bridge.Status, timeout: float = 30
) -> bridge.WorkflowDescription:
    """Poll `describe` until run `id` shows `status` (it may not exist yet at first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            desc = await client.describe(id)
            if desc.status is status:
                return desc
        except bridge.WorkflowNotFoundError:
            pass
        assert time.monotonic() < deadline, f"{id} did not reach {status.value}"
        await asyncio.sleep(0.02)
