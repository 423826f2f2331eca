"""`bridge ...`: run, start, signal and inspect durable workflows from a shell (typer + rich).

Every command reads the same settings as `bridge.connect()` (bridge.toml, `[tool.bridge]`,
BRIDGE_* variables); `--backend` overrides the backend. A failure prints one red
`error: ...` line on stderr and exits 1; `bridge --debug ...` shows the traceback instead.
Results are printed as JSON on stdout so they can be piped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import tomllib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bridge import codec
from bridge._cli_compat import compat
from bridge._cli_schedule import schedule_app
from bridge._redact import mask
from bridge.backend import Status, WorkflowDescription
from bridge.bus._cli import bus_app
from bridge.client import Client, connect
from bridge.config import CONFIG_PATH_ENV, Settings, _describe, load_settings
from bridge.errors import BridgeError, ConfigError
from bridge.history import EventType, HistoryEvent, to_json
from bridge.migrate._cli import migrate_app
from bridge.workflow import WorkflowDefinition, registered_workflows

__all__ = ["app", "main"]

T = TypeVar("T")

#: The repository root: lets `bridge demo` import `examples` when run from elsewhere.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODULE = "examples.research_agent"
DEMO_WORKFLOW = "research"
DEMO_TOPIC = "durable execution for AI agents"

app = typer.Typer(
    name="bridge",
    help="Run and inspect durable workflows on the configured backend.",
    no_args_is_help=True,
    add_completion=False,
    # Errors are printed as one line by main(); a traceback only with --debug.
    pretty_exceptions_enable=False,
)
app.add_typer(migrate_app, name="migrate")
app.add_typer(bus_app, name="bus")
app.add_typer(schedule_app, name="schedule")
app.command("compat")(compat)
config_app = typer.Typer(
    name="config",
    help="Check the configuration file (bridge.toml) before a router or worker reads it.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


def _console(*, stderr: bool = False) -> Console:
    # Piped output is not wrapped at rich's default 80 columns, so `bridge list | grep`
    # sees whole rows; tables still shrink to their content.
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, highlight=False, width=200 if wide else None)


out = _console()
err = _console(stderr=True)


class CliError(Exception):
    """A user mistake the CLI itself detects (bad MODULE:WORKFLOW, bad JSON, ...)."""


class _State:
    debug = False
    backend: str | None = None
    #: A backend whose engine cannot be torn down safely was used (`Backend.unsafe_teardown`).
    skip_teardown = False


# -- plumbing -------------------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(exc: BaseException) -> NoReturn:
    if isinstance(exc, BridgeError | CliError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc} (run `bridge --debug ...` for the traceback)"
    # markup=False: messages quote TOML sections like [tool.bridge]; soft_wrap: one line.
    err.print(f"error: {_one_line(mask(message))}", style="red", markup=False, soft_wrap=True)
    raise SystemExit(1)


def _add_cwd_to_path() -> None:
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _import_module(name: str) -> Any:
    _add_cwd_to_path()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CliError(f"cannot import module {name!r}: {exc}") from exc


def _load_workflow(target: str) -> WorkflowDefinition[..., Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(
            f"expected MODULE:WORKFLOW (for example examples.hello:greet), got {target!r}"
        )
    module = _import_module(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, WorkflowDefinition))
        raise CliError(
            f"module {module_name!r} has no attribute {attr!r}; workflows in it: "
            f"{', '.join(found) or '(none)'}"
        ) from None
    if not isinstance(obj, WorkflowDefinition):
        raise CliError(f"{target} is not a bridge workflow; decorate it with @bridge.workflow")
    return obj


def _parse_json(text: str | None, *, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON ({exc}): {text!r}") from None


def _workflow_args(text: str | None) -> list[Any]:
    """A JSON array is the positional arguments; any other JSON value is the one argument."""
    if text is None:
        return []
    value = _parse_json(text, what="ARGS_JSON")
    return list(value) if isinstance(value, list) else [value]


def _typed_args(defn: WorkflowDefinition[..., Any], text: str | None) -> tuple[Any, ...]:
    """ARGS_JSON decoded with the workflow's declared parameter types, so `{"sku": ...}`
    reaches a parameter declared `order: Order` as an Order (and `client.start` can encode
    it as one), as it would from Python code."""
    return defn.shape.decode_json_args(_workflow_args(text), source="ARGS_JSON")


def _check_id_option(id: str | None) -> None:
    """`--id ""` is a mistake (an unset variable in a script), not a request for a new id:
    a retried start would then make a second run."""
    if id == "":
        raise CliError("--id is empty; pass a workflow id, or leave --id out for a new one")


def _settings(backend: str | None) -> Settings:
    backend = backend or _State.backend
    return load_settings({"backend": backend} if backend else None)


async def _with_client(settings: Settings, body: Callable[[Client], Awaitable[T]]) -> T:
    """Run `body` with `bridge.connect()`'s client: a routing one when migration rules
    exist, so every command reaches the engine that owns the run."""
    client = await connect(settings)
    try:
        return await body(client)
    finally:
        # Read at the end: a routing client connects engines as calls need them.
        _State.skip_teardown = _State.skip_teardown or client.unsafe_teardown
        # A command cannot wait for background work (a shadowed primary may run for days).
        await client.close(wait=False)


def _run(settings: Settings, body: Callable[[Client], Awaitable[T]]) -> T:
    return asyncio.run(_with_client(settings, body))


def _print_json(value: Any) -> None:
    print(json.dumps(codec.to_jsonable(value, where="result"), indent=2, ensure_ascii=False))


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(desc_time: Any) -> str:
    return desc_time.strftime("%Y-%m-%d %H:%M:%S")


_ARGS_HELP = "A JSON array of positional arguments, or one JSON value as the only argument."

BackendOption = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="Backend to use instead of the configured one."),
]
ModuleOption = Annotated[
    list[str] | None,
    typer.Option("--module", "-m", help="Module defining workflows (repeatable)."),
]


# -- commands -------------------------------------------------------------------------------
@app.callback()
def _main_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one error line.")
    ] = False,
    backend: BackendOption = None,
) -> None:
    _State.debug = debug
    _State.backend = backend


@app.command()
def run(
    target: Annotated[str, typer.Argument(metavar="MODULE:WORKFLOW")],
    args_json: Annotated[str | None, typer.Argument(metavar="[ARGS_JSON]", help=_ARGS_HELP)] = None,
    id: Annotated[str | None, typer.Option("--id", help="Workflow id (default: new).")] = None,
    backend: BackendOption = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up waiting after S seconds.")
    ] = None,
) -> None:
    """Start a workflow and run a worker for it in this process; print its result as JSON."""
    _check_id_option(id)
    defn = _load_workflow(target)
    args = _typed_args(defn, args_json)
    settings = _settings(backend)

    async def body(client: Client) -> Any:
        handle = await client.start(defn, *args, id=id)
        # The worker runs on the engine the run landed on (a migration rule may route it).
        async with (await client.client_for(handle.id)).worker([defn]):
            return await handle.result(timeout=timeout)

    _print_json(_run(settings, body))


@app.command()
def start(
    target: Annotated[str, typer.Argument(metavar="MODULE:WORKFLOW")],
    args_json: Annotated[str | None, typer.Argument(metavar="[ARGS_JSON]", help=_ARGS_HELP)] = None,
    id: Annotated[str | None, typer.Option("--id", help="Workflow id (default: new).")] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(
            "--attr",
            metavar="KEY=VALUE",
            help="A search attribute of the new run (repeatable); VALUE is read as JSON "
            'when it parses (12, true, ["a"]), else as a string: --attr customer=c-42.',
        ),
    ] = None,
    backend: BackendOption = None,
) -> None:
    """Start a workflow without running it (a `bridge worker` runs it); print its id."""
    _check_id_option(id)
    defn = _load_workflow(target)
    args = _typed_args(defn, args_json)
    attributes = _search_attributes(attr) if attr else None

    async def body(client: Client) -> str:
        options = {} if attributes is None else {"search_attributes": attributes}
        handle = await client.start(defn, *args, id=id, **options)
        if not handle.created:
            err.print(f"{handle.id} already exists; not started again", style="yellow")
        return handle.id

    print(_run(_settings(backend), body))


def _search_attributes(pairs: list[str]) -> dict[str, Any]:
    """`--attr KEY=VALUE` options as a mapping (a JSON value, else the string itself)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--attr takes KEY=VALUE (e.g. --attr customer=c-42), not {pair!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        found[key.strip()] = value
    return found


@app.command()
def worker(
    module: ModuleOption = None,
    backend: BackendOption = None,
) -> None:
    """Run a worker for the given modules' workflows (and `workflows` in the settings)."""
    settings = _settings(backend)
    for name in [*(module or []), *settings.workflows]:
        _import_module(name)
    names = sorted(registered_workflows())
    if not names:
        raise CliError(
            "no workflows to run: pass --module MODULE or set `workflows = [...]` in bridge.toml"
        )

    async def body(client: Client) -> None:
        w = client.worker()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers
                loop.add_signal_handler(sig, w.stop)
        err.print(
            f"worker on backend {client.backend_name} for: {', '.join(names)} (Ctrl-C to stop)",
            markup=False,
        )
        await w.run()
        err.print("worker stopped", markup=False)

    _run(settings, body)


@app.command("signal")
def signal_(
    id: str,
    name: str,
    payload_json: Annotated[str | None, typer.Argument(metavar="[PAYLOAD_JSON]")] = None,
    backend: BackendOption = None,
) -> None:
    """Send signal NAME (with an optional JSON payload) to workflow ID.

    The payload is sent as plain JSON data: a workflow does not declare its signals' types
    (`ctx.wait_for_signal(name)` takes none), so there is nothing to decode it with here;
    the workflow builds its own objects from the data it receives."""
    payload = _parse_json(payload_json, what="PAYLOAD_JSON")
    _run(_settings(backend), lambda c: c.signal(id, name, payload))
    out.print(f"signal {name!r} sent to {id}", markup=False)


@app.command()
def query(
    id: str,
    name: str,
    args_json: Annotated[str | None, typer.Argument(metavar="[ARGS_JSON]")] = None,
    module: ModuleOption = None,
    backend: BackendOption = None,
) -> None:
    """Ask workflow ID's query NAME (ARGS_JSON as for `run`) and print the answer as JSON.

    The embedded backends answer a run no worker holds by replaying its journal here, so
    the workflow's module is imported (--module, or `workflows` in the settings).
    """
    settings = _settings(backend)
    for name_ in [*(module or []), *settings.workflows]:
        _import_module(name_)
    args = _workflow_args(args_json)
    _print_json(_run(settings, lambda c: c.query(id, name, *args)))


@app.command()
def update(
    id: str,
    name: str,
    args_json: Annotated[str | None, typer.Argument(metavar="[ARGS_JSON]")] = None,
    update_id: Annotated[
        str | None,
        typer.Option(
            "--update-id",
            help="Deliver exactly once under this id: the same id again prints the first "
            "result without running the handler again (default: a new random id).",
        ),
    ] = None,
    backend: BackendOption = None,
) -> None:
    """Send update NAME (ARGS_JSON as for `run`) to workflow ID and print its result as JSON.

    The update is applied by the run's worker, which validates it first: a rejected update
    changes nothing and is an error here, as is a handler that raised."""
    settings = _settings(backend)
    args = _workflow_args(args_json)
    _print_json(_run(settings, lambda c: c.update(id, name, *args, update_id=update_id)))


@app.command()
def cancel(id: str, backend: BackendOption = None) -> None:
    """Ask workflow ID to cancel (its compensations, if any, still run)."""
    _run(_settings(backend), lambda c: c.cancel(id))
    out.print(f"cancellation requested for {id}", markup=False)


@app.command()
def status(id: str, backend: BackendOption = None) -> None:
    """Describe workflow ID: its name, status, times and result or error."""
    desc = _run(_settings(backend), lambda c: c.describe(id))
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", desc.id)
    table.add_row("name", desc.name)
    table.add_row("status", _status_text(desc))
    table.add_row("backend", desc.backend)
    if desc.engine is not None and desc.engine != desc.backend:
        table.add_row("engine", desc.engine)
    table.add_row("created", _when(desc.created_at))
    table.add_row("updated", _when(desc.updated_at))
    if desc.waiting_for:
        table.add_row("waiting for", desc.waiting_for)
    if desc.search_attributes:
        table.add_row("search attributes", _attributes_text(desc))
    if desc.status is Status.COMPLETED:
        table.add_row("result", json.dumps(desc.result, ensure_ascii=False))
    if desc.error:
        table.add_row(
            "error", f"{desc.error.get('error_type', 'Error')}: {desc.error.get('message', '')}"
        )
    out.print(table)


def _status_text(desc: WorkflowDescription) -> str:
    return f"{desc.status.value} (blocked)" if desc.blocked else desc.status.value


def _attributes_text(desc: WorkflowDescription) -> str:
    """`customer=c-42 amount=12`, values as JSON (datetimes as ISO strings)."""
    return " ".join(
        f"{k}={json.dumps(v.isoformat() if isinstance(v, datetime) else v, ensure_ascii=False)}"
        for k, v in sorted(desc.search_attributes.items())
    )


@app.command("list")
def list_(
    status: Annotated[
        Status | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Only this status."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N runs.")] = 50,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            metavar="QUERY",
            help="Only runs this query matches, by search attribute: "
            "customer = 'c-42' AND amount >= 10. Operators = != < <= > >= IN (...) "
            "NOT IN (...), AND, OR, parentheses; values are quoted strings, numbers, true, "
            "false, ISO datetimes as strings; built-ins WorkflowId, WorkflowType, "
            "ExecutionStatus ('Running', 'Completed', 'Failed', 'Canceled').",
        ),
    ] = None,
    backend: BackendOption = None,
) -> None:
    """List workflow runs, newest first (on every engine when migration rules exist)."""
    runs = _run(_settings(backend), lambda c: c.list(status=status, limit=limit, query=where))
    if not runs:
        out.print(
            "no workflows"
            + (f" with status {status.value}" if status else "")
            + (f" matching {where}" if where else ""),
            markup=False,
        )
        return
    engines = any(d.engine is not None for d in runs)
    attributes = any(d.search_attributes for d in runs)
    table = Table()
    table.add_column("id", overflow="fold")
    if engines:
        table.add_column("engine")
    table.add_column("workflow")
    table.add_column("status")
    table.add_column("created")
    table.add_column("updated")
    table.add_column("waiting for")
    if attributes:
        table.add_column("search attributes", overflow="fold")
    for d in runs:
        table.add_row(
            d.id,
            *([d.engine or d.backend] if engines else []),
            d.name,
            _status_text(d),
            _when(d.created_at),
            _when(d.updated_at),
            d.waiting_for or "",
            *([_attributes_text(d)] if attributes else []),
        )
    out.print(table)


