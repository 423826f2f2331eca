"""A bridge Worker: a Temporal worker for the neutral workflows it is given.

The Temporal worker serves one dynamic workflow type (`BridgeWorkflow`) and one dynamic
activity (`run_activity`) on the configured task queue; which neutral workflows exist is
recorded in `_registry` for the sandbox to find. temporalio allows one worker per client and
task queue, so bridge workers of one backend on the same queue share it: the first starts it,
the last stops it, each adds its workflows while it runs.

The sandbox stays on. Modules that define served workflows are imported afresh in it for
every run (their code meets the sandbox's restrictions and gets module state of its own);
every other module this process has already imported (bridge, pydantic, the user's
libraries) is passed through, as Temporal recommends for dependencies that are deterministic
to import.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import temporalio.worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from backends.temporal import _registry, _workflow
from backends.temporal._activity import activity_for
from backends.temporal._permits import BRIDGE_WORKFLOWS
from bridge import interceptors
from bridge.backend import Worker
from bridge.errors import ConfigError
from bridge.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from temporalio.client import Client

    from backends.temporal._backend import TemporalBackend

__all__ = ["TemporalWorker", "sandbox_runner", "tracing_interceptors"]

# temporalio's Rust core finishes a few callbacks after a worker has shut down; a process
# that exits at once can crash in interpreter shutdown (temporalio/sdk-python#300). Measured
# here: 4 of 20 runs crashed with no pause, none of 30 with 0.1 s.
_SETTLE_SECONDS = 0.2


def _with_packages(names: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return frozenset(out)


class _Passthrough(set[str]):
    """Modules passed through the sandbox: those imported when the worker started, minus,
    at each lookup, the modules (and their packages: a passed-through package passes its
    children too) of the workflows served now, which the sandbox must import afresh."""

    _for: frozenset[str] | None = None
    _reloaded: frozenset[str] = frozenset()

    def __contains__(self, name: object) -> bool:
        served = _registry.served_modules()
        if served is not self._for:  # recomputed only when what is served changes
            self._reloaded = _with_packages(served | {_workflow.__name__})
            self._for = served
        return super().__contains__(name) and name not in self._reloaded


def sandbox_runner() -> SandboxedWorkflowRunner:
    """Temporal's default sandbox, passing through what this process has imported except
    the served workflow modules (see `_Passthrough`), and OpenTelemetry, which Temporal's
    tracing interceptor uses inside the sandbox (as its documentation asks: one context
    for the workflow's spans and the process's).

    `uuid.uuid4()`/`uuid1()` are allowed in workflow code, as on sql and langgraph: agent
    code written for the Agents SDK makes its trace group ids with them (the SDK's own
    examples), which only tracing reads. Their values are not replay-stable on any engine;
    `ctx.uuid()` is for values that reach a step or a decision (the journal engines refuse
    a step whose arguments changed on replay)."""
    loaded = _Passthrough(name for name in list(sys.modules) if not name.startswith("__"))
    loaded |= SandboxRestrictions.default.passthrough_modules
    loaded.add("opentelemetry")
    members = SandboxRestrictions.default.invalid_module_members
    for name in ("uuid1", "uuid4"):
        members = members.with_child_unrestricted("uuid", name)
    restrictions = dataclasses.replace(
        SandboxRestrictions.default, passthrough_modules=loaded, invalid_module_members=members
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


#: The name of the function Temporal's tracing interceptor calls from the sandbox to make
#: each workflow span (`temporalio.contrib.opentelemetry`).
_COMPLETED_SPAN = "__temporal_opentelemetry_completed_span"


def tracing_interceptors(chain: Sequence[interceptors.Interceptor]) -> list[Any]:
    """Temporal's own OpenTelemetry interceptor for the client (and so for its workers)
    when the chain traces (`bridge.tracing`), else nothing: it makes the run's spans
    (`RunWorkflow`, `StartActivity`, `RunActivity`, child starts, signals) and carries the
    trace context from the start's header into the workflow, its activities and children.
    bridge's interceptor adds its attributes to Temporal's attempt span instead of a
    second one (`TracingInterceptor.execute_activity`)."""
    from bridge.tracing import TracingInterceptor

    if not any(isinstance(i, TracingInterceptor) for i in chain):
        return []
    from opentelemetry.trace import ProxyTracerProvider, get_tracer_provider

    if isinstance(get_tracer_provider(), ProxyTracerProvider):
        # No provider configured when the client is made: every span would be dropped, and
        # Temporal's interceptor would still cost each workflow and activity task a header
        # and span objects (the throughput goal against raw temporalio, #3). Configure
        # OpenTelemetry before connecting.
        return []
    return [_temporal_tracing_class()()]


@functools.cache
def _temporal_tracing_class() -> type[Any]:
    """Temporal's `TracingInterceptor` whose workflow spans carry bridge's attributes too,
    made on first use: OpenTelemetry is optional."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    class BridgeTracing(TracingInterceptor):
        def workflow_interceptor_class(
            self, input: temporalio.worker.WorkflowInterceptorClassInput
        ) -> Any:
            found = super().workflow_interceptor_class(input)
            make = input.unsafe_extern_functions.get(_COMPLETED_SPAN)
            if make is not None:
                input.unsafe_extern_functions[_COMPLETED_SPAN] = functools.partial(
                    _with_bridge_attributes, make
                )
            return found

    return BridgeTracing


