"""The `bridge` console script, run for real in subprocesses on a fresh SQLite journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOWS = textwrap.dedent(
    """
    import bridge

    @bridge.activity(retry=bridge.RetryPolicy(initial_interval=0.01))
    async def double(x: int) -> int:
        return x * 2

    @bridge.workflow
    async def twice(ctx: bridge.Context, x: int, label: str = "n") -> dict[str, int]:
        return {label: await ctx.run(double, x)}

    @bridge.workflow
    async def greet_when_told(ctx: bridge.Context) -> str:
        name = await ctx.wait_for_signal("name")
        return f"hello {name}"
    """
)


def _command() -> list[str]:
    """The installed console script when there is one, else the module."""
    script = Path(sys.executable).with_name("bridge")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bridge.cli"]


class Cli:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.env.update(
            BRIDGE_SQL_URL=f"sqlite:///{cwd}/journal.db",
            BRIDGE_SQL_POLL_INTERVAL="0.02",
            COLUMNS="200",  # rich tables are not squeezed into 80 columns
        )

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*_command(), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok:
            assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}"
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*_command(), *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "cli_flows.py").write_text(FLOWS)
    return Cli(tmp_path)


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_demo_runs_the_research_agent_and_counts_each_step(cli: Cli, tmp_path: Path) -> None:
    cli.env.pop("OPENAI_API_KEY", None)  # the offline scripted model, never the API
    first = cli("demo")
    # The agent parked before saving; the demo approved it, and says how a person would.
    assert "waiting for the signal 'approval:save_report'" in first.stdout
    assert "bridge signal demo-" in first.stdout
    assert '"report_id": 1' in first.stdout
    assert "https://docs.dbos.dev/architecture" in first.stdout  # a source it summarized
    assert "signal_received" in first.stdout
    assert "injected failure" in first.stdout  # the timeline shows the failed attempt
    summary = first.stdout.strip().splitlines()[-1]
    assert summary == (
        "openai_agents.model_call ran 4 times, search_web ran 1 time, extract_content ran "
        "4 times (1 failure retried), save_report ran 1 time"
    )
    assert (tmp_path / ".bridge" / "demo.db").is_file()

    # A fresh id each time: a second demo is a second run and a second saved report.
    second = cli("demo")
    assert '"report_id": 2' in second.stdout
    runs = cli("list").stdout
    assert runs.count("demo-") == 2


def test_run_then_inspect(cli: Cli) -> None:
    ran = cli("run", "cli_flows:twice", '[21, "v"]', "--id", "t1", "--timeout", "60")
    assert json.loads(ran.stdout) == {"v": 42}

    # A JSON value that is not an array is the single argument.
    assert json.loads(cli("run", "cli_flows:twice", "5").stdout) == {"n": 10}

    status = cli("status", "t1").stdout
    for needle in ("t1", "twice", "COMPLETED", '{"v": 42}'):
        assert needle in status

    timeline = cli("history", "t1").stdout
    for needle in ("workflow_started", "step_completed", "double", "workflow_completed"):
        assert needle in timeline

    events = json.loads(cli("history", "t1", "--json").stdout)
    assert [e["type"] for e in events] == [
        "workflow_started",
        "step_scheduled",
        "step_completed",
        "workflow_completed",
    ]
    assert events[2]["result"] == 42

    listed = cli("list", "--status", "completed").stdout
    assert "t1" in listed and "twice" in listed
    assert "no workflows" in cli("list", "--status", "failed").stdout

    assert json.loads(cli("result", "t1").stdout) == {"v": 42}


def test_start_signal_and_worker(cli: Cli) -> None:
    assert cli("start", "cli_flows:greet_when_told", "--id", "g1").stdout.strip() == "g1"
    assert "PENDING" in cli("status", "g1").stdout
    worker = cli.popen("worker", "--module", "cli_flows")
    try:
        cli("signal", "g1", "name", '"Ada"')
        assert json.loads(cli("result", "g1", "--timeout", "60").stdout) == "hello Ada"
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stdout + stderr
    assert "worker stopped" in stderr


def test_history_follow_prints_events_as_they_happen_until_the_run_ends(cli: Cli) -> None:
    cli("start", "cli_flows:greet_when_told", "--id", "f1")
    follower = cli.popen("history", "f1", "--follow", "--json")
    worker = cli.popen("worker", "--module", "cli_flows")
    try:
        assert follower.stdout is not None
        # The run's start arrives while it still waits for its signal...
        first = json.loads(follower.stdout.readline())
        assert first["type"] == "workflow_started"
        assert follower.poll() is None
        cli("signal", "f1", "name", '"Ada"')
        # ...and the follower ends by itself once the run has ended.
        rest, stderr = follower.communicate(timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert follower.returncode == 0, stderr
    types = [json.loads(line)["type"] for line in rest.splitlines()]
    assert types[-1] == "workflow_completed" and "signal_received" in types, types


def test_signal_to_unknown_id_is_one_error_line(cli: Cli) -> None:
    proc = cli("signal", "no-such-id", "go", ok=False)
    assert_one_error_line(proc, "no-such-id")


def test_debug_shows_the_traceback(cli: Cli) -> None:
    proc = cli("--debug", "signal", "no-such-id", "go", ok=False)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert "WorkflowNotFoundError" in proc.stderr


def test_unknown_backend_names_the_installed_ones(cli: Cli) -> None:
    proc = cli("list", "--backend", "nope", ok=False)
    assert_one_error_line(proc, "'nope'", "installed backends:", "sql")


@pytest.mark.parametrize(
    ("toml", "key"),
    [('bakend = "sql"\n', "bakend"), ('[sql]\nurll = "sqlite:///x.db"\n', "sql.urll")],
)
def test_unknown_config_key_is_named(cli: Cli, toml: str, key: str) -> None:
    (cli.cwd / "bridge.toml").write_text(toml)
    proc = cli("list", ok=False)
    assert_one_error_line(proc, f"`{key}`", "bridge.toml")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "cli_flows:missing"], "no attribute 'missing'"),
        (["run", "no_such_module:wf"], "cannot import module 'no_such_module'"),
        (["run", "cli_flows:double", "1"], "not a bridge workflow"),
        (["run", "cli_flows"], "MODULE:WORKFLOW"),
        (["run", "cli_flows:twice", "[1,"], "ARGS_JSON is not valid JSON"),
        (["signal", "x", "go", "{oops"], "PAYLOAD_JSON is not valid JSON"),
        (["result", "no-such-id"], "no-such-id"),
        (["worker"], "no workflows to run"),
    ],
)
def test_bad_input_is_one_error_line(cli: Cli, args: list[str], needle: str) -> None:
    assert_one_error_line(cli(*args, ok=False), needle)