@app.command()
def history(
    id: str,
    as_json: Annotated[bool, typer.Option("--json", help="The neutral history as JSON.")] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print events as they are journaled until the run ends."
        ),
    ] = False,
    backend: BackendOption = None,
) -> None:
    """Show the event timeline of workflow ID."""
    if follow:
        _run(_settings(backend), lambda c: _follow(c, id, as_json=as_json))
        return
    events = _run(_settings(backend), lambda c: c.history(id))
    if as_json:
        print(to_json(events))
    else:
        out.print(_timeline(events))


@app.command()
def result(
    id: str,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up waiting after S seconds.")
    ] = None,
    backend: BackendOption = None,
) -> None:
    """Wait for workflow ID to finish and print its result as JSON."""
    _print_json(_run(_settings(backend), lambda c: c.result(id, timeout=timeout)))


@app.command()
def demo(
    topic: Annotated[str, typer.Option("--topic", help="What to research.")] = DEMO_TOPIC,
    backend: BackendOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 60.0,
) -> None:
    """Run the research agent (offline unless OPENAI_API_KEY is set), approve its save as a
    reviewer would, and show what ran, and how often."""
    _add_cwd_to_path()
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))  # after cwd: a local `examples` package wins
    defn = _load_workflow(f"{DEMO_MODULE}:{DEMO_WORKFLOW}")
    settings = _settings(backend)
    run_id = f"demo-{uuid.uuid4().hex[:12]}"

    async def body(client: Client) -> tuple[Any, list[HistoryEvent]]:
        handle = await client.start(defn, topic, id=run_id)
        async with client.worker([defn]):
            # The agent parks before saving until a person approves; the demo is that person.
            desc = await handle.describe()
            while not (desc.status.is_terminal or desc.waiting_for):
                await asyncio.sleep(0.05)
                desc = await handle.describe()
            if desc.waiting_for:
                out.print(
                    f"{run_id} is waiting for the signal {desc.waiting_for!r}; the demo approves "
                    f"it as a reviewer would with: bridge signal {run_id} {desc.waiting_for} true",
                    markup=False,
                )
                await handle.signal(desc.waiting_for, True)
            value = await handle.result(timeout=timeout)
        return value, await handle.history()

    value, events = _run(settings, body)
    out.print(f"workflow {run_id} on backend {settings.backend}: result", markup=False)
    _print_json(value)
    out.print()
    out.print(_timeline(events))
    out.print(activity_summary(events), markup=False)


