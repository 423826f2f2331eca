"""Which neutral workflows the workers of this process serve: the host state the sandbox reads.

Temporal runs every workflow in a sandbox that re-imports its module for each run, so the one
`BridgeWorkflow` class cannot carry the worker's workflow list itself. This module is passed
through the sandbox (it is the same object inside and out): a worker records what it serves
here, the sandboxed `BridgeWorkflow` imports those modules in its own sandbox and runs the
sandbox's copy of the workflow function, so workflow code runs under the sandbox's
restrictions with module state of its own.
"""

from __future__ import annotations

import importlib
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from temporalio import workflow

from bridge.activity import registering
from bridge.errors import ConfigError, NotRegisteredError
from bridge.workflow import WorkflowDefinition

__all__ = [
    "Served",
    "check_importable",
    "import_served_modules",
    "lookup",
    "serve",
    "served_modules",
]


#: A step as the code asks for it: (kind, name, arguments), as `_history.describe_step` takes.
Asked = tuple[str, str, Any]


@dataclass(frozen=True)
class Served:
    """What one worker serves on one task queue (None: any queue, as for a replay).

    `asked` is for a replay only: the context writes in it each step the code asks for, so
    a divergence is named at the step where code and history part. Temporal's own message
    cannot always tell (an activity type mismatch names no event).
    """

    task_queue: str | None
    definitions: Mapping[str, WorkflowDefinition[..., Any]]
    heartbeat_timeout: float
    asked: dict[int, Asked] | None = None


_lock = threading.Lock()
# Both replaced, never mutated, so sandbox threads read them without the lock.
_served: tuple[Served, ...] = ()
_modules: frozenset[str] = frozenset()


# Workflow functions made inside a function (a workflow factory such as the LangGraph
# adapter's `from_state_graph`) -> the module-level name their definition is bound to.
_bound_names: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


def _bound_name(defn: WorkflowDefinition[..., Any]) -> str | None:
    """The module-level name `defn` is bound to in its function's module, if it is."""
    module = sys.modules.get(defn.fn.__module__)
    names = [k for k, v in vars(module).items() if v is defn] if module is not None else []
    return names[0] if names else None


def check_importable(defn: WorkflowDefinition[..., Any]) -> None:
    """Refuse a workflow the sandbox could not import again by module and name.

    A definition made by a factory inside a function (its qualname has `<locals>`) is
    accepted when it is bound to a module-level name of its function's `__module__`: the
    sandbox's fresh import of that module makes it again under the same name.
    """
    module, qualname = defn.fn.__module__, defn.fn.__qualname__
    where = f"workflow {defn.name!r} ({module}:{qualname})"
    if module in ("__main__", "__mp_main__"):
        raise ConfigError(
            f"{where} is defined in the script being run; Temporal's sandbox re-imports "
            f"workflow modules for every run, so move it into an importable module"
        )
    if "<locals>" in qualname:
        bound = _bound_name(defn)
        if bound is None:
            raise ConfigError(
                f"{where} is defined inside a function; Temporal's sandbox re-imports "
                f"workflow modules for every run, so define it (or bind what the function "
                f"returns) at module level of {module}"
            )
        _bound_names[defn.fn] = bound


def _publish(served: tuple[Served, ...]) -> None:
    global _served, _modules
    _served = served
    _modules = frozenset(d.fn.__module__ for s in served for d in s.definitions.values())


def serve(served: Served) -> Callable[[], None]:
    """Record `served` until the returned function is called."""
    with _lock:
        _publish((*_served, served))

    def unserve() -> None:
        with _lock:
            _publish(tuple(s for s in _served if s is not served))

    return unserve


def served_modules() -> frozenset[str]:
    """The modules defining every served workflow."""
    return _modules


def _import_quietly(names: Iterable[str]) -> None:
    # The copies made in the sandbox must not replace the process's own definitions: the
    # activity worker calls those (and their module state is the one tests and users see).
    token = registering.set(False)
    try:
        for name in names:
            importlib.import_module(name)
    finally:
        registering.reset(token)


def import_served_modules() -> None:
    """Import every served workflow module into the current sandbox (at its load time)."""
    _import_quietly(sorted(_modules))


def lookup(task_queue: str, name: str) -> tuple[WorkflowDefinition[..., Any], Served]:
    """The sandbox's copy of workflow `name` served on `task_queue`, and how it is served."""
    candidates = [s for s in reversed(_served) if name in s.definitions]
    chosen = next((s for s in candidates if s.task_queue == task_queue), None) or next(
        (s for s in candidates if s.task_queue is None), None
    )
    if chosen is None:
        known = sorted({n for s in _served if s.task_queue == task_queue for n in s.definitions})
        raise NotRegisteredError(
            f"no worker in this process serves workflow {name!r} on task queue "
            f"{task_queue!r} (served here: {', '.join(known) or 'none'}); pass it to "
            f"client.worker([...]) or import its module in `bridge worker`"
        )
    host = chosen.definitions[name]
    return _sandbox_copy(host), chosen


def _sandbox_copy(host: WorkflowDefinition[..., Any]) -> WorkflowDefinition[..., Any]:
    module_name = host.fn.__module__
    qualname = _bound_names.get(host.fn, host.fn.__qualname__)
    module = sys.modules.get(module_name)
    if module is None:  # served after this sandbox was loaded: import it now
        with workflow.unsafe.sandbox_import_notification_policy(
            workflow.SandboxImportNotificationPolicy.SILENT
        ):
            _import_quietly([module_name])
        module = sys.modules[module_name]
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, WorkflowDefinition):
        return obj
    return WorkflowDefinition(obj, name=host.name)
