"""Temporal as a `bridge.Backend`: runs live in Temporal's history, on a real server.

Arguments and results reach this class as `bridge.codec` JSON data (the Client encodes
them); the data converter (`_converter.py`) writes that data into Temporal's payloads as is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import temporalio.api.common.v1
import temporalio.api.enums.v1
import temporalio.api.namespace.v1
import temporalio.api.operatorservice.v1
import temporalio.api.taskqueue.v1
import temporalio.api.workflowservice.v1
import temporalio.converter
import temporalio.workflow
from temporalio.api.enums.v1 import PendingWorkflowTaskState, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent as TemporalEvent
from temporalio.client import (
    Client,
    TLSConfig,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowHistoryEventFilterType,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from backends.temporal import _registry
from backends.temporal._context import (
    DEADLINE_GRACE_S,
    DEADLINE_MEMO,
    WAITING_FOR_MEMO,
    search_attributes_of,
    typed_search_attributes,
)
from backends.temporal._converter import data_converter, open_failures
from backends.temporal._devserver import DevServer
from backends.temporal._history import build_history, non_determinism
from backends.temporal._permits import PERMITS_WORKFLOW, RATE_WORKFLOW
from backends.temporal._schedules import TemporalSchedules
from backends.temporal._worker import TemporalWorker, sandbox_runner, tracing_interceptors
from backends.temporal._workflow import BridgeWorkflow
from bridge import interceptors
from bridge.backend import Backend, ScheduleDescription, Status, WorkflowDescription
from bridge.config import Settings
from bridge.encryption import check_keys
from bridge.errors import (
    ConfigError,
    PayloadKeyError,
    QueryFailedError,
    QueryNotFoundError,
    StorageError,
    TimeoutWaitingError,
    UpdateFailedError,
    UpdateNotFoundError,
    UpdateRejectedError,
    WorkflowClosedError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from bridge.history import EventType, HistoryEvent
from bridge.search import parse, render
from bridge.workflow import WorkflowDefinition

__all__ = ["TemporalBackend"]

log = logging.getLogger("bridge.temporal")

#: The prefix of the namespace data keys holding the encryption key checks (`_check_keys`).
_KEY_CHECK = "bridge.key_check."

_CLOSED = {
    WorkflowExecutionStatus.COMPLETED: Status.COMPLETED,
    WorkflowExecutionStatus.FAILED: Status.FAILED,
    WorkflowExecutionStatus.CANCELED: Status.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: Status.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: Status.FAILED,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: Status.COMPLETED,
}
_IV = temporalio.api.enums.v1.IndexedValueType
#: Temporal's indexed value type of each search-attribute kind (`bridge.search`).
_INDEXED_TYPES = {
    "keyword": _IV.INDEXED_VALUE_TYPE_KEYWORD,
    "text": _IV.INDEXED_VALUE_TYPE_TEXT,
    "int": _IV.INDEXED_VALUE_TYPE_INT,
    "float": _IV.INDEXED_VALUE_TYPE_DOUBLE,
    "bool": _IV.INDEXED_VALUE_TYPE_BOOL,
    "datetime": _IV.INDEXED_VALUE_TYPE_DATETIME,
    "keyword_list": _IV.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}
_QUERY_STATUS = {
    Status.COMPLETED: "Completed",
    Status.FAILED: "Failed",
    Status.CANCELLED: "Canceled",
}
# A workflow task that failed for one of these waits for fixed code: the run is blocked.
_NON_DETERMINISTIC = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
_BLOCKING_CAUSES = {
    _NON_DETERMINISTIC,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
}
# How `wait` looks for a blocked run (see there).
_FIRST_CHECK, _LONGEST_CHECK, _CHECKS_PER_SECOND = 2.0, 60.0, 2.0
_REMEMBERED_RUNS = 10_000


class TemporalBackend(Backend):
    name = "temporal"
    capabilities = frozenset(
        {
            "heartbeats",
            "execution_timeout",
            "signals",
            "signal_timeout",
            "durable_sleep",
            "gather",
            "patched",
            "compensation",
            "cancellation",
            "multi_worker",
            "history_export",
            "queries",
            "updates",
            "wait_condition",
            "continue_as_new",
            "child_workflows",
            "crash_resume",
            "idempotent_start",
            "non_determinism_detection",
            "replay",
        }
    )
    # temporalio's Rust core can call into Python while a short-lived client process shuts
    # down: "Fatal Python error: PyGILState_Release" (temporalio/sdk-python#300), seen once
    # in four test-suite runs from `bridge signal`.
    unsafe_teardown = True

    def __init__(self, *, settings: Settings) -> None:
        super().__init__(settings=settings)
        self._client: Client | None = None
        self._connecting: asyncio.Lock | None = None
        #: The temporalio worker per task queue that this backend's workers share.
        self.shared_workers: dict[str, Any] = {}
        self._started: dict[str, tuple[str, datetime]] = {}
        #: Search-attribute keys known registered in the namespace, with their kinds.
        self._search_keys: dict[str, str] = {}
        #: Temporal's OpenTelemetry interceptor when tracing is on (`tracing_interceptors`),
        #: on the client and so on every worker made from it.
        self._tracing: list[Any] = tracing_interceptors(interceptors.load(settings))
        self._last_check = 0.0

    # -- connection ---------------------------------------------------------------------
    async def client(self) -> Client:
        """The temporalio client, connected (and the namespace checked) on first use."""
        if self._client is None:
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                if self._client is None:
                    self._client = await self._connect()
        return self._client

    def _tls(self) -> TLSConfig | bool:
        t = self.settings.temporal
        files = {
            "tls_server_root_ca": t.tls_server_root_ca,
            "tls_client_cert": t.tls_client_cert,
            "tls_client_key": t.tls_client_key,
        }
        if not any(files.values()):
            return t.tls
        data: dict[str, bytes | None] = {}
        for key, path in files.items():
            try:
                data[key] = Path(path).read_bytes() if path else None
            except OSError as exc:
                raise ConfigError(f"cannot read temporal.{key} ({path}): {exc}") from None
        return TLSConfig(
            server_root_ca_cert=data["tls_server_root_ca"],
            client_cert=data["tls_client_cert"],
            client_private_key=data["tls_client_key"],
        )

    async def _connect(self) -> Client:
        t = self.settings.temporal
        try:
            client = await asyncio.wait_for(
                Client.connect(
                    t.address,
                    namespace=t.namespace,
                    data_converter=data_converter(self.settings),
                    interceptors=self._tracing,
                    tls=self._tls(),
                    connect_timeout=timedelta(seconds=t.connect_timeout),
                ),
                t.connect_timeout,
            )
        except (TimeoutError, RuntimeError, OSError, RPCError) as exc:
            reason = (
                f"no answer within {t.connect_timeout:g}s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            raise StorageError(
                f"cannot reach the Temporal server at {t.address} (setting temporal.address): "
                f"{reason}. Start one with `bridge dev temporal`, or point temporal.address "
                f"at yours"
            ) from None
        try:
            described = await client.workflow_service.describe_namespace(
                temporalio.api.workflowservice.v1.DescribeNamespaceRequest(namespace=t.namespace),
                timeout=timedelta(seconds=t.connect_timeout),
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ConfigError(
                    f"the Temporal server at {t.address} has no namespace {t.namespace!r} "
                    f"(setting temporal.namespace); create it with `temporal operator "
                    f"namespace create --namespace {t.namespace}` or choose an existing one"
                ) from None
            raise StorageError(f"the Temporal server at {t.address} refused us: {exc}") from None
        keyring = interceptors.payload_codec(interceptors.load(self.settings))
        if keyring is not None:
            await self._check_keys(client, keyring, dict(described.namespace_info.data))
        return client

    async def _check_keys(self, client: Client, keyring: Any, data: dict[str, str]) -> None:
        """Refuse a key that is not the one this namespace knows under its id, before
        anything is sealed with it (a client's wrong key would seal starts and signals no
        worker can open, blocking their runs). The namespace's data map keeps, per key id,
        a constant sealed with that key (`bridge.encryption.check_keys`), recorded by the
        first process that connects with it; a server that refuses to record (no
        permission to update the namespace) is checked against what is recorded only."""
        where = self._where()
        recorded = {k[len(_KEY_CHECK) :]: v for k, v in data.items() if k.startswith(_KEY_CHECK)}
        missing = check_keys(keyring, recorded, where=where)
        if not missing:
            return
        t = self.settings.temporal
        request = temporalio.api.workflowservice.v1.UpdateNamespaceRequest(
            namespace=t.namespace,
            update_info=temporalio.api.namespace.v1.UpdateNamespaceInfo(
                data={f"{_KEY_CHECK}{k}": v for k, v in missing.items()}
            ),
        )
        try:
            await client.workflow_service.update_namespace(
                request, timeout=timedelta(seconds=t.connect_timeout)
            )
            described = await client.workflow_service.describe_namespace(
                temporalio.api.workflowservice.v1.DescribeNamespaceRequest(namespace=t.namespace),
                timeout=timedelta(seconds=t.connect_timeout),
            )
        except RPCError as exc:
            log.warning(
                "cannot record the encryption key checks in %s (%s): a wrong key under a "
                "known id is then found only when a payload is opened",
                where,
                exc.message,
            )
            return
        # Another process connecting at once may have recorded its key first: check again.
        data = dict(described.namespace_info.data)
        recorded = {k[len(_KEY_CHECK) :]: v for k, v in data.items() if k.startswith(_KEY_CHECK)}
        check_keys(keyring, recorded, where=where)

    def _where(self) -> str:
        t = self.settings.temporal
        return f"Temporal namespace {t.namespace!r} at {t.address}"

    async def _handle(self, id: str) -> WorkflowHandle[Any, Any]:
        return (await self.client()).get_workflow_handle(id)

    # -- Backend ------------------------------------------------------------------------
    async def start(
        self,
        workflow: WorkflowDefinition[..., Any],
        args: dict[str, Any],
        *,
        id: str,
        execution_timeout: float | None = None,
        search_attributes: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bool:
        """Start unless `id` exists. USE_EXISTING answers a running id with that run, and
        REJECT_DUPLICATE refuses to start a finished id again, so a finished run keeps its
        recorded result. The start is a plain StartWorkflowExecution request because only
        its response says whether this call created the run.

        With `temporal.eager_start` the request asks for eager execution; temporalio's core
        clears that flag itself unless a worker of this client polls the task queue and has
        a free slot, and hands the first workflow task in the response to that worker. That
        saves the server a task dispatch per run (measured in bench/RESULTS.md).

        `execution_timeout` is Temporal's own workflow execution timeout (it spans
        continue-as-new); the server times the run out, and `_timeout_error` names it.

        `headers` (the caller's W3C trace context, `StartCall.headers`) go in the start's
        header where Temporal's tracing interceptor reads them in the workflow, so the run's
        spans are in the caller's trace; without that interceptor they are not kept."""
        client = await self.client()
        t = self.settings.temporal
        request = temporalio.api.workflowservice.v1.StartWorkflowExecutionRequest(
            namespace=t.namespace,
            workflow_id=id,
            workflow_type=temporalio.api.common.v1.WorkflowType(name=workflow.name),
            task_queue=temporalio.api.taskqueue.v1.TaskQueue(name=t.task_queue),
            identity=client.identity,
            request_id=str(uuid.uuid4()),
            request_eager_execution=t.eager_start,
            workflow_id_reuse_policy=temporalio.api.enums.v1.WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
            workflow_id_conflict_policy=temporalio.api.enums.v1.WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
        )
        if execution_timeout is not None:
            # The workflow cancels its own code at the deadline (so it can compensate, as on
            # the journal engines: `_context.DEADLINE_MEMO`); Temporal's own timeout, a
            # grace period later, ends a run whose code never stops.
            deadline = [time.time() + execution_timeout, execution_timeout]
            request.memo.fields[DEADLINE_MEMO].CopyFrom(
                (await client.data_converter.encode([deadline]))[0]
            )
            request.workflow_execution_timeout.FromTimedelta(
                timedelta(seconds=execution_timeout + DEADLINE_GRACE_S)
            )
        if search_attributes:
            await self._register_search_attributes(search_attributes)
            temporalio.converter.encode_search_attributes(
                typed_search_attributes(search_attributes), request.search_attributes
            )
        if headers and self._tracing:
            tracing = self._tracing[0]
            # As Temporal's client interceptor writes it: the carrier with the default
            # payload converter, under its header key (headers are never encrypted).
            request.header.fields[tracing.header_key].CopyFrom(
                tracing.payload_converter.to_payloads([dict(headers)])[0]
            )
        request.input.payloads.extend(await client.data_converter.encode([args]))
        try:
            response = await client.workflow_service.start_workflow_execution(request, retry=True)
        except RPCError as exc:
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            created = False  # a finished run with this id
        else:
            created = response.started
        started_at = datetime.now(UTC)
        if not created:
            existing = await (await self._handle(id)).describe()
            if existing.workflow_type != workflow.name:
                raise WorkflowIdConflictError(
                    f"workflow id {id!r} is already used by a run of "
                    f"{existing.workflow_type!r}, not {workflow.name!r}; choose another id"
                )
            started_at = existing.start_time
        self._remember(id, workflow.name, started_at)
        return created

    async def _register_search_attributes(self, encoded: dict[str, Any]) -> None:
        """Register the keys a start names that the namespace lacks (Temporal refuses a
        run with an unknown key), through the OperatorService as
        `temporal operator search-attribute create` does; once per key and client. A key
        registered with another type, or a server that refuses the call (Temporal Cloud
        registers keys in its console), is a ConfigError naming the command."""
        wanted = {n: str(item["kind"]) for n, item in encoded.items()}
        if all(self._search_keys.get(n) == k for n, k in wanted.items()):
            return
        client = await self.client()
        namespace = self.settings.temporal.namespace
        request = temporalio.api.operatorservice.v1.ListSearchAttributesRequest(namespace=namespace)
        try:
            listed = await client.operator_service.list_search_attributes(request)
            known = {**dict(listed.system_attributes), **dict(listed.custom_attributes)}
        except RPCError as exc:
            raise self._search_setup_error(wanted, exc) from None
        by_type = {v: k for k, v in _INDEXED_TYPES.items()}
        missing: dict[str, Any] = {}
        for name, kind in wanted.items():
            if name not in known:
                missing[name] = _INDEXED_TYPES[kind]
                continue
            have = by_type.get(known[name])
            if have != kind:
                raise ConfigError(
                    f"search attribute {name!r} is registered in {self._where()} as "
                    f"{have or known[name]}, not {kind}; pass a value of that type (or a "
                    f"bridge.SearchAttribute.{have}({name!r}) key), or use another name"
                )
            self._search_keys[name] = kind
        if missing:
            add = temporalio.api.operatorservice.v1.AddSearchAttributesRequest(
                namespace=namespace, search_attributes=missing
            )
            try:
                await client.operator_service.add_search_attributes(add)
            except RPCError as exc:
                if exc.status != RPCStatusCode.ALREADY_EXISTS:
                    raise self._search_setup_error(wanted, exc) from None
            self._search_keys.update({n: wanted[n] for n in missing})

    def _search_setup_error(self, wanted: dict[str, str], exc: RPCError) -> ConfigError:
        names = {"keyword": "Keyword", "text": "Text", "int": "Int", "float": "Double"}
        names |= {"bool": "Bool", "datetime": "Datetime", "keyword_list": "KeywordList"}
        commands = "; ".join(
            f"temporal operator search-attribute create --namespace "
            f"{self.settings.temporal.namespace} --name {n} --type {names[k]}"
            for n, k in wanted.items()
        )
        return ConfigError(
            f"could not register search attributes {sorted(wanted)} in {self._where()} "
            f"({exc.message}); register them once with: {commands}"
        )

    def _remember(self, id: str, name: str, created: datetime) -> None:
        """Name and start of runs this client started, so `wait` needs no describe call."""
        if id not in self._started and len(self._started) >= _REMEMBERED_RUNS:
            del self._started[next(iter(self._started))]
        self._started[id] = (name, created)

    async def describe(self, id: str) -> WorkflowDescription:
        handle = await self._handle(id)
        try:
            d = await handle.describe()
        except RPCError as exc:
            raise self._not_found(exc, id) from None
        raw = d.raw_description
        status = _CLOSED.get(d.status) if d.status is not None else None
        base: dict[str, Any] = {
            "id": id,
            "name": d.workflow_type,
            "created_at": d.start_time,
            "backend": self.name,
            "search_attributes": search_attributes_of(d.typed_search_attributes),
        }
        if status is not None:
            result, error = await self._outcome(handle)
            return WorkflowDescription(
                **base,
                status=status,
                updated_at=d.close_time or d.start_time,
                result=result,
                error=error,
            )
        times = [d.start_time]
        times += [_time(a.last_started_time) for a in raw.pending_activities]
        task = raw.pending_workflow_task if raw.HasField("pending_workflow_task") else None
        if task is not None:
            times.append(_time(task.scheduled_time))
        updated = max(t for t in times if t is not None)
        if task is not None and task.attempt > 1:
            error = await self._blocking_error(handle)
            if error is not None:
                return WorkflowDescription(
                    **base,
                    status=Status.WAITING,
                    updated_at=updated,
                    error=error,
                    waiting_for="a code fix (non-determinism)"
                    if error["error_type"] == "NonDeterminismError"
                    else "a code fix",
                    blocked=True,
                )
        if raw.pending_activities:
            status = Status.RUNNING
        elif task is not None:
            started = task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
            status = Status.RUNNING if started else Status.PENDING
        else:
            status = Status.WAITING
        waiting_for = (await d.memo()).get(WAITING_FOR_MEMO) if status is Status.WAITING else None
        return WorkflowDescription(
            **base, status=status, updated_at=updated, waiting_for=waiting_for
        )

    async def _outcome(self, handle: WorkflowHandle[Any, Any]) -> tuple[Any, dict[str, Any] | None]:
        """The result or error of a finished run, from its close event."""
        async for ev in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            converter = (await self.client()).data_converter.payload_converter
            closing = build_history(open_failures([ev], converter), converter)
            if closing:
                return closing[-1].result, _timeout_error(handle.id, ev) or closing[-1].error
        return None, None

    async def _blocking_error(self, handle: WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
        """The error that blocks a run whose workflow task keeps failing, if it is one that
        waits for fixed code (non-determinism, an exception from the workflow machinery)."""
        converter = (await self.client()).data_converter.payload_converter
        events = open_failures([ev async for ev in handle.fetch_history_events()], converter)
        last = next(
            (
                ev
                for ev in reversed(events)
                if ev.HasField("workflow_task_failed_event_attributes")
                or ev.HasField("workflow_task_completed_event_attributes")
            ),
            None,
        )
        if last is None or not last.HasField("workflow_task_failed_event_attributes"):
            return None
        failed = last.workflow_task_failed_event_attributes
        if failed.cause not in _BLOCKING_CAUSES:
            return None
        message = failed.failure.message
        kind = failed.failure.application_failure_info.type
        if not kind and failed.cause == _NON_DETERMINISTIC:
            # Temporal's own replay check (an untyped failure); a typed one is an exception
            # from Python, such as the sandbox refusing a call.
            converter = (await self.client()).data_converter.payload_converter
            nde = non_determinism(handle.id, events, converter, message)
            return {"error_type": type(nde).__name__, "message": str(nde)}
        return {"error_type": kind or "WorkflowTaskError", "message": message}

    async def wait(self, id: str, *, timeout: float | None) -> WorkflowDescription:
        """Long-poll the close event, as temporalio's `handle.result()` does, and look for a
        blocked run (which would never close) now and then: after 2 s, then less and less
        often, at least every minute, and at most `_CHECKS_PER_SECOND` looks per client.
        Each look is a describe call, which costs the dev server about as much CPU as a
        quarter of an activity, so hundreds of waiting calls must not poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        handle = await self._handle(id)
        known = self._started.get(id)
        if known is None:  # not started by this client: learn its name, and maybe its end
            desc = await self.describe(id)
            if desc.status.is_terminal or desc.blocked:
                return desc
            known = (desc.name, desc.created_at)
        closing = asyncio.ensure_future(_close_event(handle))
        check = _FIRST_CHECK
        next_check = self._reserve_check(time.monotonic() + check)
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    desc = await self.describe(id)
                    if desc.status.is_terminal or desc.blocked:
                        return desc
                    raise TimeoutWaitingError(
                        f"workflow {id!r} is still {desc.status.value.lower()} after {timeout}s"
                    )
                wake = next_check if deadline is None else min(next_check, deadline)
                # Not the RPC's own timeout: temporalio's history iterator retries a long
                # poll that timed out at once, in a busy loop.
                await asyncio.wait({closing}, timeout=max(0.0, wake - now))
                if closing.done():
                    event = closing.result()
                    if event is not None and not event.HasField(
                        "workflow_execution_continued_as_new_event_attributes"
                    ):
                        return await self._closed(id, known, event)
                    # No close yet, or this run continued as new: watch the id's latest run
                    # (a handle without a run id follows it), whose result is the chain's.
                    closing = asyncio.ensure_future(_close_event(handle))
                elif time.monotonic() >= next_check:
                    desc = await self.describe(id)
                    if desc.status.is_terminal or desc.blocked:
                        return desc
                    check = min(check * 4, _LONGEST_CHECK)
                    next_check = self._reserve_check(time.monotonic() + check)
        finally:
            closing.cancel()

    def _reserve_check(self, wanted: float) -> float:
        """The time of a blocked-run look at `wanted` or later, keeping this client's looks
        at most `_CHECKS_PER_SECOND` (the close event is still watched meanwhile)."""
        slot = max(wanted, self._last_check + 1 / _CHECKS_PER_SECOND)
        self._last_check = slot
        return slot

    async def _closed(
        self, id: str, known: tuple[str, datetime], event: TemporalEvent
    ) -> WorkflowDescription:
        """A finished run's description from its close event (no further call)."""
        converter = (await self.client()).data_converter.payload_converter
        closing = build_history(open_failures([event], converter), converter)[-1]
        status = {
            EventType.WORKFLOW_COMPLETED: Status.COMPLETED,
            EventType.WORKFLOW_CANCELLED: Status.CANCELLED,
        }.get(closing.type, Status.FAILED)
        name, created = known
        return WorkflowDescription(
            id=id,
            name=name,
            status=status,
            created_at=created,
            updated_at=closing.time,
            backend=self.name,
            result=closing.result,
            error=_timeout_error(id, event) or closing.error,
        )

    async def signal(self, id: str, name: str, payload: Any) -> None:
        handle = await self._handle(id)
        try:
            await handle.signal(name, payload)
        except RPCError as exc:
            raise await self._closed_or_missing(exc, id, "signal") from None

    async def query(self, id: str, name: str, args: Sequence[Any]) -> Any:
        """A native Temporal query, answered by the workflow class's dynamic query handler
        (`_workflow_class.py`) from the run's state; Temporal replays a run that no worker
        caches (a finished one too), so a worker of the task queue must be running.

        Temporal hands back only the failure's message, which `answer_query` wrote to name
        the run, the query and the run's queries; an unknown name is told by that text."""
        handle = await self._handle(id)
        try:
            return await handle.query(name, args=list(args))
        except WorkflowQueryFailedError as exc:
            if f"has no query {name!r}" in exc.message:
                raise QueryNotFoundError(exc.message) from None
            raise QueryFailedError(
                f"query {name!r} of workflow {id!r} failed: {exc.message}"
            ) from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
                raise StorageError(
                    f"no worker answered query {name!r} of workflow {id!r} in time; start a "
                    f"worker for task queue {self.settings.temporal.task_queue!r} "
                    f"(`bridge worker`), which answers queries, finished runs' too"
                ) from None
            raise self._not_found(exc, id) from None

    async def update(
        self,
        id: str,
        name: str,
        args: Sequence[Any],
        *,
        update_id: str,
        timeout: float | None = None,
    ) -> Any:
        """A native Temporal update (`execute_update` with `update_id`), validated and run
        by the workflow class's dynamic update handler (`_workflow_class.py`); Temporal
        answers a repeated update id with the first outcome.

        The handler's and validator's errors come back as ApplicationErrors whose type
        tells a rejection (UpdateRejectedError, UpdateNotFoundError) from a failure, and
        whose details carry the original error type and message."""
        handle = await self._handle(id)
        call = handle.execute_update(name, args=list(args), id=update_id)
        try:
            return await (call if timeout is None else asyncio.wait_for(call, timeout))
        except TimeoutError:
            raise TimeoutWaitingError(
                f"update {name!r} (update id {update_id!r}) of workflow {id!r} has no "
                f"outcome after {timeout}s; call again with the same update id to keep "
                f"waiting: it is applied at most once"
            ) from None
        except WorkflowUpdateFailedError as exc:
            raise _update_error(exc, id, name) from None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise TimeoutWaitingError(
                f"update {name!r} (update id {update_id!r}) of workflow {id!r}: Temporal "
                f"gave no outcome in time; is a worker for task queue "
                f"{self.settings.temporal.task_queue!r} running? Call again with the same "
                f"update id to keep waiting"
            ) from None
        except RPCError as exc:
            raise await self._closed_or_missing(exc, id, f"send update {name!r} to") from None

    async def cancel(self, id: str) -> None:
        # Temporal accepts a cancel request for a finished run without complaint; bridge
        # refuses it, as on sql, so look first.
        desc = await self.describe(id)
        if desc.status.is_terminal:
            raise WorkflowClosedError(id, desc.status.value, "cancel")
        handle = await self._handle(id)
        try:
            await handle.cancel()
        except RPCError as exc:
            raise await self._closed_or_missing(exc, id, "cancel") from None

    async def history(self, id: str) -> list[HistoryEvent]:
        """The current run's history, or with `ID@RUN_ID` an earlier run of a chain that
        continued as new (the `continued_from` its successor's `workflow_started` names)."""
        base, run_id = _run_address(id)
        handle = (await self.client()).get_workflow_handle(base, run_id=run_id)
        try:
            events = [ev async for ev in handle.fetch_history_events()]
        except RPCError as exc:
            raise self._not_found(exc, id) from None
        converter = (await self.client()).data_converter.payload_converter
        out = build_history(open_failures(events, converter), converter)
        if out and (previous := out[0].details.get("continued_from_run")):
            details = {"continued_from": f"{base}@{previous}"}
            out[0] = dataclasses.replace(out[0], details=details)
        return out

    async def list(
        self, *, status: Status | None = None, limit: int = 100, query: str | None = None
    ) -> list[WorkflowDescription]:
        """Runs from Temporal's visibility store, newest first. A running run is RUNNING, or
        WAITING when it waits for a signal; `describe` tells the finer state of one run.
        Runs that continued as new are left out, as on the journal engines.

        `query` (`bridge.search`) is parsed and rendered back, so Temporal gets only the
        language every engine runs (built-ins spelled as Temporal spells them); its
        visibility store is eventually consistent, so a run just started or changed may
        show a moment later."""
        client = await self.client()
        parts = [] if query is None else [render(parse(query))]
        if status is not None:
            parts.append(f'ExecutionStatus="{_QUERY_STATUS.get(status, "Running")}"')
        visibility = " AND ".join(parts) or None
        out = []
        executions = client.list_workflows(visibility, limit=None)
        while True:
            try:
                ex = await anext(executions)
            except StopAsyncIteration:
                break
            except RPCError as exc:
                if query is not None and exc.status == RPCStatusCode.INVALID_ARGUMENT:
                    raise ConfigError(
                        f"{self._where()} refused the search query {query!r}: "
                        f"{exc.message}; a search attribute must be registered there "
                        f"before a query names it (`temporal operator search-attribute "
                        f"create`)"
                    ) from None
                raise
            if ex.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
                continue  # an earlier run of a chain: the id's latest run stands for it
            if ex.workflow_type in (PERMITS_WORKFLOW, RATE_WORKFLOW):
                continue  # the bridge's own semaphores and buckets, not the user's runs
            try:
                memo = await ex.memo()
            except (KeyError, PayloadKeyError):
                # Sealed with a key this client lacks (temporalio's KeyError: no keyring
                # at all): the namespace is listed anyway, without what the memo adds.
                memo = {}
            closed = _CLOSED.get(ex.status) if ex.status is not None else None
            waiting_for = memo.get(WAITING_FOR_MEMO) if closed is None else None
            found = closed or (Status.WAITING if waiting_for else Status.RUNNING)
            if status is not None and found is not status:
                continue
            out.append(
                WorkflowDescription(
                    id=ex.id,
                    name=ex.workflow_type,
                    status=found,
                    created_at=ex.start_time,
                    updated_at=ex.close_time or ex.start_time,
                    backend=self.name,
                    waiting_for=waiting_for,
                    search_attributes=search_attributes_of(ex.typed_search_attributes),
                )
            )
            if len(out) >= limit:
                break
        return out

    def worker(self, *, workflows: Sequence[WorkflowDefinition[..., Any]]) -> TemporalWorker:
        return TemporalWorker(self, workflows)

    async def close(self) -> None:
        # temporalio clients hold no resource to release; dropping it is enough.
        self._client = None

    # -- tools --------------------------------------------------------------------------
    async def run_dev_server(
        self, *, data_dir: Path, port: int, on_ready: Callable[[str, str | None], None]
    ) -> None:
        server = DevServer(db_path=data_dir / "temporal.db", port=port, ui=True)
        await asyncio.to_thread(server.start)
        try:
            on_ready(server.address, server.ui_address)
            while server.running():
                await asyncio.sleep(0.5)
        finally:
            server.stop()

    async def export_history(self, id: str) -> str:
        """The run's Temporal history as `WorkflowHistory.to_json()` (what `replay` reads)."""
        handle = await self._handle(id)
        try:
            return (await handle.fetch_history()).to_json()
        except RPCError as exc:
            raise self._not_found(exc, id) from None

    async def replay(self, history: str, workflow: WorkflowDefinition[..., Any]) -> int:
        """Replay a Temporal history export (`temporal workflow show -o json`, the Web UI's
        download, or `WorkflowHistory.to_json()`) with Temporal's Replayer and the same
        sandbox as a worker; non-determinism comes back as bridge's NonDeterminismError."""
        from temporalio.worker import Replayer

        _registry.check_importable(workflow)
        try:
            recorded = WorkflowHistory.from_json("replayed", history)
        except Exception as exc:
            raise ConfigError(f"not a Temporal history export (JSON): {exc}") from None
        asked: dict[int, _registry.Asked] = {}
        unserve = _registry.serve(
            _registry.Served(
                task_queue=None,
                definitions={workflow.name: workflow},
                heartbeat_timeout=self.settings.temporal.heartbeat_timeout,
                asked=asked,
            )
        )
        try:
            replayer = Replayer(
                workflows=[BridgeWorkflow],
                data_converter=data_converter(self.settings),
                workflow_runner=sandbox_runner(),
            )
            result = await replayer.replay_workflow(recorded, raise_on_replay_failure=False)
        finally:
            unserve()
        failure = result.replay_failure
        if isinstance(failure, temporalio.workflow.NondeterminismError):
            label = f"{workflow.name} (replayed history)"
            converter = data_converter(self.settings).payload_converter
            raise non_determinism(label, recorded.events, converter, str(failure), asked)
        if failure is not None:
            raise failure
        return len(recorded.events)

    # -- errors -------------------------------------------------------------------------
    def _not_found(self, exc: RPCError, id: str) -> BaseException:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return WorkflowNotFoundError(id, self._where())
        return exc

    async def _closed_or_missing(self, exc: RPCError, id: str, action: str) -> BaseException:
        """Temporal answers NOT_FOUND both for an unknown id and a finished run."""
        if exc.status != RPCStatusCode.NOT_FOUND:
            return exc
        try:
            desc = await self.describe(id)
        except WorkflowNotFoundError as missing:
            return missing
        return WorkflowClosedError(id, desc.status.value, action)

    # -- schedules: native Temporal Schedules (`_schedules.py`) --------------------------
    @property
    def _schedules(self) -> TemporalSchedules:
        return TemporalSchedules(self)

    async def create_schedule(self, workflow: Any, args: dict[str, Any], **spec: Any) -> None:
        await self._schedules.create(workflow, args, **spec)

    async def describe_schedule(self, id: str) -> ScheduleDescription:
        return await self._schedules.describe(id)

    async def list_schedules(self) -> list[ScheduleDescription]:
        return await self._schedules.list()

    async def pause_schedule(self, id: str, note: str | None = None) -> None:
        await self._schedules.pause(id, note)

    async def resume_schedule(self, id: str) -> None:
        await self._schedules.resume(id)

    async def delete_schedule(self, id: str) -> None:
        await self._schedules.delete(id)

    async def trigger_schedule(self, id: str) -> None:
        await self._schedules.trigger(id)

    async def backfill_schedule(self, id: str, start: datetime, end: datetime) -> None:
        await self._schedules.backfill(id, start, end)


def _update_error(exc: WorkflowUpdateFailedError, id: str, name: str) -> Exception:
    """The bridge error for a failed Temporal update (see `RunState.validate`/`apply`)."""
    cause = exc.cause
    kind = getattr(cause, "type", None) or type(cause).__name__
    message = getattr(cause, "message", None) or str(cause)
    details = getattr(cause, "details", None) or ()
    info = details[0] if details and isinstance(details[0], dict) else {}
    if kind == "UpdateNotFoundError":
        return UpdateNotFoundError(message)
    if kind == "UpdateRejectedError":
        return UpdateRejectedError(
            message,
            error_type=str(info.get("error_type", "")),
            reason=str(info.get("reason", "")),
        )
    return UpdateFailedError(
        f"update {name!r} of workflow {id!r} failed: {message}",
        error_type=str(info.get("error_type", kind)),
        reason=str(info.get("reason", message)),
    )


async def _close_event(handle: WorkflowHandle[Any, Any]) -> TemporalEvent | None:
    """The run's close event, long-polling the server until there is one."""
    async for ev in handle.fetch_history_events(
        wait_new_event=True,
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT,
        skip_archival=True,
    ):
        return ev
    return None


def _run_address(id: str) -> tuple[str, str | None]:
    """`ID@RUN_ID` (a Temporal run id, a UUID) as (ID, RUN_ID); any other id as itself."""
    base, sep, run = id.rpartition("@")
    if sep and base:
        try:
            uuid.UUID(run)
        except ValueError:
            return id, None
        return base, run
    return id, None


def _time(ts: Any) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def _timeout_error(id: str, event: TemporalEvent) -> dict[str, Any] | None:
    """The error of a run Temporal timed out (its execution timeout passed), worded as on
    every engine (`WorkflowTimeoutError`); None for any other close event."""
    if not event.HasField("workflow_execution_timed_out_event_attributes"):
        return None
    error = WorkflowTimeoutError(id, None)
    return {"error_type": type(error).__name__, "message": str(error)}
