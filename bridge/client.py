"""`bridge.connect()` and the Client: the one API for every backend.

The client validates and encodes on the caller's side, so a bad argument fails at `start`
with the parameter's name, before anything reaches an engine.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from bridge import codec, interceptors, limits
from bridge.backend import (
    SCHEDULE_OVERLAPS,
    Backend,
    ScheduleDescription,
    ScheduleOverlap,
    Status,
    Worker,
    WorkflowDescription,
)
from bridge.config import Settings, load_settings
from bridge.errors import (
    ConfigError,
    InvalidScheduleError,
    NotRegisteredError,
    WorkflowBlockedError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowIdConflictError,
)
from bridge.history import EventType, HistoryEvent
from bridge.interceptors import StartCall
from bridge.plugins import registry
from bridge.search import SearchAttribute, encode_attributes, parse
from bridge.workflow import WorkflowDefinition, as_workflow, lookup_workflow, registered_workflows

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "IF_EXISTS",
    "Client",
    "IfExists",
    "ScheduleHandle",
    "WorkflowHandle",
    "connect",
    "connect_engine",
    "schedule",
]

#: How late a schedule's missed fire may still be taken (`Client.schedule`): a year, as on
#: Temporal.
DEFAULT_CATCHUP_WINDOW = 365 * 24 * 3600.0

#: What `Client.start` does when its id is taken by a run of the same workflow.
IfExists = Literal["same_args", "use_existing"]
IF_EXISTS: tuple[str, ...] = get_args(IfExists)


async def connect(config: Settings | Mapping[str, Any] | None = None) -> Client:
    """A client for the configured backend (bridge.toml, pyproject, BRIDGE_* env).

    When the configuration has `[migrate.WORKFLOW]` rules, the client routes: new runs
    start on the engine the rules choose and every other call goes to the engine that owns
    the run (`bridge.migrate.routing_client`). A client that ignored the rules would start
    runs on the default engine behind the router's back, where `bridge migrate status`
    cannot see them and retiring that engine would strand them."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    if settings.migrate:
        # Imported on use: the router and its routing table cost nothing without rules.
        from bridge.migrate.routing_client import connect_routing

        return await connect_routing(settings)
    return await connect_engine(settings)