@app.command()
def dev(
    engine: Annotated[str, typer.Argument(help="The backend whose server to run.")] = "temporal",
    port: Annotated[int, typer.Option("--port", "-p", help="Port for clients (gRPC).")] = 7233,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the server keeps its state.")
    ] = Path(".bridge"),
) -> None:
    """Run a local server of ENGINE (`bridge dev temporal`) until Ctrl-C.

    Its state is kept under --data-dir, so runs survive a restart of the server.
    """

    def ready(address: str, ui: str | None) -> None:
        out.print(f"{engine} dev server: {address}", markup=False)
        if ui:
            out.print(f"Web UI: {ui}", markup=False)
        out.print(
            f"state in {data_dir}; point workers at it with BRIDGE_BACKEND={engine} "
            f"BRIDGE_{engine.upper()}_ADDRESS={address}. Ctrl-C to stop.",
            markup=False,
        )
        sys.stdout.flush()  # the server runs on: whoever reads a pipe needs these lines now

    async def body(client: Client) -> None:
        await client.backend.run_dev_server(data_dir=data_dir, port=port, on_ready=ready)

    _run(_settings(engine), body)


@app.command()
def ui(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to bind. Anything but localhost needs BRIDGE_UI_TOKEN, which every "
            "request must then carry.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8233,
    backend: BackendOption = None,
) -> None:
    """Serve a web view of runs (every engine), run timelines and migrations until Ctrl-C.

    Signal and cancel from the page; with BRIDGE_UI_TOKEN set, every page and action needs
    it (?token=... once in the browser, or Authorization: Bearer ...).
    """
    # Imported here: starlette and uvicorn are the `ui` extra, which `bridge` does not need.
    try:
        from bridge.ui.auth import TOKEN_ENV
        from bridge.ui.server import serve
    except ImportError as exc:
        raise CliError(
            f'bridge ui needs the ui extra: pip install "durable-bridge[ui]" ({exc})'
        ) from None
    settings = _settings(backend)
    token = os.environ.get(TOKEN_ENV) or None

    def announce(where: str) -> None:
        guard = f" (token from ${TOKEN_ENV} required)" if token else ""
        out.print(f"bridge ui: {where}{guard}; Ctrl-C to stop", markup=False)

    serve(settings, host=host, port=port, token=token, announce=announce)


