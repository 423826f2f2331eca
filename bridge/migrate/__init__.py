"""Moving workflows between engines: the migration router, its routing table and percentage
ramp, shadow mode, and the one comparison of two runs (`compare`).

Names are loaded on first use, so importing `bridge.migrate.compare` (the differential
harness does) or the shadow interceptor (every worker does) loads neither the router nor
the bus.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.migrate.router import EngineState, EngineStatus, Router, ShadowHook

__all__ = ["EngineState", "EngineStatus", "Router", "ShadowHook"]

_LAZY = {name: "bridge.migrate.router" for name in __all__}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge.migrate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
