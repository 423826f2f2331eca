"""Routing is the client: with `[migrate.*]` rules, `bridge.connect()` and every CLI command
start by the rules and reach the engine that owns each run (sql -> langgraph, sql -> temporal).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.migrate.routing_client import RoutingClient
from tests import ledger, wfs
from tests.conftest import ROOT, fast_sql

TO_ENGINES = ["langgraph", "temporal"]


@pytest.fixture(params=TO_ENGINES)
def to_engine(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The rule's `to` engine and its `[engines.NAME]` settings (the temporal one needs the
    session's dev server, started only for that case)."""
    name = request.param
    return name, request.getfixturevalue(f"{name}_settings")


def _settings(tmp_path: Path, to: tuple[str, dict[str, Any]], ramp: float) -> dict[str, Any]:
    name, engine = to
    return {
        "backend": "sql",
        "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db"),
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
        "engines": {name: engine},
        "migrate": {"approval": {"from": "sql", "to": name, "ramp": ramp}},
    }


def _write_toml(tmp_path: Path, settings: dict[str, Any]) -> None:
    """The same settings as bridge.toml, for CLI processes started in `tmp_path`."""
    lines = [f'backend = "{settings["backend"]}"', 'workflows = ["tests.wfs"]']

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, dict):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for section in ("sql", "router"):
        table(section, settings[section])
    for name, engine in settings["engines"].items():
        table(f"engines.{name}", engine)
    for workflow, rule in settings["migrate"].items():
        table(f"migrate.{workflow}", rule)
    (tmp_path / "bridge.toml").write_text("\n".join(lines) + "\n")


async def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_connect_starts_by_the_rules_and_reaches_the_owning_engine(
    tmp_path: Path, ledger_path: str, to_engine: tuple[str, dict[str, Any]]
) -> None:
    name, _ = to_engine
    client = await bridge.connect(_settings(tmp_path, to_engine, ramp=100))
    try:
        assert isinstance(client, RoutingClient)
        handle = await client.start(wfs.approval, ledger_path, None, id="order-1")
        assert client.router.engine_of("order-1") == name
        # Nothing was started on the default engine.
        sql = await client.router.client("sql")
        with pytest.raises(bridge.WorkflowNotFoundError):
            await sql.describe("order-1")
        # `migrate status` counts it, open, on the `to` engine.
        rows = {(r.workflow, r.engine): r for r in client.router.status()}
        assert rows[("approval", name)].open == 1
        assert rows[("approval", "sql")].open == 0

        owner = await client.client_for("order-1")
        async with owner.worker([wfs.approval]):
            await _until_waiting(client, "order-1")
            desc = await client.describe("order-1")
            assert desc.engine == name and not desc.status.is_terminal
            await handle.signal("approve", "yes")
            assert await client.result("order-1", timeout=60) == "decided:yes"
        assert [e.key for e in ledger.entries(ledger_path)] == ["asked", "decided:yes"]
        assert next(e.type.value for e in await client.history("order-1")) == "workflow_started"
        # A retried start with the same arguments attaches to the routed run.
        again = await client.start(wfs.approval, ledger_path, None, id="order-1")
        assert not again.created
    finally:
        await client.close()


async def test_runs_started_before_the_rules_stay_on_the_default_engine(
    tmp_path: Path, ledger_path: str, to_engine: tuple[str, dict[str, Any]]
) -> None:
    settings = _settings(tmp_path, to_engine, ramp=100)
    plain = {k: v for k, v in settings.items() if k not in ("migrate", "engines")}
    before = await bridge.connect(plain)
    try:
        assert not isinstance(before, RoutingClient)
        await before.start(wfs.approval, ledger_path, None, id="old-1")
    finally:
        await before.close()
    client = await bridge.connect(settings)
    try:
        async with (await client.client_for("old-1")).worker([wfs.approval]):
            await _until_waiting(client, "old-1")
            assert (await client.describe("old-1")).engine == "sql"
            await client.signal("old-1", "approve", "ok")
            assert await client.result("old-1", timeout=60) == "decided:ok"
    finally:
        await client.close()


async def test_the_cli_reaches_a_run_on_a_non_default_engine(
    tmp_path: Path, ledger_path: str, to_engine: tuple[str, dict[str, Any]]
) -> None:
    name, _ = to_engine
    settings = _settings(tmp_path, to_engine, ramp=100)
    _write_toml(tmp_path, settings)
    started = await _cli(tmp_path, "start", "tests.wfs:approval", json.dumps([ledger_path, None]))
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()

    client = await bridge.connect(settings)
    try:
        assert client.router.engine_of(run_id) == name
        # A run of another workflow type (no rule) starts on the default engine.
        nap_id = f"nap-{uuid.uuid4()}"  # Temporal lists its whole namespace: ids of ours
        await client.start(wfs.nap, ledger_path, 0.0, id=nap_id)
        assert client.router.engine_of(nap_id) == "sql"
        async with (
            (await client.client_for(run_id)).worker([wfs.approval]),
            (await client.client_for(nap_id)).worker([wfs.nap]),
        ):
            await _until_waiting(client, run_id)
            status = await _cli(tmp_path, "status", run_id)
            assert status.returncode == 0, status.stderr
            assert "WAITING" in status.stdout and name in status.stdout

            listed = await _cli(tmp_path, "list")
            assert listed.returncode == 0, listed.stderr
            rows = [line for line in listed.stdout.splitlines() if run_id in line or nap_id in line]
            assert len(rows) == 2, listed.stdout
            assert any(name in r and run_id in r for r in rows), listed.stdout
            assert any("sql" in r and nap_id in r for r in rows), listed.stdout

            sent = await _cli(tmp_path, "signal", run_id, "approve", '"via-cli"')
            assert sent.returncode == 0, sent.stderr
            result = await _cli(tmp_path, "result", run_id)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == "decided:via-cli"
    finally:
        await client.close()


async def test_bridge_run_runs_its_worker_on_the_engine_the_rule_chose(
    tmp_path: Path, ledger_path: str
) -> None:
    """`bridge run` starts through the rules and runs its in-process worker on the engine the
    run landed on (the default engine's worker would never see it)."""
    settings = _settings(
        tmp_path,
        ("langgraph", {"langgraph": {"url": f"sqlite:///{tmp_path}/lg.db", "poll_interval": 0.02}}),
        ramp=100,
    )
    settings["migrate"] = {"nap": {"from": "sql", "to": "langgraph", "ramp": 100}}
    _write_toml(tmp_path, settings)
    ran = await _cli(
        tmp_path,
        "run",
        "tests.wfs:nap",
        json.dumps([ledger_path, 0.0]),
        "--id",
        "n1",
        "--timeout",
        "60",
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == "after"
    client = await bridge.connect(settings)
    try:
        assert (await client.describe("n1")).engine == "langgraph"
    finally:
        await client.close()


async def _until_waiting(client: bridge.Client, id: str) -> None:
    for _ in range(600):
        desc = await client.describe(id)
        if desc.waiting_for:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{id} never waited: {desc}")
