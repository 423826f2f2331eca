"""The pytest plugin of the compatibility harness (entry point `pytest11`: `bridge`).

Inert until asked: it adds options, a marker and fixtures whose names all start with
`bridge_`, and changes nothing for a project whose tests use none of them. A test that uses
the fixtures (the conformance suite, `from bridge.testing.suite import *`) runs once per
backend under test:

    pytest --bridge-backend sql --bridge-backend temporal tests/testing/test_conformance.py

Without `--bridge-backend`, the backends come from the `pytest_bridge_default_backends`
hook (a conftest.py may implement it), else the reference backend (`--bridge-reference`,
default `sql`). After the run it prints a capability report per backend and writes it as
JSON (`--bridge-report PATH`, default `<rootdir>/.bridge/conformance-report.json`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge.testing._report import CapabilityReport

if TYPE_CHECKING:
    from bridge.testing.hookspecs import TestEnvironment

# The suite's asserts get pytest's explanations like a test module's own.
pytest.register_assert_rewrite("bridge.testing.suite")

BACKEND_PARAM = "bridge_backend_name"
HARNESS = pytest.StashKey["Harness"]()


class PytestHooks:
    """Hooks this plugin adds to pytest, for a project's conftest.py."""

    @pytest.hookspec(firstresult=True)
    def pytest_bridge_default_backends(self, config: pytest.Config) -> list[str] | None:
        """The backends to run the suite on when no --bridge-backend is given (None: the
        reference backend only)."""


class Environments:
    """The test environment of each backend under test, entered once per session on first use."""

    def __init__(self) -> None:
        self._entered: dict[str, TestEnvironment] = {}
        self._missing: dict[str, str] = {}

    def get(self, name: str) -> TestEnvironment:
        """Backend `name`'s entered environment; skips the test when its engine is missing."""
        if name in self._missing:
            pytest.skip(f"backend {name!r}: {self._missing[name]}")
        if name not in self._entered:
            env = _environment_of(name)
            reason = env.missing()
            if reason:
                self._missing[name] = reason
                pytest.skip(f"backend {name!r}: {reason}")
            self._entered[name] = env.__enter__()
        return self._entered[name]

    def close(self) -> None:
        while self._entered:
            _, env = self._entered.popitem()
            env.__exit__(None, None, None)


def _environment_of(name: str) -> TestEnvironment:
    from bridge.plugins import registry
    from bridge.testing._plugins import testing_plugin_manager

    pm = testing_plugin_manager()
    if name not in registry().names():
        raise pytest.UsageError(
            f"--bridge-backend {name}: no such backend is installed "
            f"(installed: {', '.join(registry().names())}); a backend registers itself through "
            f"the `bridge.backends` entry-point group"
        )
    env = pm.hook.bridge_test_environment(name=name)
    if env is None:
        raise pytest.UsageError(
            f"backend {name!r} gives the harness no test environment: its plugin module (the "
            f"one its `bridge.backends` entry point names) must implement "
            f"`bridge_test_environment(name)` (see bridge.testing.hookspecs)"
        )
    return env  # type: ignore[no-any-return]


class Harness:
    """This session's choice of backends, their environments and the capability report;
    registered as a plugin of its own, so its hooks see only its session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.reference: str = config.getoption("bridge_reference")
        self._backends: list[str] | None = None
        report_path = config.getoption("bridge_report")
        self.report_path = (
            Path(report_path)
            if report_path
            else config.rootpath / ".bridge" / "conformance-report.json"
        )
        self.environments = Environments()
        self.report = CapabilityReport(reference=self.reference)

    @property
    def backends(self) -> list[str]:
        """--bridge-backend, else the conftest's default, else the reference; asked once,
        when the first test that uses the harness is collected."""
        if self._backends is None:
            chosen: list[str] = self.config.getoption("bridge_backends") or []
            if not chosen:
                hook = self.config.hook.pytest_bridge_default_backends
                chosen = hook(config=self.config) or [self.reference]
            self._backends = list(dict.fromkeys(chosen))
        return self._backends

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            callspec = getattr(item, "callspec", None)
            if callspec is not None and BACKEND_PARAM in callspec.params:
                name = getattr(item, "originalname", None) or item.name
                self.report.expect(
                    item.nodeid,
                    scenario=name.removeprefix("test_"),
                    backend=callspec.params[BACKEND_PARAM],
                )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.report.record(report)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.report.ran:
            return
        terminalreporter.section("bridge capability report")
        for line in self.report.lines():
            terminalreporter.write_line(line)
        self.report.write(self.report_path)
        terminalreporter.write_line(f"written to {self.report_path}")

    def pytest_unconfigure(self) -> None:
        self.environments.close()


# -- pytest hooks -------------------------------------------------------------------------------
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(PytestHooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bridge", "durable-bridge compatibility harness")
    group.addoption(
        "--bridge-backend",
        action="append",
        dest="bridge_backends",
        metavar="NAME",
        default=[],
        help="run the bridge conformance suite on this backend (repeatable)",
    )
    group.addoption(
        "--bridge-reference",
        dest="bridge_reference",
        metavar="NAME",
        default="sql",
        help="the backend others are compared with (default: sql)",
    )
    group.addoption(
        "--bridge-report",
        dest="bridge_report",
        metavar="PATH",
        default=None,
        help="where to write the capability report as JSON "
        "(default: <rootdir>/.bridge/conformance-report.json)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): skip on a backend that does not declare these capabilities "
        "(bridge.testing.capabilities)",
    )
    harness = Harness(config)
    config.stash[HARNESS] = harness
    config.pluginmanager.register(harness, "bridge-harness")
    if importlib.util.find_spec("pytest_asyncio") is None:
        if config.getoption("bridge_backends"):
            raise pytest.UsageError(
                'the bridge harness needs pytest-asyncio: pip install "durable-bridge[dev]"'
            )
        return
    from bridge.testing import fixtures

    config.pluginmanager.register(fixtures, "bridge-fixtures")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if BACKEND_PARAM in metafunc.fixturenames:
        harness = metafunc.config.stash[HARNESS]
        metafunc.parametrize(BACKEND_PARAM, harness.backends, indirect=True, ids=harness.backends)
