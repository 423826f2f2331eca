"""Temporal fixtures: one real dev server for the whole test session, a task queue per test.

Loaded by tests/conftest.py as a pytest plugin; the behaviour and crash tests then run on
the `temporal` backend too. The server is the compatibility harness's (the `temporal` test
environment in backends/temporal/_testing.py), so these tests and the conformance suite
share one server per session. Without temporalio or the `temporal` binary they are skipped.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.testing.plugin import Environments


@pytest.fixture(scope="session")
def temporal_server(bridge_environments: Environments) -> str:
    """The address of the session's dev server, started on first use."""
    return bridge_environments.get("temporal").address  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def temporal_settings(temporal_server: str) -> dict[str, Any]:
    """Settings for the session's server with a task queue of this test's own."""
    from backends.temporal._testing import TemporalTestEnvironment

    return TemporalTestEnvironment.settings_for(temporal_server)
