"""Backend discovery through pluggy, the same way for built-in and third-party backends.

A backend package names a module in the `bridge.backends` entry-point group; that module
implements `bridge_register_backends(register)` and calls `register.add(name, factory)`.
The built-in sql, temporal and langgraph backends are registered exactly that way. Set
BRIDGE_DISABLE_PLUGIN_AUTOLOAD=1 to load none but those registered in code.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from bridge.errors import ConfigError, UnknownBackendError

if TYPE_CHECKING:
    from bridge.backend import Backend
    from bridge.config import Settings

__all__ = ["BackendRegistry", "hookimpl", "hookspec", "plugin_manager", "registry"]

PROJECT = "bridge"
ENTRY_POINT_GROUP = "bridge.backends"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BackendFactory = Callable[["Settings"], "Backend"]


class BackendRegistry:
    """Passed into `bridge_register_backends`; plugins add their factories to it."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}

    def add(self, name: str, factory: BackendFactory) -> None:
        """Register `factory` under `name`; it should import its engine lazily."""
        if name in self._factories and self._factories[name] is not factory:
            raise ConfigError(f"two plugins register a backend named {name!r}")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, settings: Settings) -> Backend:
        factory = self._factories.get(name)
        if factory is None:
            raise UnknownBackendError(name, self.names())
        return factory(settings)


class HookSpecs:
    @hookspec
    def bridge_register_backends(self, register: BackendRegistry) -> None:
        """Add backend factories with `register.add(name, factory)`.

        Factories take the loaded `Settings` and return a `Backend`; they are called only
        when that backend is chosen, so an engine that is not installed costs nothing.
        """


_manager: pluggy.PluginManager | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, loading entry points once."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(HookSpecs)
        if not os.environ.get("BRIDGE_DISABLE_PLUGIN_AUTOLOAD"):
            # Not pm.load_setuptools_entrypoints: it walks every entry point of every
            # installed distribution (~0.3 s here); selecting the group is ~10 ms, and a
            # worker's restart time is part of its recovery time.
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if pm.get_plugin(ep.name) is None and not pm.is_blocked(ep.name):
                    pm.register(ep.load(), name=ep.name)
        _manager = pm
    return _manager


def registry() -> BackendRegistry:
    """A fresh registry filled by every loaded plugin."""
    reg = BackendRegistry()
    plugin_manager().hook.bridge_register_backends(register=reg)
    return reg
