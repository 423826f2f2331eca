"""Lazy exports for backend packages, so discovering a backend never imports its engine.

Backend discovery imports each backend's `_plugin` module, which imports its package; a
package that imported its engine up front would load LangGraph (about a second) into a
process configured for Temporal, and Temporal's sandbox re-executes the package of its
workflow module on every run. So a backend package's public names load on first use, and
a missing engine reports the extra to install instead of an ImportError.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from bridge.errors import EngineNotInstalledError

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, str], *, engine: str, extra: str, roots: tuple[str, ...]
) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name in `homes` is loaded from its module
    on first use; an ImportError of one of the engine's `roots` names the `extra`."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(home)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.split(".")[0] in roots:
                raise EngineNotInstalledError(engine, extra) from exc
            raise
        return getattr(module, name)

    return __getattr__