async def connect_engine(config: Settings | Mapping[str, Any] | None = None) -> Client:
    """A client of exactly the configured backend, ignoring migration rules: for the router's
    own per-engine connections and for tools (the test harness) that must talk to one
    engine."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    backend = registry().create(settings.backend, settings)
    return Client(backend=backend, settings=settings)


@dataclass(frozen=True)
class WorkflowHandle:
    """A started run, by id."""

    client: Client
    id: str
    created: bool

    async def result(self, *, timeout: float | None = None) -> Any:
        return await self.client.result(self.id, timeout=timeout)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self.client.signal(self.id, name, payload)

    async def cancel(self) -> None:
        await self.client.cancel(self.id)

    async def query(self, name: str, *args: Any, result_type: Any = None) -> Any:
        return await self.client.query(self.id, name, *args, result_type=result_type)

    async def update(
        self,
        name: str,
        *args: Any,
        update_id: str | None = None,
        timeout: float | None = None,
        result_type: Any = None,
    ) -> Any:
        return await self.client.update(
            self.id, name, *args, update_id=update_id, timeout=timeout, result_type=result_type
        )

    async def describe(self) -> WorkflowDescription:
        return await self.client.describe(self.id)

    async def history(self) -> list[HistoryEvent]:
        return await self.client.history(self.id)


class Client:
    """Start, signal, cancel and inspect runs; make workers."""

    def __init__(self, *, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self.interceptors = interceptors.load(settings)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def unsafe_teardown(self) -> bool:
        """Whether an engine this client used cannot be torn down safely at exit
        (`Backend.unsafe_teardown`)."""
        return self.backend.unsafe_teardown

    async def client_for(self, id: str) -> Client:
        """The client of the engine that owns run `id`: this one, unless migration rules
        route runs between engines. A worker for that run must be made from it."""
        return self

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, *, wait: bool = True) -> None:
        """Close the connection. `wait=False` is for short-lived processes: background
        work this client started (a routing client's shadow runs) is not waited for."""
        await self.backend.close()

    async def start(
        self,
        workflow: WorkflowDefinition[..., Any],
        *args: Any,
        id: str | None = None,
        if_exists: IfExists = "same_args",
        execution_timeout: float | timedelta | None = None,
        search_attributes: Mapping[str | SearchAttribute, Any] | None = None,
    ) -> WorkflowHandle:
        """Start `workflow(*args)` as run `id` (a new random id when `id` is left out).

        `search_attributes` (`{"customer": "c-42", "amount": 12}`; a plain name takes its
        type from the value, a `bridge.SearchAttribute` key states it) are kept with a new
        run, shown by `describe()` and found by `list(query=...)` on every engine.

        `execution_timeout` (seconds or a timedelta) gives a new run a deadline: once it
        passes, the run is cancelled at its next operation (a parked run is woken for it)
        and ends FAILED; `result()` raises WorkflowFailedError whose error type is
        `WorkflowTimeoutError`. Compensations run if the workflow catches the cancellation
        and calls `ctx.compensate()`. Temporal's native execution timeout on Temporal; a
        durable deadline row on the journal engines.

        An existing id is not started again. With `if_exists="same_args"` (the default) the
        handle attaches to that run only when it was started with the same arguments (a
        retried start), and other arguments raise WorkflowIdConflictError: the old run's
        result would answer another question. `if_exists="use_existing"` attaches whatever
        the arguments were (Temporal's USE_EXISTING). A run of another workflow under `id`
        is always a conflict. Ids and arguments over `bridge.limits` fail before anything
        is written."""
        if if_exists not in IF_EXISTS:
            raise ValueError(f"if_exists must be one of {IF_EXISTS}, not {if_exists!r}")
        defn = as_workflow(workflow)
        if id is not None:
            limits.check_id(id)
        timeout = self._execution_timeout(execution_timeout, defn.name)
        attributes = self._search_attributes(search_attributes, defn.name)
        encoded = defn.shape.encode_args(args, {})
        limits.check_payload(encoded, what=f"the arguments of workflow {defn.name!r}")
        run_id = str(uuid.uuid4()) if id is None else id
        call = StartCall(workflow=defn, args=encoded, id=run_id)

        async def last(c: StartCall) -> bool:
            if attributes is not None:
                return await self._start_with_attributes(c, timeout, attributes)
            return await self._start(c, execution_timeout=timeout)

        created = await interceptors.call_start(self.interceptors, call, last)
        if not created and if_exists == "same_args":
            await self._check_same_args(defn, run_id, encoded)
        return WorkflowHandle(client=self, id=run_id, created=created)

    async def _check_same_args(
        self, defn: WorkflowDefinition[..., Any], id: str, encoded: dict[str, Any]
    ) -> None:
        """Raise WorkflowIdConflictError when run `id` was started with other arguments.

        The recorded arguments come from the run's history, whose first event carries them
        on every backend, so this one comparison serves every engine. It is made only when
        a start finds its id taken. A run that continued as new is compared by its first
        generation's arguments, which are what its starter passed: the `continued_from`
        links lead back to it."""
        started = await self._first_start(id)
        recorded = started.args if started is not None else None
        if not isinstance(recorded, dict) or recorded == encoded:
            return  # nothing recorded to compare with: attach, as before this check
        absent = object()
        differ = sorted(
            k
            for k in recorded.keys() | encoded.keys()
            if recorded.get(k, absent) != encoded.get(k, absent)
        )
        raise WorkflowIdConflictError(
            f"workflow id {id!r} is already used by a run of {defn.name!r} started with "
            f"other arguments ({', '.join(differ)} differ); start the new run under another "
            f"id, or pass if_exists='use_existing' to attach to the existing run"
        )

    async def _first_start(self, id: str) -> HistoryEvent | None:
        """The `workflow_started` event of the first generation of run `id`."""
        seen = {id}
        key = id
        while True:
            started = next(
                (
                    e
                    for e in await self.backend.history(key)
                    if e.type is EventType.WORKFLOW_STARTED
                ),
                None,
            )
            previous = started.details.get("continued_from") if started is not None else None
            if not isinstance(previous, str) or previous in seen:
                return started
            seen.add(previous)
            key = previous

    def _execution_timeout(self, value: float | timedelta | None, workflow: str) -> float | None:
        """`execution_timeout` in seconds, checked before anything is written: a positive
        finite number, on a backend whose `start` takes it."""
        if value is None:
            return None
        secs = value.total_seconds() if isinstance(value, timedelta) else value
        if isinstance(secs, bool) or not isinstance(secs, int | float) or not math.isfinite(secs):
            raise ValueError(
                f"execution_timeout of workflow {workflow!r} must be a number of seconds or "
                f"a timedelta, not {value!r}"
            )
        if secs <= 0:
            raise ValueError(
                f"execution_timeout of workflow {workflow!r} must be more than 0 seconds, "
                f"not {secs}; leave it out for no timeout"
            )
        if "execution_timeout" not in inspect.signature(self.backend.start).parameters:
            raise ConfigError(
                f"the {self.backend.name} backend does not support execution_timeout "
                f"(workflow {workflow!r}); use a backend that does (sql, langgraph, temporal) "
                f"or leave it out"
            )
        return float(secs)

    def _search_attributes(
        self, values: Mapping[str | SearchAttribute, Any] | None, workflow: str
    ) -> dict[str, Any] | None:
        """The start's search attributes encoded and checked before anything is written,
        on a backend whose `start` takes them."""
        if values is None:
            return None
        encoded = encode_attributes(values, where=f"a run of workflow {workflow!r}")
        if "search_attributes" not in inspect.signature(self.backend.start).parameters:
            raise ConfigError(
                f"the {self.backend.name} backend does not support search attributes "
                f"(workflow {workflow!r}); use a backend that does (sql, langgraph, "
                f"temporal) or leave them out"
            )
        return encoded

    async def _start_with_attributes(
        self, call: StartCall, execution_timeout: float | None, attributes: dict[str, Any]
    ) -> bool:
        options: dict[str, Any] = {"search_attributes": attributes, **self._headers(call)}
        if execution_timeout is not None:
            options["execution_timeout"] = execution_timeout
        return await self.backend.start(call.workflow, call.args, id=call.id, **options)

    async def _start(self, call: StartCall, *, execution_timeout: float | None = None) -> bool:
        """The end of the start's interceptor chain: the backend's start. The timeout and
        the headers are passed only when there are some, so backends whose `start`
        predates them keep working."""
        options = self._headers(call)
        if execution_timeout is not None:
            options["execution_timeout"] = execution_timeout
        return await self.backend.start(call.workflow, call.args, id=call.id, **options)

    def _headers(self, call: StartCall) -> dict[str, Any]:
        """`headers=` for the backend's start when the call has some and the backend keeps
        them. A backend that does not is started without: headers carry context (a trace)
        that must never stop a run from starting."""
        if not call.headers or "headers" not in inspect.signature(self.backend.start).parameters:
            return {}
        return {"headers": dict(call.headers)}

    async def execute(
        self,
        workflow: WorkflowDefinition[..., Any],
        *args: Any,
        id: str | None = None,
        timeout: float | None = None,
        if_exists: IfExists = "same_args",
        execution_timeout: float | timedelta | None = None,
        search_attributes: Mapping[str | SearchAttribute, Any] | None = None,
    ) -> Any:
        """Start (or reattach to) a run and wait for its result; needs a running worker.

        `timeout` bounds this call's wait only (the run goes on); `execution_timeout` is
        the run's own deadline (see `start`), after which the run itself fails."""
        handle = await self.start(
            workflow,
            *args,
            id=id,
            if_exists=if_exists,
            execution_timeout=execution_timeout,
            search_attributes=search_attributes,
        )
        return await handle.result(timeout=timeout)

    async def result(self, id: str, *, timeout: float | None = None) -> Any:
        """The run's result, decoded to the workflow's return type when it is registered
        here; raises WorkflowFailedError / WorkflowCancelledError for those outcomes."""
        desc = await self.backend.wait(id, timeout=timeout)
        return self.outcome(desc)

    def outcome(self, desc: WorkflowDescription) -> Any:
        """The decoded result of a finished (or blocked) run, or its error raised."""
        if desc.blocked:
            raise WorkflowBlockedError(desc.id, str((desc.error or {}).get("message", "")))
        if desc.status is Status.FAILED:
            error = desc.error or {}
            raise WorkflowFailedError(
                desc.id, str(error.get("error_type", "Error")), str(error.get("message", ""))
            )
        if desc.status is Status.CANCELLED:
            raise WorkflowCancelledError(desc.id)
        try:
            defn = lookup_workflow(desc.name)
        except NotRegisteredError:
            return desc.result
        return defn.shape.decode_result(desc.result)

    async def signal(self, id: str, name: str, payload: Any = None) -> None:
        """Deliver signal `name` to run `id`; it is kept until the workflow waits for it."""
        data = codec.to_jsonable(payload, where=f"signal {name!r} payload")
        limits.check_payload(data, what=f"the payload of signal {name!r} to workflow {id!r}")
        await self.backend.signal(id, name, data)

    async def cancel(self, id: str) -> None:
        await self.backend.cancel(id)

    async def query(self, id: str, name: str, *args: Any, result_type: Any = None) -> Any:
        """Ask run `id`'s query handler `name` (set by `ctx.set_query_handler`) with `args`;
        its answer as JSON data, or as `result_type` (an enum, dataclass, pydantic model,
        `list[...]`: what Temporal's `result_type=` gives). The handler gets its arguments
        as its parameters' declared types. Answered from the run's state, live or
        replayed, running or finished; a query never changes a run. An unknown name raises
        NotRegisteredError naming the run's queries."""
        data = [
            codec.to_jsonable(a, where=f"argument {i} of query {name!r}")
            for i, a in enumerate(args)
        ]
        limits.check_payload(data, what=f"the arguments of query {name!r} to workflow {id!r}")
        answer = await self.backend.query(id, name, data)
        return _typed_answer(answer, result_type, f"the answer of query {name!r}")

    async def update(
        self,
        id: str,
        name: str,
        *args: Any,
        update_id: str | None = None,
        timeout: float | None = None,
        result_type: Any = None,
    ) -> Any:
        """Call run `id`'s update handler `name` (set by `ctx.set_update_handler`) with
        `args` and return its result (JSON data, or as `result_type`): a request that may
        change the run. The handler and its validator get the arguments as their
        parameters' declared types; arguments that do not fit them are rejected.

        Exactly once per `update_id`: give one (or keep the generated one) to retry safely;
        the same id again returns the first result without running the handler again, also
        after a worker crash. Raises UpdateNotFoundError (unknown name, listing the run's
        updates), UpdateRejectedError (the validator refused; nothing was journaled),
        UpdateFailedError (the handler raised), WorkflowClosedError (the run has finished),
        TimeoutWaitingError (`timeout` seconds passed; the update may still be applied).
        """
        data = [
            codec.to_jsonable(a, where=f"argument {i} of update {name!r}")
            for i, a in enumerate(args)
        ]
        limits.check_payload(data, what=f"the arguments of update {name!r} to workflow {id!r}")
        if update_id is None:
            update_id = str(uuid.uuid4())
        limits.check_id(update_id, parameter="update_id")
        result = await self.backend.update(id, name, data, update_id=update_id, timeout=timeout)
        return _typed_answer(result, result_type, f"the result of update {name!r}")

    async def describe(self, id: str) -> WorkflowDescription:
        return await self.backend.describe(id)

    async def history(self, id: str) -> list[HistoryEvent]:
        return await self.backend.history(id)

    async def follow(self, id: str, *, poll: float = 0.5) -> AsyncIterator[HistoryEvent]:
        """The events of run `id` as they are journaled, those so far first, until it ends.

        Polls the history (every engine can give it; none pushes it to a client), so an
        event shows up within `poll` seconds of being journaled. A running agent's model
        calls, tool calls and streamed model events (each streamed call's events are its
        step's result) can be followed this way from another process.
        """
        seen: set[str] = set()
        while True:
            # The status first: once final, one more read of the history has every event.
            final = (await self.backend.describe(id)).status.is_terminal
            for event in await self.backend.history(id):
                key = codec.dumps(event.to_dict())
                if key not in seen:
                    seen.add(key)
                    yield event
            if final:
                return
            await asyncio.sleep(poll)

    async def list(
        self, *, status: Status | str | None = None, limit: int = 100, query: str | None = None
    ) -> list[WorkflowDescription]:
        """The newest `limit` runs, those with `status` when given, and those `query`
        matches: `customer = 'c-42' AND amount >= 10`, the part of Temporal's visibility
        query every engine runs (`bridge.search`). A bad query raises
        InvalidSearchQueryError naming the position, before any engine sees it."""
        wanted = Status(status.upper()) if isinstance(status, str) else status
        if query is None:
            return await self.backend.list(status=wanted, limit=limit)
        parse(query)
        if "query" not in inspect.signature(self.backend.list).parameters:
            raise ConfigError(
                f"the {self.backend.name} backend cannot list runs by query; use a backend "
                f"that can (sql, langgraph, temporal) or leave the query out"
            )
        return await self.backend.list(status=wanted, limit=limit, query=query)

    def worker(self, workflows: Sequence[WorkflowDefinition[..., Any]] | None = None) -> Worker:
        """A worker for `workflows` (default: every workflow registered in this process)."""
        chosen = (
            [as_workflow(w) for w in workflows]
            if workflows is not None
            else list(registered_workflows().values())
        )
        return self.backend.worker(workflows=chosen)

    # -- schedules ----------------------------------------------------------------------
    async def schedule(
        self,
        workflow: WorkflowDefinition[..., Any] | str,
        *args: Any,
        id: str,
        cron: str,
        overlap: ScheduleOverlap = "skip",
        catchup_window: float | timedelta | None = None,
        paused: bool = False,
        timezone: str = "UTC",
    ) -> ScheduleHandle:
        """Start `workflow(*args)` at every time of `cron` (5 fields, UTC) from now on, as
        schedule `id`: Temporal Schedules on Temporal, the journal's schedules table and its
        workers' scheduler on the embedded engines. Each run's id is `<id>-<fire time>`
        (RFC 3339 UTC), so a fire starts at most once.

        `overlap` decides what a fire does while a run the schedule started is open, as
        Temporal's policies: "skip" (the default, Temporal's), "buffer_one" (start it when
        that run ends; one at most), "buffer_all" (start every such fire, one after the
        other), "cancel_other" (cancel the open run; start the latest fire once it ended),
        "terminate_other" (end the open run now, FAILED with TerminatedError, and start)
        or "allow_all". `timezone` (an IANA name) is the zone the cron's times are read
        in, daylight saving time included; run ids stay in UTC. Fires missed while no
        worker (or server) ran are taken late unless older than `catchup_window` (seconds
        or a timedelta; default a year, Temporal's).
        Raises InvalidScheduleError, NotRegisteredError (a workflow not registered here),
        ScheduleAlreadyExistsError; nothing is created then. `workflow` may be a registered
        workflow's name."""
        defn = lookup_workflow(workflow) if isinstance(workflow, str) else as_workflow(workflow)
        limits.check_id(id, parameter="id")
        check_schedule(id, cron, overlap, timezone)
        window = _catchup_seconds(catchup_window, id)
        encoded = defn.shape.encode_args(args, {})
        limits.check_payload(encoded, what=f"the arguments of schedule {id!r}")
        # Passed only when not UTC: backends written before time zones keep working.
        zone = {} if timezone == "UTC" else {"timezone": timezone}
        await self.backend.create_schedule(
            defn,
            encoded,
            id=id,
            cron=cron,
            overlap=overlap,
            catchup_window=window,
            paused=paused,
            **zone,
        )
        return ScheduleHandle(client=self, id=id)

    def schedule_handle(self, id: str) -> ScheduleHandle:
        """A handle on existing schedule `id` (not checked until used)."""
        return ScheduleHandle(client=self, id=id)

    async def list_schedules(self) -> list[ScheduleDescription]:
        return await self.backend.list_schedules()

    async def describe_schedule(self, id: str) -> ScheduleDescription:
        return await self.backend.describe_schedule(id)

    async def pause_schedule(self, id: str, note: str | None = None) -> None:
        """Stop firing until `resume_schedule`; triggers still start runs."""
        await self.backend.pause_schedule(id, note)

    async def resume_schedule(self, id: str) -> None:
        """Fire again from now on; times that passed while paused are not caught up."""
        await self.backend.resume_schedule(id)

    async def delete_schedule(self, id: str) -> None:
        """Remove schedule `id`; the runs it started go on."""
        await self.backend.delete_schedule(id)

    async def trigger_schedule(self, id: str) -> None:
        """Fire now, under the schedule's overlap policy (also while paused)."""
        await self.backend.trigger_schedule(id)

    async def backfill_schedule(self, id: str, *, start: datetime, end: datetime) -> None:
        """Take now the fires of the cron times in [`start`, `end`] (both ends, as
        Temporal's server does), under the schedule's overlap policy and without its
        catch-up window (Temporal's backfill). Naive datetimes are UTC."""
        if end < start:
            raise InvalidScheduleError(
                f"backfill of schedule {id!r} ends ({end}) before it starts ({start})"
            )
        await self.backend.backfill_schedule(id, _aware(start), _aware(end))


@dataclass(frozen=True)
class ScheduleHandle:
    """A schedule, by id (`Client.schedule`)."""

    client: Client
    id: str

    async def describe(self) -> ScheduleDescription:
        return await self.client.describe_schedule(self.id)

    async def pause(self, note: str | None = None) -> None:
        await self.client.pause_schedule(self.id, note)

    async def resume(self) -> None:
        await self.client.resume_schedule(self.id)

    async def trigger(self) -> None:
        await self.client.trigger_schedule(self.id)

    async def backfill(self, *, start: datetime, end: datetime) -> None:
        await self.client.backfill_schedule(self.id, start=start, end=end)

    async def delete(self) -> None:
        await self.client.delete_schedule(self.id)


async def schedule(
    workflow: WorkflowDefinition[..., Any] | str,
    *args: Any,
    id: str,
    cron: str,
    overlap: ScheduleOverlap = "skip",
    catchup_window: float | timedelta | None = None,
    paused: bool = False,
    timezone: str = "UTC",
    config: Settings | Mapping[str, Any] | None = None,
) -> ScheduleDescription:
    """`Client.schedule` on a client of `config` (default: the configured backend), for a
    script that only sets a schedule up; the new schedule's description."""
    async with await connect(config) as client:
        handle = await client.schedule(
            workflow,
            *args,
            id=id,
            cron=cron,
            overlap=overlap,
            catchup_window=catchup_window,
            paused=paused,
            timezone=timezone,
        )
        return await handle.describe()


def check_schedule(id: str, cron: str, overlap: str, timezone: str = "UTC") -> None:
    """The checks every engine shares: a cron of 5 fields (or a macro such as `@hourly`),
    which Temporal and croniter read alike, a known overlap policy and an IANA time zone
    this machine knows (Temporal's server reads the same tz database names). Each engine
    parses the expression itself as well."""
    fields = cron.split() if isinstance(cron, str) else []
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].startswith("@"))):
        raise InvalidScheduleError(
            f"cron expression {cron!r} of schedule {id!r} is not valid: use 5 fields "
            f"(minute hour day-of-month month day-of-week, UTC), e.g. '*/5 * * * *', or a "
            f"macro such as '@hourly'"
        )
    if overlap not in SCHEDULE_OVERLAPS:
        raise InvalidScheduleError(
            f"overlap of schedule {id!r} must be one of {SCHEDULE_OVERLAPS}, not {overlap!r}"
        )
    check_timezone(id, timezone)


def check_timezone(id: str, timezone: str) -> None:
    """Refuse a time zone name the tz database does not know, naming the schedule."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidScheduleError(
            f"timezone of schedule {id!r} must be an IANA time zone name such as "
            f"'America/New_York' or 'UTC', not {timezone!r}"
        ) from None


def _catchup_seconds(value: float | timedelta | None, id: str) -> float:
    if value is None:
        return DEFAULT_CATCHUP_WINDOW
    secs = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(secs, bool) or not isinstance(secs, int | float) or not math.isfinite(secs):
        raise InvalidScheduleError(
            f"catchup_window of schedule {id!r} must be seconds or a timedelta, not {value!r}"
        )
    if secs < 10:
        # Temporal's minimum; the same floor everywhere keeps a schedule portable.
        raise InvalidScheduleError(
            f"catchup_window of schedule {id!r} must be at least 10 seconds (Temporal's "
            f"minimum), not {secs}"
        )
    return float(secs)


def _typed_answer(data: Any, result_type: Any, where: str) -> Any:
    """A query's or update's JSON answer as `result_type` (None: the JSON data itself)."""
    return data if result_type is None else codec.from_jsonable(data, result_type, where=where)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
