"""Issue 17, point 8: one non-determinism rule on every engine, Temporal's side."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge import codec
from bridge.history import EventType
from bridge.workflow import WorkflowDefinition
from tests.conftest import fast_sql


@bridge.activity
async def nd_rule_part(label: str) -> str:
    return label


async def _first_a(ctx: bridge.Context) -> list[str]:
    a = await ctx.run(nd_rule_part, "a")
    await ctx.wait_for_signal("go")
    return [a, await ctx.run(nd_rule_part, "b")]


async def _first_z(ctx: bridge.Context) -> list[str]:
    a = await ctx.run(nd_rule_part, "z")
    await ctx.wait_for_signal("go")
    return [a, await ctx.run(nd_rule_part, "b")]


FIRST_A = WorkflowDefinition(_first_a, name="nd_rule")
FIRST_Z = WorkflowDefinition(_first_z, name="nd_rule")


#: A run of FIRST_A recorded (signalled, completed) by the worker before activity ids carried
#: the arguments' digest: ids "0" and "2" (step 1 is the wait), no marker.
#: From `WorkflowHistory.to_json()`.
OLD_FORMAT_HISTORY = (
    '{"events":[{"eventId":"1","eventTime":"2026-12-07T12:25:38.487668223Z","eventType":"EVEN'
    'T_TYPE_WORKFLOW_EXECUTION_STARTED","taskId":"1048587","workflowExecutionStartedEventAttr'
    'ibutes":{"workflowType":{"name":"nd_rule"},"taskQueue":{"name":"test-def11086c124","kind'
    '":"TASK_QUEUE_KIND_NORMAL"},"input":{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg'
    '=="},"data":"e30="}]},"workflowTaskTimeout":"10s","originalExecutionRunId":"01a25077-7fb'
    '7-7a2d-af96-8d854e1ba379","identity":"11010@vm","firstExecutionRunId":"01a25077-7fb7-7a2'
    'd-af96-8d854e1ba379","attempt":1,"firstWorkflowTaskBackoff":"0s","workflowId":"old-forma'
    't-run"}},{"eventId":"2","eventTime":"2026-12-07T12:25:38.487780294Z","eventType":"EVENT_'
    'TYPE_WORKFLOW_TASK_SCHEDULED","taskId":"1048588","workflowTaskScheduledEventAttributes":'
    '{"taskQueue":{"name":"test-def11086c124","kind":"TASK_QUEUE_KIND_NORMAL"},"startToCloseT'
    'imeout":"10s","attempt":1}},{"eventId":"3","eventTime":"2026-12-07T12:25:38.595827582Z",'
    '"eventType":"EVENT_TYPE_WORKFLOW_TASK_STARTED","taskId":"1048593","workflowTaskStartedEv'
    'entAttributes":{"scheduledEventId":"2","identity":"11010@vm","requestId":"e8222615-4998-'
    '4859-af09-89b3a7093938","historySizeBytes":"263","workerVersion":{"buildId":"42f85aac6b6'
    '98223ce3cb4cb483c6b70"}}},{"eventId":"4","eventTime":"2026-12-07T12:25:38.626234452Z","e'
    'ventType":"EVENT_TYPE_WORKFLOW_TASK_COMPLETED","taskId":"1048598","workflowTaskCompleted'
    'EventAttributes":{"scheduledEventId":"2","startedEventId":"3","identity":"11010@vm","wor'
    'kerVersion":{"buildId":"42f85aac6b698223ce3cb4cb483c6b70"},"sdkMetadata":{"coreUsedFlags'
    '":[2,3,1,4],"sdkName":"temporal-python","sdkVersion":"1.35.0"},"meteringMetadata":{}}},{'
    '"eventId":"5","eventTime":"2026-12-07T12:25:38.626547583Z","eventType":"EVENT_TYPE_ACTIV'
    'ITY_TASK_SCHEDULED","taskId":"1048599","activityTaskScheduledEventAttributes":{"activity'
    'Id":"0","activityType":{"name":"nd_rule_part"},"taskQueue":{"name":"test-def11086c124","'
    'kind":"TASK_QUEUE_KIND_NORMAL"},"header":{},"input":{"payloads":[{"metadata":{"encoding"'
    ':"anNvbi9wbGFpbg=="},"data":"eyJsYWJlbCI6ImEifQ=="}]},"scheduleToCloseTimeout":"0s","sch'
    'eduleToStartTimeout":"0s","startToCloseTimeout":"315360000s","heartbeatTimeout":"2s","wo'
    'rkflowTaskCompletedEventId":"4","retryPolicy":{"initialInterval":"1s","backoffCoefficien'
    't":2.0,"maximumInterval":"100s","maximumAttempts":3},"useWorkflowBuildId":true,"priority'
    '":{}}},{"eventId":"6","eventTime":"2026-12-07T12:25:38.626940459Z","eventType":"EVENT_TY'
    'PE_ACTIVITY_TASK_STARTED","taskId":"1048603","activityTaskStartedEventAttributes":{"sche'
    'duledEventId":"5","identity":"11010@vm","requestId":"f1ce8172-1b7c-41d5-b4b8-fc23dd1a161'
    'a","attempt":1,"workerVersion":{"buildId":"42f85aac6b698223ce3cb4cb483c6b70"}}},{"eventI'
    'd":"7","eventTime":"2026-12-07T12:25:38.636656681Z","eventType":"EVENT_TYPE_ACTIVITY_TAS'
    'K_COMPLETED","taskId":"1048604","activityTaskCompletedEventAttributes":{"result":{"paylo'
    'ads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"ImEi"}]},"scheduledEventId":"5'
    '","startedEventId":"6","identity":"11010@vm"}},{"eventId":"8","eventTime":"2026-12-07T12'
    ':25:38.636747129Z","eventType":"EVENT_TYPE_WORKFLOW_TASK_SCHEDULED","taskId":"1048605","'
    'workflowTaskScheduledEventAttributes":{"taskQueue":{"name":"11010@vm-c92e1248e9fa412ea91'
    '00106f73d4430","kind":"TASK_QUEUE_KIND_STICKY","normalName":"test-def11086c124"},"startT'
    'oCloseTimeout":"10s","attempt":1}},{"eventId":"9","eventTime":"2026-12-07T12:25:38.64121'
    '0456Z","eventType":"EVENT_TYPE_WORKFLOW_TASK_STARTED","taskId":"1048609","workflowTaskSt'
    'artedEventAttributes":{"scheduledEventId":"8","identity":"11010@vm","requestId":"1af6e7f'
    '0-8113-4fef-85a2-a7944e22c4b7","historySizeBytes":"934","workerVersion":{"buildId":"42f8'
    '5aac6b698223ce3cb4cb483c6b70"}}},{"eventId":"10","eventTime":"2026-12-07T12:25:38.653152'
    '303Z","eventType":"EVENT_TYPE_WORKFLOW_TASK_COMPLETED","taskId":"1048613","workflowTaskC'
    'ompletedEventAttributes":{"scheduledEventId":"8","startedEventId":"9","identity":"11010@'
    'vm","workerVersion":{"buildId":"42f85aac6b698223ce3cb4cb483c6b70"},"sdkMetadata":{},"met'
    'eringMetadata":{}}},{"eventId":"11","eventTime":"2026-12-07T12:25:38.653244020Z","eventT'
    'ype":"EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED","taskId":"1048614","workflowPropertiesMod'
    'ifiedEventAttributes":{"workflowTaskCompletedEventId":"10","upsertedMemo":{"fields":{"br'
    'idge.wait":{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJzdGVwIjoxLCJzaWduYWwiO'
    'iJnbyIsInRpbWVvdXQiOm51bGwsInN0YXRlIjoid2FpdGluZyJ9"},"bridge.waiting_for":{"metadata":{'
    '"encoding":"anNvbi9wbGFpbg=="},"data":"ImdvIg=="}}}}},{"eventId":"12","eventTime":"2026-'
    '12-07T12:25:38.666624198Z","eventType":"EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED","taskId"'
    ':"1048617","workflowExecutionSignaledEventAttributes":{"signalName":"go","input":{"paylo'
    'ads":[{"metadata":{"encoding":"YmluYXJ5L251bGw="}}]},"identity":"11010@vm","requestId":"'
    'b0e49c9d-d7e3-48d7-9dd8-250c2094e74f"}},{"eventId":"13","eventTime":"2026-12-07T12:25:38'
    '.666666325Z","eventType":"EVENT_TYPE_WORKFLOW_TASK_SCHEDULED","taskId":"1048618","workfl'
    'owTaskScheduledEventAttributes":{"taskQueue":{"name":"11010@vm-c92e1248e9fa412ea9100106f'
    '73d4430","kind":"TASK_QUEUE_KIND_STICKY","normalName":"test-def11086c124"},"startToClose'
    'Timeout":"10s","attempt":1}},{"eventId":"14","eventTime":"2026-12-07T12:25:38.668339561Z'
    '","eventType":"EVENT_TYPE_WORKFLOW_TASK_STARTED","taskId":"1048622","workflowTaskStarted'
    'EventAttributes":{"scheduledEventId":"13","identity":"11010@vm","requestId":"91e290a9-e5'
    '97-437b-8914-346532682c8e","historySizeBytes":"1523","workerVersion":{"buildId":"42f85aa'
    'c6b698223ce3cb4cb483c6b70"}}},{"eventId":"15","eventTime":"2026-12-07T12:25:38.674886500'
    'Z","eventType":"EVENT_TYPE_WORKFLOW_TASK_COMPLETED","taskId":"1048627","workflowTaskComp'
    'letedEventAttributes":{"scheduledEventId":"13","startedEventId":"14","identity":"11010@v'
    'm","workerVersion":{"buildId":"42f85aac6b698223ce3cb4cb483c6b70"},"sdkMetadata":{},"mete'
    'ringMetadata":{}}},{"eventId":"16","eventTime":"2026-12-07T12:25:38.674927417Z","eventTy'
    'pe":"EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED","taskId":"1048628","workflowPropertiesModi'
    'fiedEventAttributes":{"workflowTaskCompletedEventId":"15","upsertedMemo":{"fields":{"bri'
    'dge.wait":{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJzdGVwIjoxLCJzaWduYWwiOi'
    'JnbyIsInRpbWVvdXQiOm51bGwsInN0YXRlIjoicmVjZWl2ZWQifQ=="},"bridge.waiting_for":{"metadata'
    '":{"encoding":"YmluYXJ5L251bGw="}}}}}},{"eventId":"17","eventTime":"2026-12-07T12:25:38.'
    '674956342Z","eventType":"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED","taskId":"1048629","activit'
    'yTaskScheduledEventAttributes":{"activityId":"2","activityType":{"name":"nd_rule_part"},'
    '"taskQueue":{"name":"test-def11086c124","kind":"TASK_QUEUE_KIND_NORMAL"},"header":{},"in'
    'put":{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJsYWJlbCI6ImIifQ'
    '=="}]},"scheduleToCloseTimeout":"0s","scheduleToStartTimeout":"0s","startToCloseTimeout"'
    ':"315360000s","heartbeatTimeout":"2s","workflowTaskCompletedEventId":"15","retryPolicy":'
    '{"initialInterval":"1s","backoffCoefficient":2.0,"maximumInterval":"100s","maximumAttemp'
    'ts":3},"useWorkflowBuildId":true,"priority":{}}},{"eventId":"18","eventTime":"2026-12-07'
    'T12:25:38.674979458Z","eventType":"EVENT_TYPE_ACTIVITY_TASK_STARTED","taskId":"1048633",'
    '"activityTaskStartedEventAttributes":{"scheduledEventId":"17","identity":"11010@vm","req'
    'uestId":"549c9b54-b7a0-4b26-b330-cc062404999a","attempt":1,"workerVersion":{"buildId":"4'
    '2f85aac6b698223ce3cb4cb483c6b70"}}},{"eventId":"19","eventTime":"2026-12-07T12:25:38.677'
    '578303Z","eventType":"EVENT_TYPE_ACTIVITY_TASK_COMPLETED","taskId":"1048634","activityTa'
    'skCompletedEventAttributes":{"result":{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFp'
    'bg=="},"data":"ImIi"}]},"scheduledEventId":"17","startedEventId":"18","identity":"11010@'
    'vm"}},{"eventId":"20","eventTime":"2026-12-07T12:25:38.677598219Z","eventType":"EVENT_TY'
    'PE_WORKFLOW_TASK_SCHEDULED","taskId":"1048635","workflowTaskScheduledEventAttributes":{"'
    'taskQueue":{"name":"11010@vm-c92e1248e9fa412ea9100106f73d4430","kind":"TASK_QUEUE_KIND_S'
    'TICKY","normalName":"test-def11086c124"},"startToCloseTimeout":"10s","attempt":1}},{"eve'
    'ntId":"21","eventTime":"2026-12-07T12:25:38.678896124Z","eventType":"EVENT_TYPE_WORKFLOW'
    '_TASK_STARTED","taskId":"1048639","workflowTaskStartedEventAttributes":{"scheduledEventI'
    'd":"20","identity":"11010@vm","requestId":"5d2d014d-4b3c-4afd-a4fb-c6c2dda29d63","histor'
    'ySizeBytes":"2347","workerVersion":{"buildId":"42f85aac6b698223ce3cb4cb483c6b70"}}},{"ev'
    'entId":"22","eventTime":"2026-12-07T12:25:38.683629713Z","eventType":"EVENT_TYPE_WORKFLO'
    'W_TASK_COMPLETED","taskId":"1048643","workflowTaskCompletedEventAttributes":{"scheduledE'
    'ventId":"20","startedEventId":"21","identity":"11010@vm","workerVersion":{"buildId":"42f'
    '85aac6b698223ce3cb4cb483c6b70"},"sdkMetadata":{},"meteringMetadata":{}}},{"eventId":"23"'
    ',"eventTime":"2026-12-07T12:25:38.683703962Z","eventType":"EVENT_TYPE_WORKFLOW_EXECUTION'
    '_COMPLETED","taskId":"1048644","workflowExecutionCompletedEventAttributes":{"result":{"p'
    'ayloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"WyJhIiwiYiJd"}]},"workflow'
    'TaskCompletedEventId":"22"}}]}'
)


async def _park(client: bridge.Client, definition: WorkflowDefinition[..., Any], id: str) -> None:
    """Start `id` under `definition` and stop the worker once the run waits for its signal."""
    async with client.worker([definition]):
        handle = await client.start(definition, id=id)
        for _ in range(500):
            if (await handle.describe()).status is bridge.Status.WAITING:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{id} never parked")


def _settings(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if engine == "sql":
        return {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/bridge.db")}
    return dict(request.getfixturevalue("temporal_settings"))


@pytest.mark.parametrize("engine", ["sql", "temporal"])
async def test_changed_arguments_block_the_run_at_their_step(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The first activity's arguments changed ("a" -> "z") while the run waited: blocked at
    step 0, the run kept, on Temporal as on sql (before: Temporal completed the run with the
    old recorded result)."""
    client = await bridge.connect(_settings(engine, request, tmp_path))
    try:
        run = f"nd-args-{uuid.uuid4().hex[:8]}"
        await _park(client, FIRST_A, run)
        async with client.worker([FIRST_Z]):
            await client.signal(run, "go")
            with pytest.raises(bridge.WorkflowBlockedError):
                await client.result(run, timeout=30)
        desc = await client.describe(run)
    finally:
        await client.close()
    assert desc.blocked and not desc.status.is_terminal
    error = desc.error or {}
    assert error["error_type"] == "NonDeterminismError"
    message = error["message"]
    assert "at step 0" in message, message
    assert """activity 'nd_rule_part' with arguments {"label":"a"}""" in message, message