@app.command()
def replay(
    history_file: Annotated[Path, typer.Argument(metavar="HISTORY.json", help="Recorded history.")],
    target: Annotated[str, typer.Argument(metavar="MODULE:WORKFLOW")],
    backend: BackendOption = None,
) -> None:
    """Replay a recorded history against the current code of MODULE:WORKFLOW.

    The history is the engine's own export (Temporal: `temporal workflow show -w ID -o json`
    or the Web UI's download); the backend defaults to temporal. Non-determinism is
    reported with the step where code and history part.
    """
    defn = _load_workflow(target)
    try:
        text = history_file.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {history_file}: {exc}") from None
    settings = _settings(backend or _State.backend or "temporal")
    events = _run(settings, lambda c: c.backend.replay(text, defn))
    out.print(
        f"{history_file}: {events} events replayed against {target}; no non-determinism",
        markup=False,
    )


@app.command()
def doctor(backend: BackendOption = None) -> None:
    """Check the configured journal: a SQLite file is read page by page (`PRAGMA
    quick_check`), read-only; exits 1 with SQLite's findings when it is damaged."""
    settings = _settings(backend)
    # Each embedded backend keeps its journal's URL in its own settings section.
    url = getattr(getattr(settings, settings.backend, None), "url", None)
    if not isinstance(url, str):
        out.print(f"backend {settings.backend}: no journal of its own to check", markup=False)
    else:
        # Imported here: the journal package is the embedded engines' code, which the
        # other commands of a Temporal-only install never need.
        from bridge.journal.integrity import check_integrity

        out.print(check_integrity(url), markup=False)
    out.print("OK", markup=False)


