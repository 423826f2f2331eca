"""Every error durable-bridge raises, in one place.

Each one says what was wrong, where (workflow id, step index, parameter, config key) and what
to do about it, so a user reading one line of a log knows where to look.
"""

from __future__ import annotations

from typing import Any

from bridge._redact import mask


class BridgeError(Exception):
    """Base of every error raised by durable-bridge itself.

    Its message is masked when it is made (`bridge._redact.mask`): errors name the database
    they could not use, and a URL's password must reach no terminal, log or HTTP reply.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(mask(a) if isinstance(a, str) else a for a in args))


class ConfigError(BridgeError):
    """A setting is unknown or has a bad value."""


class UnknownBackendError(ConfigError):
    """The configured backend name is not installed."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        super().__init__(
            f"unknown backend {name!r}; installed backends: {', '.join(installed) or '(none)'}. "
            f"Set `backend` in bridge.toml or BRIDGE_BACKEND to one of them, or install the "
            f'extra that provides it (pip install "durable-bridge[{name}]").'
        )


class EngineNotInstalledError(BridgeError):
    """An optional engine package is missing; the message carries the install hint."""

    def __init__(self, engine: str, extra: str) -> None:
        super().__init__(
            f'the {engine} backend needs its engine package: pip install "durable-bridge[{extra}]"'
        )


class SerializationError(BridgeError, TypeError):
    """A value cannot be encoded (or decoded) by bridge.codec; nothing was written."""


class NonDeterminismError(BridgeError):
    """Workflow code took a different path from the one recorded in its journal."""

    def __init__(self, workflow_id: str, step: int, recorded: str, current: str) -> None:
        self.workflow_id = workflow_id
        self.step = step
        self.recorded = recorded
        self.current = current
        super().__init__(
            f"workflow {workflow_id!r} diverged from its journal at step {step}: "
            f"the journal has {recorded}, the code now asks for {current}. "
            f"Guard the change with ctx.patched('change-id') so old runs keep the old path."
        )


