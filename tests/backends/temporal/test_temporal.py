"""What only the Temporal backend has to show: its package rules, the same demo run by
configuration alone, its bad-input errors, its sandbox, its dev server and `bridge replay`.

The shared behaviour (sequence, retries, signals, sagas, non-determinism, crashes...) runs on
Temporal from tests/core/test_behaviour.py and tests/journal/test_crash.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.history import from_json, normalize, step_sequence
from bridge.workflow import WorkflowDefinition
from tests.conftest import ROOT, fast_sql, settings_env, wait_for_status
from tests.core.test_public_api import _offending, _py_files

pytest.importorskip("temporalio")

TEMPORAL_ALL = [
    "BridgePayloadConverter",
    "DevServer",
    "TemporalBackend",
    "TemporalContext",
    "TemporalWorker",
    "data_converter",
]


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the package ----------------------------------------------------------------------------
def test_temporal_all_is_pinned() -> None:
    import backends.temporal

    assert sorted(backends.temporal.__all__) == TEMPORAL_ALL
    for name in TEMPORAL_ALL:
        assert getattr(backends.temporal, name, None) is not None, name


def test_temporal_backend_imports_no_other_backend_or_adapter() -> None:
    files = _py_files("backends", "temporal")
    assert any(p.name == "_backend.py" for p in files)
    others = tuple(
        f"backends.{p.name}"
        for p in (ROOT / "backends").iterdir()
        if p.is_dir() and p.name not in ("temporal", "__pycache__")
    )
    assert _offending(files, (*others, "adapters")) == []
    assert _offending(files, ("langgraph", "agents", "openai", "nats", "sqlalchemy")) == []


def test_the_plugin_module_imports_no_temporalio() -> None:
    probe = (
        "import sys, backends.temporal._plugin as p; "
        "from bridge.plugins import BackendRegistry; r = BackendRegistry(); "
        "p.bridge_register_backends(register=r); "
        "assert 'temporal' in r.names(); "
        "assert 'temporalio' not in sys.modules, 'temporalio was imported'"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- switching backends is configuration only -------------------------------------------------
DEMO = "examples.llm_parse_save:analyze"
PROMPT = '"The new release is fast and reliable, but the install docs are bad."'


def test_the_demo_runs_on_both_backends_by_configuration_alone(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    runs = {}
    for name, settings in (
        ("sql", {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/sql.db")}),
        ("temporal", temporal_settings),
    ):
        cwd = tmp_path / name  # each run saves to its own .bridge/demo.db
        cwd.mkdir()
        env = settings_env(settings)
        ran = _cli(["run", DEMO, PROMPT, "--id", f"demo-{name}", "--timeout", "60"], env, cwd)
        assert ran.returncode == 0, ran.stderr
        shown = _cli(["history", f"demo-{name}", "--json"], env, cwd)
        assert shown.returncode == 0, shown.stderr
        table = _cli(["history", f"demo-{name}"], env, cwd)
        assert table.returncode == 0, table.stderr
        runs[name] = (json.loads(ran.stdout), from_json(shown.stdout), table.stdout)
    (sql_result, sql_events, sql_table), (t_result, t_events, t_table) = runs.values()
    assert t_result == sql_result
    assert (
        step_sequence(t_events)
        == step_sequence(sql_events)
        == [
            "call_llm",
            "parse_json",
            "save_to_db",
        ]
    )
    assert normalize(t_events) == normalize(sql_events)
    # The injected failure of parse_json's first attempt is in both timelines.
    for table in (sql_table, t_table):
        assert "step_failed" in table and "injected failure" in table


def test_the_cli_skips_teardown_but_keeps_its_exit_code_and_output(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    """On Temporal the `bridge` command leaves with os._exit (temporalio/sdk-python#300):
    its output and exit code must still be what SystemExit would have given."""
    env = settings_env(temporal_settings)
    missing = _cli(["signal", "no-such-run", "go", "1"], env, tmp_path)
    assert missing.returncode == 1
    assert "error: " in missing.stderr and "no-such-run" in missing.stderr
    listed = _cli(["list", "--limit", "1"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip()


def test_payloads_decode_as_the_converter_decodes_them() -> None:
    """The shims read bridge's JSON payloads directly; every payload, bridge's or one of
    Temporal's own encodings, must decode exactly as the data converter decodes it."""
    from backends.temporal._converter import data_converter, decode_payload

    converter = data_converter().payload_converter
    values: list[Any] = [{"x": 1, "a": [1.5, None, "é"]}, 0, "text", float("inf"), None, b"raw"]
    for value in values:
        payload = converter.to_payload(value)
        assert decode_payload(payload, lambda: converter) == converter.from_payload(payload)
    assert converter.to_payload(None).metadata["encoding"] == b"binary/null"  # not JSON


# -- bad input ------------------------------------------------------------------------------
async def test_an_unreachable_server_is_named_at_once() -> None:
    from backends.temporal._devserver import free_port

    address = f"127.0.0.1:{free_port()}"
    client = await bridge.connect({"backend": "temporal", "temporal": {"address": address}})
    started = time.monotonic()
    with pytest.raises(bridge.StorageError, match=address.replace(".", r"\.")) as info:
        await client.start(example_wf, "x", id="never")
    assert time.monotonic() - started < 7
    assert "temporal.address" in str(info.value) and "bridge dev temporal" in str(info.value)


async def test_an_unknown_namespace_is_a_config_error(temporal_settings: dict[str, Any]) -> None:
    settings = {**temporal_settings, "temporal": {**temporal_settings["temporal"]}}
    settings["temporal"]["namespace"] = "no-such-namespace"
    client = await bridge.connect(settings)
    with pytest.raises(bridge.ConfigError, match="no namespace 'no-such-namespace'"):
        await client.describe("anything")


async def test_signals_to_unknown_or_finished_runs(temporal_settings: dict[str, Any]) -> None:
    client = await bridge.connect(temporal_settings)
    with pytest.raises(bridge.WorkflowNotFoundError, match="no-such-run"):
        await client.signal("no-such-run", "approve", True)
    with pytest.raises(bridge.WorkflowNotFoundError):
        await client.cancel("no-such-run")
    with pytest.raises(bridge.WorkflowNotFoundError):
        await client.history("no-such-run")
    async with client.worker([example_wf]):
        assert await client.execute(example_wf, "x", id="finished-1", timeout=20) == "X"
    with pytest.raises(bridge.WorkflowClosedError, match="already completed"):
        await client.signal("finished-1", "approve", True)


@bridge.workflow(name="t_uses_a_thread")
async def uses_a_thread(ctx: bridge.Context) -> int:
    return await asyncio.to_thread(len, "abc")


async def test_what_the_workflow_loop_cannot_do_is_named_not_an_empty_error(
    temporal_settings: dict[str, Any],
) -> None:
    """asyncio's bare NotImplementedError() from Temporal's workflow event loop (a thread, a
    socket) reaches the user as what happened and what to do, never as an empty message."""
    client = await bridge.connect(temporal_settings)
    async with client.worker([uses_a_thread]):
        with pytest.raises(bridge.WorkflowFailedError) as caught:
            await client.execute(uses_a_thread, id="thread-1", timeout=20)
    message = str(caught.value)
    assert "NotImplementedError" in message and "asyncio.to_thread" in message, message
    assert "bridge activity" in message, message


async def test_an_id_used_by_another_workflow_is_refused(
    temporal_settings: dict[str, Any],
) -> None:
    client = await bridge.connect(temporal_settings)
    await client.start(example_wf, "x", id="taken-1")
    with pytest.raises(bridge.WorkflowIdConflictError, match="example_wf"):
        await client.start(waits_for_go, id="taken-1")


async def _watch_starts(client: bridge.Client) -> list[bool]:
    """Whether each start response of `client` carried an eager workflow task; the real
    call is made, only its answer is looked at."""
    service = (await client.backend.client()).workflow_service  # type: ignore[attr-defined]
    real = service.start_workflow_execution
    eager: list[bool] = []

    async def watched(request: Any, **kwargs: Any) -> Any:
        response = await real(request, **kwargs)
        eager.append(response.HasField("eager_workflow_task"))
        return response

    service.start_workflow_execution = watched
    return eager


async def test_eager_start_goes_to_a_local_worker_only(temporal_settings: dict[str, Any]) -> None:
    """Once this process's worker polls the queue, a start gets the run's first workflow task
    back with the call; a client without a worker (its request is cleared by temporalio's
    core) and one with eager_start off get none, and their runs are still dispatched at
    once, not after the 10 s workflow task timeout that a lost eager task would cost."""
    serving = await bridge.connect(temporal_settings)
    remote = await bridge.connect(temporal_settings)
    lazy_settings = {**temporal_settings, "temporal": {**temporal_settings["temporal"]}}
    lazy_settings["temporal"]["eager_start"] = False
    lazy = await bridge.connect(lazy_settings)
    clients = {"serving": serving, "remote": remote, "lazy": lazy}
    seen = {name: await _watch_starts(client) for name, client in clients.items()}
    async with serving.worker([example_wf]):
        # The worker starts polling in the background: the first run is what waits for it.
        assert await serving.execute(example_wf, "up", id="eager-up", timeout=20) == "UP"
        for name, client in clients.items():
            began = time.monotonic()
            result = await client.execute(example_wf, name, id=f"eager-{name}", timeout=20)
            assert result == name.upper()
            assert time.monotonic() - began < 5, f"the {name} client's run waited for a timeout"
    assert seen["serving"][1:] == [True]
    assert seen["remote"] == seen["lazy"] == [False]


# -- the sandbox ----------------------------------------------------------------------------
@bridge.activity
async def shout(text: str) -> str:
    return text.upper()


@bridge.workflow
async def example_wf(ctx: bridge.Context, text: str) -> str:
    return await ctx.run(shout, text)


@bridge.workflow
async def waits_for_go(ctx: bridge.Context) -> str:
    return str(await ctx.wait_for_signal("go"))


@bridge.workflow
async def reads_the_clock(ctx: bridge.Context) -> float:
    return time.time()  # not replay-safe: the sandbox refuses it


@bridge.workflow
async def makes_a_trace_group_id(ctx: bridge.Context, text: str) -> str:
    """As the Agents SDK's examples do around `Runner.run`: a uuid4 for tracing only."""
    group_id = uuid.uuid4().hex[:16]
    return f"{await ctx.run(shout, text)}:{len(group_id)}"


async def test_a_run_evicted_while_it_waits_is_closed_cleanly(
    temporal_settings: dict[str, Any],
) -> None:
    """A worker that stops drops the runs it caches; their coroutines are closed later,
    by the garbage collector in whatever Context it runs, and must not raise there."""
    caught: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, caught.append
    try:
        client = await bridge.connect(temporal_settings)
        async with client.worker([waits_for_go]):
            await client.start(waits_for_go, id="evicted-1")
            await wait_for_status(client, "evicted-1", bridge.Status.WAITING)
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0.1)
    finally:
        sys.unraisablehook = hook
    assert [f"{c.exc_type.__name__}: {c.exc_value}" for c in caught] == []