# -- configuration --------------------------------------------------------------------------
def default_config_path() -> Path:
    """The file settings are read from: $BRIDGE_CONFIG, else bridge.toml here."""
    return Path(os.environ.get(CONFIG_PATH_ENV) or "bridge.toml")


def check_config_file(path: Path, *, text: str | None = None) -> list[str]:
    """Every problem of configuration file `path` on its own (no environment, no other
    file): TOML syntax, unknown keys and bad values of every section, the `[engines.NAME]`
    tables and the engines each `[migrate.WORKFLOW]` rule names; [] when it is good.
    A pyproject.toml is checked for its `[tool.bridge]` table. With `text`, that text is
    checked as the file's content (an edit before it is written)."""
    if text is None:
        try:
            text = path.read_text()
        except OSError as exc:
            return [f"cannot read it: {exc}"]
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML: {exc}"]
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("bridge", {})
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        return [_describe(exc, dict.fromkeys(data, str(path)))]
    problems = []
    for name in settings.engines:
        try:
            settings.engine(name)
        except ConfigError as exc:
            problems.append(str(exc))
    # Imported here: the router is the migration feature's code; only files with rules
    # need its check that each rule names an engine.
    from bridge.migrate.router import check_rules

    try:
        check_rules(settings)
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None,
        typer.Argument(metavar="[FILE]", help="Default: $BRIDGE_CONFIG, else bridge.toml."),
    ] = None,
) -> None:
    """Validate a configuration file (every setting, [migrate.*] rules included): print
    what is wrong and exit 1, or print ok. Run it before a live router reloads an edit."""
    path = file or default_config_path()
    problems = check_config_file(path)
    for problem in problems:
        out.print(f"{path}: {problem}", markup=False, soft_wrap=True)
    if problems:
        raise SystemExit(1)
    out.print(f"{path}: ok", markup=False)


