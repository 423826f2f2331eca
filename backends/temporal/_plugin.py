"""Registers the temporal backend through the `bridge.backends` entry point, like any plugin.

Importing this module is cheap and needs no temporalio: the engine is imported only when the
backend is chosen, and a missing engine then fails with the install hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.plugins import BackendRegistry, hookimpl

if TYPE_CHECKING:
    from bridge.backend import Backend
    from bridge.config import Settings
    from bridge.testing.hookspecs import TestEnvironment


def _create(settings: Settings) -> Backend:
    from backends.temporal import TemporalBackend

    return TemporalBackend(settings=settings)


@hookimpl
def bridge_register_backends(register: BackendRegistry) -> None:
    register.add("temporal", _create)


@hookimpl
def bridge_test_environment(name: str) -> TestEnvironment | None:
    """How the compatibility harness (`bridge.testing`) runs this backend under test."""
    if name != "temporal":
        return None
    from backends.temporal._testing import TemporalTestEnvironment

    return TemporalTestEnvironment()
