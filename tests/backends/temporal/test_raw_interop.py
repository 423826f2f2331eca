"""Issue 17, point 9: a raw temporalio client and raw workers next to bridge's."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

import bridge

pytest.importorskip("temporalio")

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker


@bridge.activity
async def raw_interop_join(left: str, right: int) -> str:
    return f"{left}-{right}"


@bridge.workflow(name="raw_interop_wf")
async def raw_interop_wf(ctx: bridge.Context, left: str, right: int = 1) -> str:
    return await ctx.run(raw_interop_join, left, right)


@workflow.defn(name="raw_interop_native")
class RawNative:
    """A workflow of raw temporalio, not bridge's."""

    @workflow.run
    async def run(self) -> str:
        return "native"


async def _raw_client(settings: dict[str, Any]) -> Client:
    return await Client.connect(settings["temporal"]["address"], namespace="default")


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), None), (("x", 7), "x-7"), (("x",), "x-1"), (({"left": "y", "right": 2},), "y-2")],
    ids=["none", "positional", "default", "by-name"],
)
async def test_a_raw_client_starts_a_bridge_workflow(
    temporal_settings: dict[str, Any], args: tuple[Any, ...], expected: str | None
) -> None:
    """Positional arguments (one payload each) are bound in order; one dict of parameter
    names is bridge's own form. Missing a required argument fails the run, naming it."""
    client = await bridge.connect(temporal_settings)
    raw = await _raw_client(temporal_settings)
    queue = temporal_settings["temporal"]["task_queue"]
    try:
        async with client.worker([raw_interop_wf]):
            handle = await raw.start_workflow(
                "raw_interop_wf",
                args=list(args),
                id=f"raw-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=30),
            )
            if expected is None:
                with pytest.raises(bridge.WorkflowFailedError, match="left"):
                    await client.result(handle.id, timeout=20)
            else:
                assert await handle.result() == expected
                assert await client.result(handle.id, timeout=20) == expected
    finally:
        await client.close()


async def test_a_bridge_worker_refuses_a_queue_raw_workers_poll(
    temporal_settings: dict[str, Any],
) -> None:
    """Temporal hands any workflow task of a queue to any of its workers; bridge's dynamic
    workflow would take (and fail) the raw ones, so the bridge worker does not start."""
    raw = await _raw_client(temporal_settings)
    queue = temporal_settings["temporal"]["task_queue"]
    client = await bridge.connect(temporal_settings)
    try:
        async with Worker(raw, task_queue=queue, workflows=[RawNative]):
            assert (
                await raw.execute_workflow(
                    RawNative.run, id=f"native-{uuid.uuid4().hex[:8]}", task_queue=queue
                )
                == "native"
            )
            with pytest.raises(bridge.ConfigError, match="not bridge workers") as caught:
                async with client.worker([raw_interop_wf]):
                    pass
        assert queue in str(caught.value) and "task queue of its own" in str(caught.value)
        # Bridge workers never refuse each other (on a fresh queue: the raw worker that
        # just stopped still counts on this one for a while).
        fresh = {**temporal_settings, "temporal": {**temporal_settings["temporal"]}}
        fresh["temporal"]["task_queue"] = f"{queue}-bridge"
        await client.close()
        client = await bridge.connect(fresh)
        other = await bridge.connect(fresh)
        try:
            async with other.worker([raw_interop_wf]), client.worker([raw_interop_wf]):
                assert await client.execute(raw_interop_wf, "z", 3, timeout=20) == "z-3"
        finally:
            await other.close()
    finally:
        await client.close()
