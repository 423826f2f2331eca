"""How a backend or an adapter plugs into the compatibility harness.

A backend's plugin module (the one its `bridge.backends` entry point names) may implement
`bridge_test_environment(name)`. The harness calls it once per pytest session for each
backend under test, enters the returned `TestEnvironment` (start a server, say), asks it for
fresh settings per test, and exits it at the end of the session.

A package with scenarios of its own (an adapter: the harness imports none) names a module in
the `bridge.testing` entry-point group that implements `bridge_test_scenarios()`; the suite
then runs those scenarios on every backend under test, beside its own.

Importing this module costs nothing: it imports neither pytest nor an engine, so a backend's
plugin module can name it in annotations while production code never loads the harness.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from bridge.plugins import hookspec

__all__ = ["ENTRY_POINT_GROUP", "TestEnvironment", "TestingHookSpecs"]

#: Modules that add scenarios to the suite (their plugin implements `bridge_test_scenarios`).
#: Loaded by the harness only, so production code never imports them.
ENTRY_POINT_GROUP = "bridge.testing"


class TestEnvironment:
    """One backend as the harness runs it: session-wide resources plus per-test settings.

    Subclasses override `settings` and, when they need a server or a shared resource,
    `__enter__`/`__exit__` (entered once per pytest session, lazily, by the first test that
    needs the backend). `missing()` names what is not installed, so the harness skips with
    that reason instead of failing.
    """

    __test__ = False  # not a pytest test class, despite the name

    #: Modules a worker subprocess must import to find this backend (a backend registered in
    #: code rather than by an entry point, such as a test-only backend).
    worker_modules: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """Why this backend cannot run here (an engine or binary not installed), or None."""
        return None

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        """Settings (as for `bridge.connect`) of a fresh, empty store in `tmp_path`."""
        raise NotImplementedError(f"{type(self).__name__} must implement settings(tmp_path)")

    def __enter__(self) -> TestEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class TestingHookSpecs:
    """Added to `bridge.plugins.plugin_manager()` by the harness when it starts."""

    __test__ = False

    @hookspec(firstresult=True)
    def bridge_test_environment(self, name: str) -> TestEnvironment | None:
        """The test environment of backend `name`, or None when it is not this plugin's.

        Import the engine inside the returned object's methods, not here: the harness asks
        every plugin, also in sessions that never run that engine.
        """

    @hookspec
    def bridge_test_scenarios(self) -> list[ModuleType]:
        """Modules whose `__all__` names scenarios to add to the suite, and their fixtures.

        A scenario is an async test function taking the harness's fixtures (`bridge_client`
        and the like), so it runs once per backend under test and shows in the capability
        report; `bridge.testing.scenario` has the suite's helpers. Names must not clash with
        the suite's or another plugin's. The harness rewrites the asserts of the module the
        entry point names (and its submodules), as pytest does for a test module.
        """