async def test_new_runs_carry_digests_that_the_history_does_not_show(
    temporal_settings: dict[str, Any],
) -> None:
    """Ids carry the digest; bridge's marker for it is no step of the neutral history."""
    client = await bridge.connect(temporal_settings)
    try:
        run = f"nd-ids-{uuid.uuid4().hex[:8]}"
        await _park(client, FIRST_A, run)
        async with client.worker([FIRST_A]):
            await client.signal(run, "go")
            assert await client.result(run, timeout=30) == ["a", "b"]
        events = await client.history(run)
        exported = json.loads(await client.backend.export_history(run))  # type: ignore[attr-defined]
    finally:
        await client.close()
    ids = [
        e["activityTaskScheduledEventAttributes"]["activityId"]
        for e in exported["events"]
        if "activityTaskScheduledEventAttributes" in e
    ]
    assert ids == [f"0#{codec.digest({'label': 'a'})}", f"2#{codec.digest({'label': 'b'})}"]
    assert not [e for e in events if e.type is EventType.PATCH_MARKER]
    assert [e.step for e in events if e.type is EventType.STEP_SCHEDULED] == [0, 2]


async def test_runs_recorded_with_the_old_ids_still_replay(
    temporal_settings: dict[str, Any],
) -> None:
    """A history written before ids carried digests replays without divergence: the
    digest patch answers False for it, so the code schedules the old ids. A worker resuming
    such a run replays exactly this way (Temporal's Replayer is the worker's replay)."""
    client = await bridge.connect(temporal_settings)
    try:
        replay = client.backend.replay  # type: ignore[attr-defined]
        events = len(json.loads(OLD_FORMAT_HISTORY)["events"])
        assert await replay(OLD_FORMAT_HISTORY, FIRST_A) == events
        # Old runs keep Temporal's old rule: an argument change is not seen in them.
        assert await replay(OLD_FORMAT_HISTORY, FIRST_Z) == events
    finally:
        await client.close()


