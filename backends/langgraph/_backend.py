"""The LangGraph backend as a `bridge.Backend` (the shared `JournalBackend`)."""

from __future__ import annotations

from collections.abc import Sequence

from backends.langgraph._graph import build_program
from backends.langgraph._store import Store, open_store
from backends.langgraph._worker import (
    LangGraphWorker,
    journal,
    task_records,
    thread_config,
    thread_id,
)
from bridge.config import Settings
from bridge.interceptors import Interceptor
from bridge.journal.backend import JournalBackend
from bridge.journal.context import StepRecord


class LangGraphBackend(JournalBackend):
    name = "langgraph"
    section = "langgraph"
    worker_class = LangGraphWorker
    store: Store

    def __init__(self, *, settings: Settings) -> None:
        super().__init__(settings=settings)
        #: The LangGraph entrypoint every workflow of this backend runs as.
        self.program = build_program(self.store.saver)

    def open_store(self, chain: Sequence[Interceptor]) -> Store:
        return open_store(self.settings.langgraph, interceptors=chain)

    def journal(self, id: str) -> list[StepRecord]:
        """The bridge's rows merged with the step tasks' writes in LangGraph's checkpoints."""
        own = self.store.load_steps(id)
        thread = thread_config(thread_id(id, own))
        finished = [r for tup in self.store.saver.list(thread) for r in task_records(tup)]
        return journal(own, finished)