class ActivityError(BridgeError):
    """An activity failed for good (attempts exhausted, non-retryable, or timed out).

    Raised identically on the live run and on replay, so workflow code that catches it
    behaves the same both times. The original exception is not kept (nothing is pickled):
    its type name and message are.
    """

    def __init__(
        self,
        *,
        activity: str,
        step: int,
        error_type: str,
        message: str,
        attempts: int,
        non_retryable: bool = False,
    ) -> None:
        self.activity = activity
        self.step = step
        self.error_type = error_type
        self.message = message
        self.attempts = attempts
        self.non_retryable = non_retryable
        super().__init__(
            f"activity {activity!r} (step {step}) failed after {attempts} attempt(s): "
            f"{error_type}: {message}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "activity": self.activity,
            "step": self.step,
            "error_type": self.error_type,
            "message": self.message,
            "attempts": self.attempts,
            "non_retryable": self.non_retryable,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActivityError:
        return cls(**data)


class NonRetryableError(Exception):
    """Raise (or subclass) this in an activity to fail its step at once, without retries."""


def non_retryable(exc: Exception) -> Exception:
    """`exc` as an error bridge does not retry, keeping its type's name and message (what
    `ActivityError` reports): for an adapter whose framework runs a call once when its own
    code raises (a LangGraph node without a retry policy, an Agents SDK tool), while a lost
    worker or a timeout still runs the call again. A subclass of the error's own type is
    used, so the journal names the real error and `except` clauses still match it."""
    cls = type(exc)
    try:
        final_cls = type(cls.__name__, (cls, NonRetryableError), {"__module__": cls.__module__})
        final_cls.__qualname__ = cls.__qualname__
        final = final_cls.__new__(final_cls, *exc.args)
        final.args = exc.args
        final.__dict__.update(getattr(exc, "__dict__", {}))
        return final
    except Exception:  # a type that cannot be subclassed or rebuilt
        return NonRetryableError(f"{cls.__name__}: {exc}")


class RetryAfter(Exception):
    """Raise in an activity when the service it called asked to be left alone for a while
    (an HTTP 429 or 503 with `Retry-After`): the attempt fails and the next one starts
    `seconds` later instead of after the retry policy's backoff, so a rate-limited provider
    is waited out rather than hammered; the attempt still counts against `max_attempts`."""

    def __init__(self, seconds: float, message: str = "") -> None:
        if not seconds >= 0:
            raise ValueError(f"RetryAfter needs a number of seconds >= 0, not {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(message or f"the service asked to retry after {self.seconds:g}s")


class ActivityTimeoutError(TimeoutError):
    """One attempt of an activity overran its timeout; it is retried per the policy."""


class ActivityHeartbeatTimeoutError(ActivityTimeoutError):
    """One attempt of an activity declared with `heartbeat_timeout` stayed silent longer
    than that (no `bridge.heartbeat()`): taken for stuck, it is cancelled and retried per
    the policy, the next attempt reading its last heartbeat details."""


class CompensationError(BridgeError):
    """One or more compensations failed; the others still ran, in reverse order."""

    def __init__(self, failures: list[ActivityError]) -> None:
        self.failures = failures
        names = ", ".join(f"{f.activity} (step {f.step})" for f in failures)
        super().__init__(f"compensation failed for: {names}")


class WorkflowFailedError(BridgeError):
    """The workflow ended with an error; `error_type` and `message` say which."""

    def __init__(self, workflow_id: str, error_type: str, message: str) -> None:
        self.workflow_id = workflow_id
        self.error_type = error_type
        self.message = message
        super().__init__(f"workflow {workflow_id!r} failed: {error_type}: {message}")


class ChildWorkflowError(BridgeError):
    """A child workflow (`ctx.execute_child` / `ChildHandle.result()`) did not complete:
    it failed (`status` "FAILED", with its `error_type` and `message`), was cancelled
    ("CANCELLED") or terminated by its parent's close policy ("TERMINATED"), or its id was
    already in use when the parent started it ("ALREADY_STARTED").

    One error on every engine (Temporal's own ChildWorkflowError is translated to it), kept
    as JSON in the parent's journal so a replay raises the same one.
    """

    def __init__(
        self, *, child_id: str, workflow: str, status: str, error_type: str, message: str
    ) -> None:
        self.child_id = child_id
        self.workflow = workflow
        self.status = status
        self.error_type = error_type
        self.message = message
        what = {"FAILED": "failed", "CANCELLED": "was cancelled", "TERMINATED": "was terminated"}
        verb = what.get(status, f"could not start ({status.lower()})")
        super().__init__(
            f"child workflow {child_id!r} ({workflow}) {verb}: {error_type}: {message}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "child_id": self.child_id,
            "workflow": self.workflow,
            "status": self.status,
            "error_type": self.error_type,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChildWorkflowError:
        return cls(
            child_id=str(data.get("child_id", "")),
            workflow=str(data.get("workflow", "")),
            status=str(data.get("status", "FAILED")),
            error_type=str(data.get("error_type", "")),
            message=str(data.get("message", "")),
        )


class WorkflowTimeoutError(BridgeError):
    """A run passed the execution timeout it was started with (`client.start(...,
    execution_timeout=)`). It is what a timed-out run's `WorkflowFailedError.error_type`
    names on every engine; the run was cancelled at its next operation and ended FAILED."""

    def __init__(self, workflow_id: str, timeout: float | None) -> None:
        self.workflow_id = workflow_id
        self.timeout = timeout
        limit = f" of {timeout:g}s" if timeout is not None else ""
        super().__init__(
            f"workflow {workflow_id!r} passed its execution timeout{limit} before it "
            f"finished; start it with a longer execution_timeout (or none) if it needs more "
            f"time"
        )


class WorkflowCancelledError(BridgeError):
    """The workflow was cancelled before it finished."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} was cancelled")


class WorkflowBlockedError(BridgeError):
    """The run hit a NonDeterminismError; its journal is kept until fixed code resumes it."""

    def __init__(self, workflow_id: str, message: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"workflow {workflow_id!r} is stopped, not failed: {message}. Its journal is "
            f"kept; deploy code that replays it (or guard the change with ctx.patched) and "
            f"restart the worker"
        )


class WorkflowNotFoundError(BridgeError):
    """No workflow with this id exists in the configured backend."""

    def __init__(self, workflow_id: str, where: str = "") -> None:
        self.workflow_id = workflow_id
        suffix = f" in {where}" if where else ""
        super().__init__(
            f"no workflow with id {workflow_id!r}{suffix}; `bridge list` shows the known ids"
        )


class WorkflowClosedError(BridgeError):
    """A signal or cancel was sent to a workflow that has already finished."""

    def __init__(self, workflow_id: str, status: str, action: str) -> None:
        self.workflow_id = workflow_id
        self.status = status
        super().__init__(
            f"cannot {action} workflow {workflow_id!r}: it is already {status.lower()}"
        )


class WorkflowIdConflictError(BridgeError):
    """An id is already used by a run of a different workflow."""


class NotRegisteredError(BridgeError):
    """A function was used as a workflow or activity without its decorator, or is unknown."""


class StorageError(BridgeError):
    """The journal's database cannot be used (corrupt, locked, newer schema, unreachable)."""


class PayloadKeyError(BridgeError):
    """An encrypted payload cannot be decrypted: its key id is not configured, or the key
    under that id is not the one it was encrypted with (`bridge.encryption`). Nothing was
    changed; configure the key in `[encryption] keys` and retry."""

    def __init__(self, key_id: str | None, message: str) -> None:
        self.key_id = key_id
        super().__init__(message)


class OutsideWorkflowError(BridgeError):
    """A workflow-only operation was called outside a running workflow."""


class TimeoutWaitingError(BridgeError, TimeoutError):
    """A client-side wait (for example `result(timeout=...)`) ran out."""


class InvalidIdError(BridgeError, ValueError):
    """A workflow id is empty or longer than the engines accept (`bridge.limits`); nothing
    was written."""


class PayloadTooLargeError(SerializationError, ValueError):
    """Arguments, a signal payload or an activity result are larger than the engines accept
    (`bridge.limits`); nothing was written. A SerializationError, so an activity whose result
    is too large fails at once instead of repeating its side effect on every retry."""


class QueryNotFoundError(NotRegisteredError):
    """A query named a handler the run has not set (yet): the message lists the ones it has."""


class QueryFailedError(BridgeError):
    """A query handler raised; the run is unchanged (queries never change a run)."""


class UpdateNotFoundError(NotRegisteredError):
    """An update named a handler the run has not set (yet): the message lists the ones it
    has. Nothing was journaled, as for a rejected update."""


class UpdateRejectedError(BridgeError):
    """An update's validator raised: the update was refused before it was accepted, so
    nothing was journaled and the run is unchanged (Temporal's rejected update).
    `error_type` and `message` are the validator's exception."""

    def __init__(self, message: str, *, error_type: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.reason = reason


class UpdateFailedError(BridgeError):
    """An update was accepted (journaled) and its handler raised: the run goes on, the
    caller gets the handler's `error_type` and `message` (Temporal's failed update)."""

    def __init__(self, message: str, *, error_type: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.reason = reason


class InvalidScheduleError(BridgeError, ValueError):
    """A schedule's cron expression, overlap policy or catch-up window is not one every
    engine accepts; nothing was created."""


class ScheduleNotFoundError(BridgeError):
    """No schedule has this id (never created, or deleted)."""

    def __init__(self, schedule_id: str, where: str = "") -> None:
        self.schedule_id = schedule_id
        at = f" in {where}" if where else ""
        super().__init__(
            f"no schedule with id {schedule_id!r}{at}; `bridge schedule list` shows the "
            f"schedules there, `bridge schedule create` makes one"
        )


class ScheduleAlreadyExistsError(BridgeError):
    """A schedule with this id exists already; nothing was changed."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(
            f"a schedule with id {schedule_id!r} exists already; choose another id, or "
            f"delete it first (`bridge schedule delete {schedule_id}`)"
        )


class InvalidSearchAttributeError(BridgeError, ValueError):
    """A search attribute's name or value is not one every engine can hold; nothing was
    written."""


class InvalidSearchQueryError(BridgeError, ValueError):
    """A `client.list(query=...)` / `bridge list --where` query is not in the query language
    every engine runs (`bridge.search`); `position` is where it goes wrong (0-based)."""

    def __init__(self, query: str, position: int, what: str) -> None:
        self.query = query
        self.position = position
        self.what = what
        near = query[position : position + 20]
        at = f"near {near!r}" if near else "at its end"
        super().__init__(
            f"bad search query at position {position} ({at}): {what}. The query was: "
            f"{query!r}; see `bridge list --help` for the language (e.g. "
            f"customer = 'c-42' AND amount >= 10)"
        )
