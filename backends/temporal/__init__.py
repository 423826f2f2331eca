"""Neutral workflows on a real Temporal server: one dynamic workflow, one dynamic activity.

Imports `bridge` and temporalio only; never another backend. The names below are loaded on
first use, so `import backends.temporal._plugin` (backend discovery) costs no temporalio
import, and a missing engine fails with the install hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge._lazy import lazy_exports

# Kept to what the lazy loading needs: Temporal's sandbox executes this package again for
# every workflow run (it is the package of the workflow module).
if TYPE_CHECKING:
    from backends.temporal._backend import TemporalBackend
    from backends.temporal._context import TemporalContext
    from backends.temporal._converter import BridgePayloadConverter, data_converter
    from backends.temporal._devserver import DevServer
    from backends.temporal._worker import TemporalWorker

__all__ = [
    "BridgePayloadConverter",
    "DevServer",
    "TemporalBackend",
    "TemporalContext",
    "TemporalWorker",
    "data_converter",
]

_HOMES = {
    "BridgePayloadConverter": "backends.temporal._converter",
    "DevServer": "backends.temporal._devserver",
    "TemporalBackend": "backends.temporal._backend",
    "TemporalContext": "backends.temporal._context",
    "TemporalWorker": "backends.temporal._worker",
    "data_converter": "backends.temporal._converter",
}


__getattr__ = lazy_exports(
    __name__, _HOMES, engine="Temporal", extra="temporal", roots=("temporalio",)
)