# -- history rendering ----------------------------------------------------------------------
_EVENT_STYLE = {
    EventType.STEP_FAILED: "red",
    EventType.COMPENSATION_FAILED: "red",
    EventType.WORKFLOW_FAILED: "bold red",
    EventType.WORKFLOW_CANCELLED: "yellow",
    EventType.STEP_COMPLETED: "green",
    EventType.COMPENSATION_COMPLETED: "green",
    EventType.WORKFLOW_COMPLETED: "bold green",
}


def _detail(e: HistoryEvent) -> str:
    if e.error:
        text = f"{e.error.get('error_type', 'Error')}: {e.error.get('message', '')}"
        if e.details.get("will_retry"):
            text += " (will retry)"
        return _short(text, 80)
    if e.type in (EventType.STEP_COMPLETED, EventType.WORKFLOW_COMPLETED) or e.result is not None:
        return "-> " + _short(e.result)
    if e.args is not None:
        return _short(e.args)
    return ""


async def _follow(client: Client, id: str, *, as_json: bool) -> None:
    """One line per event (JSON lines with --json), printed as it arrives: a table cannot be
    drawn before its last row is known."""
    async for e in client.follow(id):
        if as_json:
            print(json.dumps(e.to_dict(), ensure_ascii=False), flush=True)
            continue
        step = "" if e.step is None else f" step {e.step}"
        name = f" {e.name}" if e.name else ""
        attempt = "" if e.attempt is None else f" attempt {e.attempt}"
        out.print(
            f"{e.time.strftime('%H:%M:%S.%f')[:-3]} {e.type.value}{step}{name}{attempt}"
            f"  {_detail(e)}",
            style=_EVENT_STYLE.get(e.type),
            highlight=False,
        )


