"""Bridge workflows on LangGraph's Functional API, checkpointed by SqliteSaver/PostgresSaver.

Imports `bridge` and LangGraph only; never another backend. See docs/architecture.md
("LangGraph backend") for which layer guarantees what. The names below load on first use,
so backend discovery (`backends.langgraph._plugin`) imports no LangGraph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge._lazy import lazy_exports

if TYPE_CHECKING:
    from backends.langgraph._backend import LangGraphBackend
    from backends.langgraph._store import Store, open_store
    from backends.langgraph._worker import LangGraphWorker

__all__ = ["LangGraphBackend", "LangGraphWorker", "Store", "open_store"]

_HOMES = {
    "LangGraphBackend": "backends.langgraph._backend",
    "LangGraphWorker": "backends.langgraph._worker",
    "Store": "backends.langgraph._store",
    "open_store": "backends.langgraph._store",
}

__getattr__ = lazy_exports(
    __name__, _HOMES, engine="LangGraph", extra="langgraph", roots=("langgraph", "langchain_core")
)
