"""Schedules on Temporal: the bridge's schedule calls as native Temporal Schedules.

`TemporalBackend`'s schedule methods delegate here. A schedule's action starts the bridge
workflow by name on the backend's task queue with the run's JSON arguments, exactly as
`TemporalBackend.start` does, so the same worker runs scheduled and started runs; Temporal
names each run `<schedule id>-<fire time>`, which the embedded engines copy.

What differs from the embedded scheduler:
- The server keeps time, so tests cannot move it: "a simulated hour" is a backfill of a
  past hour (`ScheduleHandle.backfill`), which takes the fires that hour would have taken,
  under the overlap policy.
- Temporal turns a cron expression into calendar specs, so the cron as given is kept in
  the schedule's memo (`CRON_MEMO`) for `describe`.
- `list_schedules` reads the visibility store, which sees a new schedule a moment later.
- `skipped` counts fires skipped by the overlap policy plus buffered fires dropped, which
  is what the embedded engines count as skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.client import (
    ScheduleDescription as TemporalScheduleDescription,
)
from temporalio.service import RPCError, RPCStatusCode

from bridge.backend import ScheduleDescription
from bridge.errors import InvalidScheduleError, ScheduleAlreadyExistsError, ScheduleNotFoundError
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from backends.temporal._backend import TemporalBackend

__all__ = ["CRON_MEMO", "TemporalSchedules"]

#: The memo key holding the cron expression a schedule was created with.
CRON_MEMO = "bridge.cron"
_OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}
_OVERLAP_NAME = {v: k for k, v in _OVERLAP.items()}


class TemporalSchedules:
    """The schedule calls of one `TemporalBackend`."""

    def __init__(self, backend: TemporalBackend) -> None:
        self.backend = backend

    async def _handle(self, id: str) -> ScheduleHandle:
        return (await self.backend.client()).get_schedule_handle(id)

    def _where(self) -> str:
        t = self.backend.settings.temporal
        return f"Temporal namespace {t.namespace!r} at {t.address}"

    async def create(
        self,
        workflow: WorkflowDefinition[..., Any],
        args: dict[str, Any],
        *,
        id: str,
        cron: str,
        overlap: str,
        catchup_window: float,
        paused: bool,
        timezone: str = "UTC",
    ) -> None:
        client = await self.backend.client()
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                workflow.name,
                args=[args],
                id=id,
                task_queue=self.backend.settings.temporal.task_queue,
            ),
            spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=timezone),
            policy=SchedulePolicy(
                overlap=_OVERLAP[overlap], catchup_window=timedelta(seconds=catchup_window)
            ),
            state=ScheduleState(paused=paused),
        )
        try:
            await client.create_schedule(id, schedule, memo={CRON_MEMO: cron})
        except ScheduleAlreadyRunningError:
            raise ScheduleAlreadyExistsError(id) from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                raise InvalidScheduleError(
                    f"Temporal refused schedule {id!r} (cron {cron!r}): {exc.message}"
                ) from None
            raise

    async def _call(self, id: str, action: str, *args: Any, **kwargs: Any) -> Any:
        handle = await self._handle(id)
        try:
            return await getattr(handle, action)(*args, **kwargs)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ScheduleNotFoundError(id, self._where()) from None
            raise

    async def describe(self, id: str) -> ScheduleDescription:
        return await self._describe(await self._call(id, "describe"))

    async def _describe(self, d: TemporalScheduleDescription) -> ScheduleDescription:
        client = await self.backend.client()
        action = d.schedule.action
        decoded: list[Any] = []
        workflow = ""
        if isinstance(action, ScheduleActionStartWorkflow):  # a schedule made elsewhere may not
            workflow = action.workflow
            if action.args:
                decoded = await client.data_converter.decode(action.args)  # type: ignore[arg-type]
        memo = await d.memo()
        info, state, raw = d.info, d.schedule.state, d.raw_description.info
        recent = [r.action for r in info.recent_actions]
        window = d.schedule.policy.catchup_window
        return ScheduleDescription(
            id=d.id,
            workflow=workflow,
            cron=str(memo.get(CRON_MEMO, "")),
            args=decoded[0] if decoded and isinstance(decoded[0], dict) else {},
            overlap=_OVERLAP_NAME.get(d.schedule.policy.overlap, d.schedule.policy.overlap.name),
            catchup_window=0.0 if window is None else window.total_seconds(),
            paused=state.paused,
            backend=self.backend.name,
            next_fire_at=(
                info.next_action_times[0] if info.next_action_times and not state.paused else None
            ),
            last_fire_at=info.recent_actions[-1].scheduled_at if info.recent_actions else None,
            fired=info.num_actions,
            skipped=info.num_actions_skipped_overlap + raw.buffer_dropped,
            missed=info.num_actions_missed_catchup_window,
            buffered=raw.buffer_size > 0,
            running=tuple(a.workflow_id for a in info.running_actions),  # type: ignore[attr-defined]
            recent=tuple(a.workflow_id for a in recent),  # type: ignore[attr-defined]
            timezone=d.schedule.spec.time_zone_name or "UTC",
            note=state.note or None,
        )

    async def list(self) -> list[ScheduleDescription]:
        client = await self.backend.client()
        found: list[ScheduleDescription] = []
        async for entry in await client.list_schedules():
            try:
                found.append(await self.describe(entry.id))
            except ScheduleNotFoundError:
                continue  # deleted since the visibility store listed it
        return sorted(found, key=lambda d: d.id)

    async def pause(self, id: str, note: str | None) -> None:
        await self._call(id, "pause", note=note)

    async def resume(self, id: str) -> None:
        await self._call(id, "unpause")

    async def delete(self, id: str) -> None:
        await self._call(id, "delete")

    async def trigger(self, id: str) -> None:
        await self._call(id, "trigger")

    async def backfill(self, id: str, start: datetime, end: datetime) -> None:
        await self._call(id, "backfill", ScheduleBackfill(start_at=start, end_at=end))
