"""Registers the `thirdparty` backend (and how to test it) through bridge's plugin hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.backend import Backend
from bridge.config import Settings
from bridge.plugins import BackendRegistry, hookimpl
from bridge.testing.hookspecs import TestEnvironment


def _create(settings: Settings) -> Backend:
    from bridge_thirdparty._backend import ThirdPartyBackend

    return ThirdPartyBackend(settings=settings)


class ThirdPartyTestEnvironment(TestEnvironment):
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {
            "backend": "thirdparty",
            "backend_options": {
                "url": f"sqlite:///{tmp_path}/thirdparty.db",
                "poll_interval": 0.02,
                "lease_seconds": 3.0,
            },
        }


@hookimpl
def bridge_register_backends(register: BackendRegistry) -> None:
    register.add("thirdparty", _create)


@hookimpl
def bridge_test_environment(name: str) -> TestEnvironment | None:
    return ThirdPartyTestEnvironment() if name == "thirdparty" else None
