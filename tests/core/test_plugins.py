"""Backends are found through pluggy: `bridge.backends` entry points and code-registered plugins."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import bridge
from bridge.plugins import BackendRegistry, hookimpl, plugin_manager, registry
from tests.conftest import ROOT


class FakeBackend(bridge.Backend):
    """The smallest Backend: enough to be created and closed by name."""

    name = "fake-test-backend"
    closed = False

    async def start(self, workflow: Any, args: dict[str, Any], *, id: str) -> bool:
        return True

    async def describe(self, id: str) -> bridge.WorkflowDescription:
        raise bridge.WorkflowNotFoundError(id, "the fake backend")

    async def wait(self, id: str, *, timeout: float | None) -> bridge.WorkflowDescription:
        return await self.describe(id)

    async def signal(self, id: str, name: str, payload: Any) -> None:
        await self.describe(id)

    async def cancel(self, id: str) -> None:
        await self.describe(id)

    async def history(self, id: str) -> list[bridge.HistoryEvent]:
        await self.describe(id)
        return []

    async def list(
        self, *, status: bridge.Status | None = None, limit: int = 100
    ) -> list[bridge.WorkflowDescription]:
        return []

    def worker(self, *, workflows: Sequence[Any]) -> bridge.Worker:
        raise NotImplementedError

    async def close(self) -> None:
        type(self).closed = True


def _make_fake(settings: bridge.Settings) -> bridge.Backend:
    return FakeBackend(settings=settings)


class FakePlugin:
    @hookimpl
    def bridge_register_backends(self, register: BackendRegistry) -> None:
        register.add(FakeBackend.name, _make_fake)


@pytest.fixture
def fake_plugin() -> Iterator[FakePlugin]:
    plugin = FakePlugin()
    pm = plugin_manager()
    pm.register(plugin, name="fake-test-plugin")
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


# -- the built-in sql backend is an ordinary entry-point plugin ---------------------------
def test_sql_backend_is_an_entry_point() -> None:
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group="bridge.backends")}
    assert "sql" in found
    assert found["sql"].value == "backends.sql._plugin"
    module = found["sql"].load()
    assert module is importlib.import_module("backends.sql._plugin")
    assert hasattr(module, "bridge_register_backends")


def test_sql_backend_is_in_the_registry() -> None:
    assert "sql" in registry().names()
    assert plugin_manager().is_registered(importlib.import_module("backends.sql._plugin"))


def test_registry_is_fresh_each_time() -> None:
    first, second = registry(), registry()
    assert first is not second
    assert first.names() == second.names()


def test_unknown_backend_from_the_registry_lists_the_known() -> None:
    with pytest.raises(bridge.UnknownBackendError) as info:
        registry().create("no-such-backend", bridge.Settings())
    assert "'no-such-backend'" in str(info.value)
    assert "sql" in info.value.installed


def test_autoload_can_be_disabled() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    code = "import json, bridge.plugins as p; print(json.dumps(p.registry().names()))"
    names = {}
    for disabled in (False, True):
        run_env = {**env, "BRIDGE_DISABLE_PLUGIN_AUTOLOAD": "1"} if disabled else env
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        names[disabled] = json.loads(proc.stdout)
    assert "sql" in names[False]
    assert names[True] == []


# -- BackendRegistry ------------------------------------------------------------------------
def test_duplicate_name_with_another_factory_is_refused() -> None:
    reg = BackendRegistry()
    reg.add("dup", _make_fake)
    with pytest.raises(bridge.ConfigError) as info:
        reg.add("dup", lambda settings: FakeBackend(settings=settings))
    assert "'dup'" in str(info.value)
    assert reg.names() == ["dup"]


def test_same_factory_twice_is_harmless() -> None:
    reg = BackendRegistry()
    reg.add("same", _make_fake)
    reg.add("same", _make_fake)
    assert reg.names() == ["same"]
    assert isinstance(reg.create("same", bridge.Settings()), FakeBackend)


def test_names_are_sorted() -> None:
    reg = BackendRegistry()
    for name in ("zeta", "alpha", "mid"):
        reg.add(name, _make_fake)
    assert reg.names() == ["alpha", "mid", "zeta"]


# -- plugins registered in code ------------------------------------------------------------
async def test_code_registered_plugin_is_connectable(fake_plugin: FakePlugin) -> None:
    assert FakeBackend.name in registry().names()
    FakeBackend.closed = False
    async with await bridge.connect(bridge.Settings(backend=FakeBackend.name)) as client:
        assert client.backend_name == FakeBackend.name
        assert isinstance(client.backend, FakeBackend)
        assert client.settings.backend == FakeBackend.name
        assert await client.list() == []
        with pytest.raises(bridge.WorkflowNotFoundError, match="the fake backend"):
            await client.describe("x")
    assert FakeBackend.closed


def test_unregistered_plugin_is_gone() -> None:
    plugin = FakePlugin()
    pm = plugin_manager()
    pm.register(plugin, name="fake-test-plugin-2")
    assert FakeBackend.name in registry().names()
    pm.unregister(plugin)
    assert FakeBackend.name not in registry().names()
    with pytest.raises(bridge.UnknownBackendError):
        registry().create(FakeBackend.name, bridge.Settings())


def test_plugin_claiming_the_sql_name_is_refused() -> None:
    class Impostor:
        @hookimpl
        def bridge_register_backends(self, register: BackendRegistry) -> None:
            register.add("sql", _make_fake)

    plugin = Impostor()
    pm = plugin_manager()
    pm.register(plugin, name="impostor-test-plugin")
    try:
        with pytest.raises(bridge.ConfigError, match="'sql'"):
            registry()
    finally:
        pm.unregister(plugin)
    assert "sql" in registry().names()
