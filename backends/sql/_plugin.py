"""Registers the sql backend through the `bridge.backends` entry point, like any plugin.

Importing this module is cheap: the executor is imported only when the backend is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.plugins import BackendRegistry, hookimpl

if TYPE_CHECKING:
    from bridge.backend import Backend
    from bridge.config import Settings
    from bridge.testing.hookspecs import TestEnvironment


def _create(settings: Settings) -> Backend:
    from backends.sql._backend import SqlBackend

    return SqlBackend(settings=settings)


@hookimpl
def bridge_register_backends(register: BackendRegistry) -> None:
    register.add("sql", _create)


@hookimpl
def bridge_test_environment(name: str) -> TestEnvironment | None:
    """How the compatibility harness (`bridge.testing`) runs this backend under test."""
    if name != "sql":
        return None
    from backends.sql._testing import SqlTestEnvironment

    return SqlTestEnvironment()
