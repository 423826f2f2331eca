"""The harness's plugins: the testing hookspecs on bridge's plugin manager, and the modules
of the `bridge.testing` entry-point group that add scenarios to the suite.

The harness names no adapter: a package with scenarios of its own registers a module in
that group, and the suite asks every plugin for its scenarios with `bridge_test_scenarios`.
A plugin whose module cannot be imported (its optional dependency is not installed) is not
an error of the session: the suite shows it as one skipped test giving the reason.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pluggy
import pytest

from bridge.errors import ConfigError
from bridge.plugins import plugin_manager
from bridge.testing.hookspecs import ENTRY_POINT_GROUP, TestingHookSpecs

__all__ = ["contributed_scenarios", "testing_plugin_manager"]

#: entry-point name -> why its module could not be imported; None until loaded.
_unavailable: dict[str, str] | None = None


def testing_plugin_manager() -> pluggy.PluginManager:
    """Bridge's plugin manager with the testing hookspecs and plugins, set up once."""
    global _unavailable
    pm = plugin_manager()
    if _unavailable is not None:
        return pm
    caller = getattr(pm.hook, "bridge_test_environment", None)
    if caller is None or caller.spec is None:
        pm.add_hookspecs(TestingHookSpecs)
    _unavailable = {}
    if os.environ.get("BRIDGE_DISABLE_PLUGIN_AUTOLOAD"):
        return pm
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = f"{ENTRY_POINT_GROUP}:{ep.name}"
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        if ep.module not in sys.modules:  # pytest can rewrite only what is not imported yet
            pytest.register_assert_rewrite(ep.module)
        try:
            plugin = ep.load()
        except ImportError as exc:
            _unavailable[ep.name] = f"{ep.value} cannot be imported: {exc}"
            continue
        pm.register(plugin, name=name)
    return pm


def contributed_scenarios(reserved: Iterable[str]) -> dict[str, Any]:
    """What the plugins add to the suite (scenarios and their fixtures) by name, and one
    skipped test per plugin that could not be loaded; `reserved` are the suite's own names."""
    pm = testing_plugin_manager()
    owners = dict.fromkeys(reserved, "bridge.testing.suite")
    added: dict[str, Any] = {}
    for modules in pm.hook.bridge_test_scenarios():
        for module in modules:
            for attr in getattr(module, "__all__", ()):
                if attr in owners:
                    raise ConfigError(
                        f"the testing plugin module {module.__name__} adds {attr!r} to the "
                        f"suite, which {owners[attr]} already has; rename one of them"
                    )
                owners[attr] = module.__name__
                added[attr] = getattr(module, attr)
    for ep_name, reason in sorted((_unavailable or {}).items()):
        test_name = f"test_{re.sub(r'[^0-9a-zA-Z_]', '_', ep_name)}_scenarios"
        added[test_name] = _skipped(test_name, reason)
    return added


def _skipped(name: str, reason: str) -> Callable[[], None]:
    def test() -> None:
        pytest.skip(f"the testing plugin's scenarios are not run: {reason}")

    test.__name__ = test.__qualname__ = name
    return test
