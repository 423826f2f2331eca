"""Bridge workflows on LangGraph's Functional API, checkpointed by SqliteSaver/PostgresSaver.

Imports `bridge` and LangGraph only; never another backend. See docs/architecture.md
("LangGraph backend") for which layer guarantees what.
"""

from backends.langgraph._backend import LangGraphBackend
from backends.langgraph._store import Store, open_store
from backends.langgraph._worker import LangGraphWorker

__all__ = ["LangGraphBackend", "LangGraphWorker", "Store", "open_store"]
