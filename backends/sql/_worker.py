"""The sql backend's worker: the shared journal worker, executing a run in one task.

A claimed run is replayed from its journal by `JournaledContext` and driven until it
finishes or has to wait; its journal rows and its ending go through the group committer
(`_commit.py`). Claiming, leases, fencing, recovery and storage errors are the shared
loop's (`bridge.journal.worker`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backends.sql._commit import GroupCommitter
from bridge import codec
from bridge.backend import Status
from bridge.journal.context import JournaledContext, StepRecord, drive
from bridge.journal.worker import JournalWorker, RunJournal
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from backends.sql._backend import SqlBackend

log = logging.getLogger("bridge.sql.worker")


class SqlWorker(JournalWorker):
    def __init__(
        self, backend: SqlBackend, workflows: Sequence[WorkflowDefinition[..., Any]]
    ) -> None:
        super().__init__(backend, workflows)
        self.committer = GroupCommitter(backend.store)

    async def write_steps(self, records: Sequence[StepRecord]) -> None:
        await self.committer.write(records)

    async def execute(self, row: Any) -> None:
        ctx = JournaledContext(
            workflow_id=row.id,
            journal=RunJournal(self, row.id),
            steps=self.store.load_steps(row.id),
            started_at=row.created_at,
            attempt=row.executions,
            cancel_requested=bool(row.cancel_requested),
        )
        self._contexts[row.id] = ctx
        outcome = await drive(self.definitions[row.name], ctx, codec.loads(row.input))
        if outcome.continue_with is not None:
            # The generation's journal is moved aside and the run claimed again from an
            # empty one, so a long loop never replays more than one generation.
            if not self.store.continue_as_new(row.id, self.owner, input=outcome.continue_with):
                log.warning("workflow %s continued after its lease was taken over", row.id)
        elif outcome.status is Status.WAITING:
            self.store.park(
                row.id,
                self.owner,
                waiting_for=outcome.waiting_for,
                error=outcome.error,
                blocked=outcome.blocked,
                wake_on_update=not ctx.waits_in_update,
                children=ctx.awaiting_children,
            )
            if outcome.blocked:
                log.error("workflow %s stopped: %s", row.id, (outcome.error or {}).get("message"))
        else:
            await self.committer.finish(
                id=row.id,
                owner=self.owner,
                status=outcome.status,
                result=outcome.result,
                error=outcome.error,
            )
