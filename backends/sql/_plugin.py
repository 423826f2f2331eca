"""Registers the sql backend through the `bridge.backends` entry point, like any plugin.

Importing this module is cheap: the executor is imported only when the backend is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.plugins import BackendRegistry, hookimpl

if TYPE_CHECKING:
    from bridge.backend import Backend
    from bridge.config import Settings


def _create(settings: Settings) -> Backend:
    from backends.sql._backend import SqlBackend

    return SqlBackend(settings=settings)


@hookimpl
def bridge_register_backends(register: BackendRegistry) -> None:
    register.add("sql", _create)