def _timeline(events: Iterable[HistoryEvent]) -> Table:
    table = Table(title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("step", justify="right")
    table.add_column("name")
    table.add_column("attempt", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("args / result / error", overflow="fold")
    for e in events:
        table.add_row(
            e.time.strftime("%H:%M:%S.%f")[:-3],
            e.type.value,
            "" if e.step is None else str(e.step),
            e.name or "",
            "" if e.attempt is None else str(e.attempt),
            "" if e.duration is None else f"{e.duration * 1000:.1f}",
            _detail(e),
            style=_EVENT_STYLE.get(e.type),
        )
    return table


def activity_summary(events: Iterable[HistoryEvent]) -> str:
    """ "call_llm ran 1 time, parse_json ran 2 times (1 failure retried), ...": every attempt
    (completed or failed) counted per activity name, in order of first appearance."""
    runs: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    final: Counter[str] = Counter()
    for e in events:
        if e.type not in (EventType.STEP_COMPLETED, EventType.STEP_FAILED) or not e.name:
            continue
        runs[e.name] += 1
        if e.type is EventType.STEP_FAILED:
            (retried if e.details.get("will_retry") else final)[e.name] += 1
    parts = []
    for name, count in runs.items():
        text = f"{name} ran {count} time{'s' if count != 1 else ''}"
        notes = []
        if retried[name]:
            notes.append(f"{retried[name]} failure{'s' if retried[name] != 1 else ''} retried")
        if final[name]:
            notes.append("then failed for good")
        if notes:
            text += f" ({', '.join(notes)})"
        parts.append(text)
    return ", ".join(parts) if parts else "no activity ran"


# -- entry point ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """The `bridge` console script."""
    try:
        _main(argv)
    except SystemExit as exc:
        if _State.skip_teardown:
            _exit_now(exc.code)
        raise


def _main(argv: list[str] | None) -> None:
    try:
        app(args=argv, prog_name="bridge")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if _State.debug:
            raise
        _fail(exc)


def _exit_now(code: object) -> NoReturn:
    """End the process as SystemExit(code) would, minus the interpreter's teardown (see
    `Backend.unsafe_teardown`): the command's work is done and its output flushed here."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    main()
