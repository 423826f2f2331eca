"""The public names, and the import boundaries between the core, the backends and adapters."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import backends.sql
import bridge
from tests.conftest import ROOT

BRIDGE_ALL = [
    "ActivityDefinition",
    "ActivityError",
    "ActivityHeartbeatTimeoutError",
    "ActivityInfo",
    "ActivityTimeoutError",
    "Backend",
    "BridgeError",
    "ChildHandle",
    "ChildWorkflowError",
    "Client",
    "CompensationError",
    "ConfigError",
    "Context",
    "EventType",
    "HistoryEvent",
    "InvalidIdError",
    "InvalidScheduleError",
    "InvalidSearchAttributeError",
    "InvalidSearchQueryError",
    "Limit",
    "NonDeterminismError",
    "NonRetryableError",
    "NotRegisteredError",
    "PayloadTooLargeError",
    "QueryFailedError",
    "QueryNotFoundError",
    "RateLimit",
    "RetryAfter",
    "RetryPolicy",
    "ScheduleAlreadyExistsError",
    "ScheduleDescription",
    "ScheduleHandle",
    "ScheduleNotFoundError",
    "SearchAttribute",
    "SerializationError",
    "Settings",
    "Signal",
    "Status",
    "StorageError",
    "UnknownBackendError",
    "UpdateFailedError",
    "UpdateNotFoundError",
    "UpdateRejectedError",
    "Worker",
    "WorkflowBlockedError",
    "WorkflowCancelledError",
    "WorkflowClosedError",
    "WorkflowDefinition",
    "WorkflowDescription",
    "WorkflowFailedError",
    "WorkflowHandle",
    "WorkflowIdConflictError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
    "activity",
    "activity_info",
    "codec",
    "connect",
    "heartbeat",
    "history",
    "load_settings",
    "on",
    "schedule",
    "workflow",
]

SQL_ALL = ["SqlBackend", "SqlWorker", "Store", "open_store"]

#: The engines and agent frameworks the core never imports.
ENGINES = ("temporalio", "langgraph", "langchain_core", "agents", "openai")
PICKLERS = ("pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve")


# -- public names ---------------------------------------------------------------------------
def test_bridge_all_is_pinned() -> None:
    assert sorted(bridge.__all__) == BRIDGE_ALL
    assert len(set(bridge.__all__)) == len(bridge.__all__), "duplicate names in __all__"


@pytest.mark.parametrize("name", BRIDGE_ALL)
def test_bridge_name_exists(name: str) -> None:
    assert getattr(bridge, name, None) is not None, f"bridge.{name} is missing"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from bridge import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == BRIDGE_ALL


def test_errors_derive_from_bridge_error() -> None:
    for name in BRIDGE_ALL:
        obj = getattr(bridge, name)
        if name.endswith("Error") and name not in (
            "NonRetryableError",
            "ActivityTimeoutError",
            "ActivityHeartbeatTimeoutError",
            "RetryAfter",
        ):
            assert issubclass(obj, bridge.BridgeError), name
    # The two an activity raises itself are plain exceptions, so activity code needs no bridge base.
    assert issubclass(bridge.NonRetryableError, Exception)
    assert issubclass(bridge.ActivityTimeoutError, TimeoutError)


def test_sql_all_is_pinned() -> None:
    assert sorted(backends.sql.__all__) == SQL_ALL
    for name in SQL_ALL:
        assert getattr(backends.sql, name, None) is not None, f"backends.sql.{name} is missing"


# -- import boundaries ----------------------------------------------------------------------
def _py_files(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def _package_of(path: Path) -> tuple[str, ...]:
    """The dotted package `path` belongs to, as parts (`bridge/x.py` -> ("bridge",))."""
    return path.relative_to(ROOT).parts[:-1]


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    return _imports_in(path.read_text(), _package_of(path), filename=str(path))


def _imports_in(
    source: str, package: tuple[str, ...], *, filename: str = "<probe>"
) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, nested ones included.

    Relative imports are resolved against `package`; `importlib.import_module` and
    `__import__` with a literal name count too.
    """
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from backends import sql` imports backends.sql
                yield node.lineno, f"{module}.{alias.name}" if module else alias.name
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value


def _offending(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in files:
        for line, module in _imports(path):
            top = module.split(".")
            for bad in forbidden:
                bad_parts = bad.split(".")
                if top[: len(bad_parts)] == bad_parts:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return sorted(set(found))


def test_the_scanner_sees_every_kind_of_import() -> None:
    source = (
        "import temporalio.client\n"
        "from langgraph.graph import StateGraph\n"
        "def f():\n"
        "    import pickle\n"
        "    from backends import sql\n"
        "    import importlib\n"
        "    importlib.import_module('adapters.openai_agents')\n"
    )
    modules = {m for _, m in _imports_in(source, ("bridge",))}
    assert {"temporalio.client", "langgraph.graph", "pickle", "backends.sql"} <= modules
    assert "adapters.openai_agents" in modules


def test_relative_imports_are_resolved() -> None:
    source = "from .. import adapters\nfrom ._store import Store\nfrom . import codec\n"
    modules = {m for _, m in _imports_in(source, ("backends", "sql"))}
    assert "backends.adapters" in modules
    assert "backends.sql._store" in modules
    assert {m for _, m in _imports_in(source, ("bridge",))} >= {"bridge.codec", "bridge._store"}


def test_bridge_imports_no_engine_backend_or_adapter() -> None:
    """No exception, the harness included: an adapter contributes its scenarios through the
    harness's `bridge_test_scenarios` hook. The bus's client libraries (nats, psycopg) are
    not engines; that `import bridge` loads none of them is pinned below."""
    files = _py_files("bridge")
    assert any(p.name == "client.py" for p in files)
    assert _offending(files, (*ENGINES, "backends", "adapters")) == []


def _names(path: Path) -> Iterator[tuple[int, str]]:
    return _names_in(path.read_text(), _package_of(path), filename=str(path))


def _names_in(
    source: str, package: tuple[str, ...], *, filename: str = "<probe>"
) -> Iterator[tuple[int, str]]:
    """(line, name) of every identifier `source` defines, uses or imports."""
    yield from _imports_in(source, package, filename=filename)
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.lineno, node.name
        elif isinstance(node, (ast.arg, ast.keyword)) and node.arg:
            yield node.lineno, node.arg
        elif isinstance(node, ast.alias) and node.asname:
            yield node.lineno, node.asname


def test_the_name_scanner_sees_definitions_uses_and_imports() -> None:
    source = (
        "from bridge.migrate import shadow_answer as answer\n"
        "class ShadowStore: ...\n"
        "def f(shadow_id, *, x=settings.shadow):\n"
        "    return g(in_shadow=True)\n"
    )
    names = {name for _, name in _names_in(source, ("bridge",))}
    assert {"bridge.migrate.shadow_answer", "ShadowStore", "shadow_id", "shadow", "in_shadow"} <= (
        names
    )


def test_only_bridge_migrate_knows_shadow_mode() -> None:
    """Shadow mode plugs into the core as an interceptor (`bridge.interceptors`); no module of
    `bridge/` outside `bridge/migrate/` names it."""
    files = [p for p in _py_files("bridge") if p.relative_to(ROOT / "bridge").parts[0] != "migrate"]
    mentions = sorted(
        {
            f"{p.relative_to(ROOT)}:{line} {name}"
            for p in files
            for line, name in _names(p)
            if "shadow" in name.lower()
        }
    )
    assert mentions == []


def test_importing_bridge_and_its_bus_loads_no_optional_library() -> None:
    probe = (
        "import sys, bridge, bridge.bus; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'nats', 'psycopg', 'starlette', 'cloudevents', 'temporalio', 'langgraph', 'agents'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_discovering_backends_imports_no_engine() -> None:
    """Every process that connects discovers every backend; a Temporal or sql worker must
    not pay for importing LangGraph (about a second), nor the reverse."""
    probe = (
        "import sys, bridge.plugins; print(bridge.plugins.registry().names()); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'temporalio', 'langgraph', 'langchain_core', 'agents'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    names, engines = out.stdout.strip().splitlines()
    assert {"sql", "temporal", "langgraph"} <= set(ast.literal_eval(names))
    assert engines == "[]"


def test_sql_backend_imports_no_other_backend_or_adapter() -> None:
    files = _py_files("backends", "sql")
    assert any(p.name == "_store.py" for p in files)
    other_backends = tuple(
        f"backends.{p.name}"
        for p in (ROOT / "backends").iterdir()
        if p.is_dir() and p.name not in ("sql", "__pycache__")
    )
    forbidden = ("backends.temporal", "backends.langgraph", *other_backends, "adapters")
    assert _offending(files, forbidden) == []
    # Nor any engine but its own database driver.
    assert _offending(files, ("temporalio", "langgraph", "agents", "openai", "nats")) == []


def test_the_sql_backend_imports_no_bus() -> None:
    """The journal publishes its completion events through an interceptor's `run_ended`
    hook (`bridge.interceptors`); the backend does not know the bus."""
    files = _py_files("backends", "sql")
    assert _offending(files, ("bridge.bus",)) == []


def test_nothing_is_pickled() -> None:
    files = _py_files("bridge") + _py_files("backends") + _py_files("adapters")
    assert files
    assert _offending(files, PICKLERS) == []
    uses_pickle_type = [str(p.relative_to(ROOT)) for p in files if "PickleType" in p.read_text()]
    assert uses_pickle_type == []
