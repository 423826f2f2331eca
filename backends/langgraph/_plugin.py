"""Registers the langgraph backend through the `bridge.backends` entry point, like any plugin.

Importing this module is cheap: LangGraph is imported only when the backend is chosen,
and a missing LangGraph gives the install hint instead of an ImportError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.errors import EngineNotInstalledError
from bridge.plugins import BackendRegistry, hookimpl

if TYPE_CHECKING:
    from bridge.backend import Backend
    from bridge.config import Settings
    from bridge.testing.hookspecs import TestEnvironment


def _create(settings: Settings) -> Backend:
    try:
        from backends.langgraph._backend import LangGraphBackend
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("langgraph", "langchain_core"):
            raise EngineNotInstalledError("LangGraph", "langgraph") from None
        raise
    return LangGraphBackend(settings=settings)


@hookimpl
def bridge_register_backends(register: BackendRegistry) -> None:
    register.add("langgraph", _create)


@hookimpl
def bridge_test_environment(name: str) -> TestEnvironment | None:
    """How the compatibility harness (`bridge.testing`) runs this backend under test."""
    if name != "langgraph":
        return None
    from backends.langgraph._testing import LangGraphTestEnvironment

    return LangGraphTestEnvironment()
