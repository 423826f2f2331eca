"""The benchmark's workload written directly against temporalio: the baseline for bridge.

Its own module, so Temporal's sandbox re-imports only this (and nothing of bridge) for each
raw run, as it would for a team that uses temporalio alone.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def inc(x: int) -> int:
    return x + 1


@workflow.defn
class Chain:
    """`n` sequential activities, x -> x + 1."""

    @workflow.run
    async def run(self, n: int) -> int:
        x = 0
        for _ in range(n):
            x = await workflow.execute_activity(
                inc, x, start_to_close_timeout=timedelta(seconds=60)
            )
        return x