async def test_workflow_code_runs_in_the_sandbox(temporal_settings: dict[str, Any]) -> None:
    """time.time() in workflow code is refused by Temporal's sandbox: the run is blocked (kept
    for fixed code), not failed, and result() says so instead of hanging."""
    client = await bridge.connect(temporal_settings)
    async with client.worker([reads_the_clock]):
        with pytest.raises(bridge.WorkflowBlockedError, match=r"time\.time"):
            await client.execute(reads_the_clock, id="clock-1", timeout=20)
    assert (await client.describe("clock-1")).blocked


async def test_uuid4_for_a_trace_group_runs_as_on_the_other_engines(
    temporal_settings: dict[str, Any],
) -> None:
    client = await bridge.connect(temporal_settings)
    async with client.worker([makes_a_trace_group_id]):
        done = await client.execute(makes_a_trace_group_id, "hi", id=f"uuid-{uuid.uuid4()}")
    assert done == "HI:16"


async def test_a_module_that_works_at_import_fails_validation(
    temporal_settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "eager_flows.py").write_text(
        textwrap.dedent(
            """
            import datetime
            import bridge

            STARTED = datetime.datetime.now()  # work at import time

            @bridge.workflow
            async def eager(ctx: bridge.Context) -> str:
                return str(STARTED)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import eager_flows

    client = await bridge.connect(temporal_settings)
    with pytest.raises(bridge.ConfigError, match="eager_flows"):
        async with client.worker([eager_flows.eager]):
            await asyncio.sleep(0.1)


def test_workflows_in_scripts_or_functions_are_refused(temporal_settings: dict[str, Any]) -> None:
    async def local(ctx: bridge.Context) -> None: ...

    from backends.temporal import TemporalBackend

    backend = TemporalBackend(settings=bridge.load_settings(temporal_settings))
    with pytest.raises(bridge.ConfigError, match="module level"):
        backend.worker(workflows=[WorkflowDefinition(local, name="local")])


# -- waiting, as describe() and list() show it ----------------------------------------------
async def test_describe_and_list_show_what_a_run_waits_for(
    temporal_settings: dict[str, Any],
) -> None:
    client = await bridge.connect(temporal_settings)
    async with client.worker([waits_for_go]):
        handle = await client.start(waits_for_go, id="waiting-1")
        desc = await wait_for_status(client, "waiting-1", bridge.Status.WAITING)
        assert desc.waiting_for == "go" and desc.backend == "temporal"
        listed = {d.id: d for d in await client.list(status="waiting", limit=1000)}
        assert listed["waiting-1"].waiting_for == "go"
        await handle.signal("go", "now")
        assert await handle.result(timeout=20) == "now"
    assert (await handle.describe()).status is bridge.Status.COMPLETED
    events = [e.type.value for e in await handle.history()]
    assert events[-3:] == ["signal_waiting", "signal_received", "workflow_completed"]


# -- cancellation ---------------------------------------------------------------------------
UNDONE: list[str] = []


@bridge.activity
async def release(item: str) -> None:
    UNDONE.append(item)


@bridge.activity(compensate=release)
async def reserve(item: str) -> str:
    return item


@bridge.workflow
async def reserve_then_wait(ctx: bridge.Context, item: str) -> str:
    await ctx.run(reserve, item)
    try:
        await ctx.wait_for_signal("confirm")
    except asyncio.CancelledError:
        await ctx.compensate()  # the workflow may still act on its cancellation
        raise
    return "confirmed"


async def test_cancel_reaches_the_workflow_which_can_compensate(
    temporal_settings: dict[str, Any],
) -> None:
    UNDONE.clear()
    client = await bridge.connect(temporal_settings)
    async with client.worker([reserve_then_wait]):
        handle = await client.start(reserve_then_wait, "seat-7", id="cancel-compensate-1")
        for _ in range(250):
            if (await handle.describe()).waiting_for == "confirm":
                break
            await asyncio.sleep(0.02)
        await handle.cancel()
        with pytest.raises(bridge.WorkflowCancelledError):
            await handle.result(timeout=20)
    assert UNDONE == ["seat-7"]
    events = [e.type.value for e in await handle.history()]
    assert "compensation_completed" in events and events[-1] == "workflow_cancelled"
    with pytest.raises(bridge.WorkflowClosedError, match="already cancelled"):
        await handle.cancel()


# -- replay ---------------------------------------------------------------------------------
@bridge.activity
async def stamp(label: str) -> str:
    return label


async def _replay_v1(ctx: bridge.Context) -> list[str]:
    return [await ctx.run(stamp, "a"), await ctx.run(stamp, "b")]


async def _replay_v2(ctx: bridge.Context) -> list[str]:
    first = await ctx.run(stamp, "a")
    await ctx.sleep(0.01)  # a timer where the history has an activity
    return [first, await ctx.run(stamp, "b")]


REPLAY_V1 = WorkflowDefinition(_replay_v1, name="replayed")
REPLAY_V2 = WorkflowDefinition(_replay_v2, name="replayed")


async def test_bridge_replay_checks_a_recorded_history(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    client = await bridge.connect(temporal_settings)
    async with client.worker([REPLAY_V1]):
        assert await client.execute(REPLAY_V1, id="replay-1", timeout=20) == ["a", "b"]
    backend = client.backend
    handle = (await backend.client()).get_workflow_handle("replay-1")  # type: ignore[attr-defined]
    recorded = tmp_path / "history.json"
    recorded.write_text((await handle.fetch_history()).to_json())
    env = settings_env(temporal_settings)

    same = _cli(
        ["replay", str(recorded), "tests.backends.temporal.test_temporal:REPLAY_V1"], env, ROOT
    )
    assert same.returncode == 0, same.stderr
    assert "no non-determinism" in same.stdout

    changed = _cli(
        ["replay", str(recorded), "tests.backends.temporal.test_temporal:REPLAY_V2"], env, ROOT
    )
    assert changed.returncode == 1
    assert "diverged" in changed.stderr and "at step 1" in changed.stderr
    assert "activity 'stamp'" in changed.stderr and "asks for sleep 'sleep'" in changed.stderr


@bridge.activity
async def stamp_loudly(label: str) -> str:
    return label.upper()


async def _two_stamps(ctx: bridge.Context) -> list[str]:
    return [await ctx.run(stamp, "a"), await ctx.run(stamp, "b")]


async def _second_stamp_renamed(ctx: bridge.Context) -> list[str]:
    return [await ctx.run(stamp, "a"), await ctx.run(stamp_loudly, "b")]


async def _second_stamp_reargued(ctx: bridge.Context) -> list[str]:
    return [await ctx.run(stamp, "a"), await ctx.run(stamp, "c"), await ctx.run(stamp, "b")]


TWO_STAMPS = WorkflowDefinition(_two_stamps, name="stamps")
SECOND_STAMP_RENAMED = WorkflowDefinition(_second_stamp_renamed, name="stamps")
SECOND_STAMP_REARGUED = WorkflowDefinition(_second_stamp_reargued, name="stamps")


@pytest.mark.parametrize(
    ("changed", "recorded", "asked"),
    [
        # Temporal's message names no event for a changed activity type: it said step 2.
        (SECOND_STAMP_RENAMED, "activity 'stamp'", "activity 'stamp_loudly'"),
        # Temporal does not compare arguments; it noticed only the extra step 2.
        (
            SECOND_STAMP_REARGUED,
            'activity \'stamp\' with arguments {"label":"b"}',
            'activity \'stamp\' with arguments {"label":"c"}',
        ),
    ],
    ids=["activity-type", "arguments"],
)
async def test_replay_names_the_step_where_the_code_changed(
    temporal_settings: dict[str, Any],
    changed: WorkflowDefinition[..., Any],
    recorded: str,
    asked: str,
) -> None:
    """Defect 9 of #13: step 1 changed between the recorded run and the replay."""
    client = await bridge.connect(temporal_settings)
    try:
        async with client.worker([TWO_STAMPS]):
            run = f"stamps-{uuid.uuid4().hex[:8]}"
            assert await client.execute(TWO_STAMPS, id=run, timeout=20) == ["a", "b"]
        history = await client.backend.export_history(run)
        with pytest.raises(bridge.NonDeterminismError) as caught:
            await client.backend.replay(history, changed)
    finally:
        await client.close()
    assert caught.value.step == 1, str(caught.value)
    assert "diverged from its journal at step 1" in str(caught.value)
    assert caught.value.recorded.startswith(recorded), caught.value.recorded
    assert caught.value.current.startswith(asked), caught.value.current


# -- the dev server -------------------------------------------------------------------------
def test_bridge_dev_temporal_serves_until_interrupted(tmp_path: Path) -> None:
    import socket

    from backends.temporal._devserver import free_port

    def bindable(p: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
        return True

    # The Web UI takes the gRPC port + 1000: both must be free and below 65536, or the
    # server never starts and the read below would wait for ever.
    port = free_port()
    while port + 1000 > 65535 or not bindable(port + 1000):
        port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    with subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "dev", "temporal", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]
            assert lines[0].strip() == f"temporal dev server: 127.0.0.1:{port}"
            assert lines[1].strip() == f"Web UI: http://127.0.0.1:{port + 1000}"
            assert (tmp_path / ".bridge" / "temporal.db").exists()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert proc.returncode == 130


def test_bridge_dev_names_engines_without_a_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = _cli(["dev", "sql"], env, tmp_path)
    assert done.returncode == 1
    assert "the sql backend has no local server" in done.stderr