def _with_bridge_attributes(make: Any, params: Any) -> Any:
    """A workflow span of Temporal's interceptor with bridge's attributes added (workflow
    id, workflow, backend), so spans read alike on every engine."""
    attributes = dict(params.attributes or {})
    workflow_id = attributes.get("temporalWorkflowID")
    if workflow_id is not None:
        attributes["bridge.workflow_id"] = workflow_id
        attributes["bridge.backend"] = "temporal"
    if params.name.startswith("RunWorkflow:"):
        attributes["bridge.workflow"] = params.name.partition(":")[2]
    return make(dataclasses.replace(params, attributes=attributes))


#: What a bridge worker's Temporal identity ends with, so another bridge worker can tell
#: its polls from a raw temporalio worker's.
_IDENTITY_MARK = "(durable-bridge)"
#: How far apart a running activity's heartbeats reach the server at most.
_HEARTBEAT_THROTTLE = timedelta(seconds=0.5)
# A poller is live if it polled this recently: a workflow poll is a long poll of at most
# about 70 s, so a running worker shows a newer one.
_LIVE_POLLER_SECONDS = 90.0


async def _refuse_shared_queue(client: Client, task_queue: str) -> None:
    """Refuse a task queue that a raw (non-bridge) Temporal worker polls for workflow tasks.

    Temporal hands every workflow task of a queue to any worker polling it, whatever its
    workflow type; a worker cannot poll only some types. The bridge worker's one dynamic
    workflow would take the raw workflows' tasks and fail them (no neutral workflow of that
    name), so such a queue is refused before the worker starts. A raw worker that starts
    polling later is not seen here: its runs then fail workflow tasks on bridge's worker
    with `NotRegisteredError` until its own worker takes them."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    now = time.time()
    raw = sorted(
        p.identity
        for p in response.pollers
        if not p.identity.endswith(_IDENTITY_MARK)
        and now - p.last_access_time.ToDatetime().timestamp() < _LIVE_POLLER_SECONDS
    )
    if raw:
        raise ConfigError(
            f"task queue {task_queue!r} is polled by Temporal workers that are not bridge "
            f"workers ({', '.join(raw)}); Temporal gives every workflow task of a queue to "
            f"any worker polling it, so a bridge worker there would take their workflows "
            f"too. Give bridge a task queue of its own (temporal.task_queue); a raw worker "
            f"that stopped counts for {_LIVE_POLLER_SECONDS:.0f} s"
        )


@dataclass
class _Shared:
    """The one temporalio worker of a client and task queue, and how many use it."""

    worker: temporalio.worker.Worker
    running: asyncio.Task[None]
    users: int = 0


class TemporalWorker(Worker):
    """Runs until `stop()`; see the module docstring."""

    def __init__(
        self, backend: TemporalBackend, workflows: Sequence[WorkflowDefinition[..., Any]]
    ) -> None:
        for defn in workflows:
            _registry.check_importable(defn)
        self.backend = backend
        self.definitions = {w.name: w for w in workflows}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self.backend.settings.temporal
        client = await self.backend.client()
        unserve = _registry.serve(
            _registry.Served(
                task_queue=settings.task_queue,
                definitions=MappingProxyType(dict(self.definitions)),
                heartbeat_timeout=settings.heartbeat_timeout,
            )
        )
        try:
            if settings.task_queue not in self.backend.shared_workers:
                await _refuse_shared_queue(client, settings.task_queue)
            shared = self._join(client, settings.task_queue)
            try:
                stopping = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({stopping, shared.running}, return_when="FIRST_COMPLETED")
                stopping.cancel()
                if shared.running.done():
                    shared.running.result()  # the Temporal worker failed: say why
            finally:
                await self._leave(shared, settings.task_queue)
        finally:
            unserve()

    def _join(self, client: Client, task_queue: str) -> _Shared:
        shared = self.backend.shared_workers.get(task_queue)
        if shared is None:
            try:
                worker = temporalio.worker.Worker(
                    client,
                    task_queue=task_queue,
                    workflows=[_workflow.BridgeWorkflow, *BRIDGE_WORKFLOWS],
                    activities=[activity_for(interceptors.load(self.backend.settings))],
                    workflow_runner=sandbox_runner(),
                    identity=f"{client.identity} {_IDENTITY_MARK}",
                    # Temporal delivers an activity's cancellation in a heartbeat's reply
                    # and throttles heartbeats to 0.8 x the heartbeat timeout by default;
                    # at most this apart, a running activity hears of it within a second,
                    # as on the journal engines.
                    max_heartbeat_throttle_interval=_HEARTBEAT_THROTTLE,
                    default_heartbeat_throttle_interval=_HEARTBEAT_THROTTLE,
                    sticky_queue_schedule_to_start_timeout=timedelta(
                        seconds=self.backend.settings.temporal.sticky_schedule_to_start_timeout
                    ),
                )
            except RuntimeError as exc:  # the sandbox refused to load the workflow modules
                modules = sorted({d.fn.__module__ for d in self.definitions.values()})
                raise ConfigError(
                    f"Temporal's workflow sandbox cannot load {', '.join(modules)}: "
                    f"{exc.__cause__ or exc}. A workflow module must do no work when "
                    f"imported (no I/O, threads, clocks or randomness at module level)"
                ) from exc
            shared = _Shared(worker=worker, running=asyncio.ensure_future(worker.run()))
            self.backend.shared_workers[task_queue] = shared
        shared.users += 1
        return shared

    async def _leave(self, shared: _Shared, task_queue: str) -> None:
        shared.users -= 1
        if shared.users:
            return
        del self.backend.shared_workers[task_queue]
        if not shared.running.done():
            await shared.worker.shutdown()
        await asyncio.gather(shared.running, return_exceptions=True)
        await asyncio.sleep(_SETTLE_SECONDS)