async def _with_patch(ctx: bridge.Context) -> list[str]:
    out = [await ctx.run(nd_rule_part, "a")]
    if ctx.patched("add-c"):
        out.append(await ctx.run(nd_rule_part, "c"))
    await ctx.wait_for_signal("go")
    return [*out, await ctx.run(nd_rule_part, "b")]


async def _patch_removed(ctx: bridge.Context) -> list[str]:
    out = [await ctx.run(nd_rule_part, "a"), await ctx.run(nd_rule_part, "c")]
    await ctx.wait_for_signal("go")
    return [*out, await ctx.run(nd_rule_part, "b")]


WITH_PATCH = WorkflowDefinition(_with_patch, name="nd_rule_patch")
PATCH_REMOVED = WorkflowDefinition(_patch_removed, name="nd_rule_patch")


@pytest.mark.parametrize("engine", ["sql", "temporal"])
async def test_removing_a_patched_call_blocks_runs_that_took_it(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Temporal's deprecate-patch path (the new branch made unconditional while runs that
    took it are open) is not open in bridge: the marker is step 1 on both engines, so the
    code without it numbers its steps differently and such runs block at step 1, on both
    engines alike. Remove a `ctx.patched` call only once no open run has its marker."""
    client = await bridge.connect(_settings(engine, request, tmp_path))
    try:
        run = f"nd-patch-{uuid.uuid4().hex[:8]}"
        await _park(client, WITH_PATCH, run)
        async with client.worker([PATCH_REMOVED]):
            await client.signal(run, "go")
            with pytest.raises(bridge.WorkflowBlockedError):
                await client.result(run, timeout=30)
        desc = await client.describe(run)
        # Put back, the call lets the run finish on the branch it took.
        async with client.worker([WITH_PATCH]):
            for _ in range(2000):
                if not (await client.describe(run)).blocked:
                    break
                await asyncio.sleep(0.02)
            assert await client.result(run, timeout=40) == ["a", "c", "b"]
    finally:
        await client.close()
    message = (desc.error or {})["message"]
    assert desc.blocked and "at step 1" in message, message
    assert "patch 'add-c'" in message, message
