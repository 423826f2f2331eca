"""The migration router: the ramp, the sticky routing table, the [migrate] configuration and
`bridge migrate status`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bridge
from bridge.cli import app
from bridge.config import RouterSettings
from bridge.errors import WorkflowNotFoundError
from bridge.migrate._ramp import BUCKETS, bucket, on_new_engine
from bridge.migrate._routing_table import OPEN, RoutingTable
from bridge.migrate.router import EngineState, Router
from tests import wfs
from tests.conftest import ROOT

KEYS = [f"customer-{i}" for i in range(4000)]
RAMPS = [0, 0.5, 1, 5, 10, 25, 30, 33.3, 50, 75, 99, 99.99, 100]


# -- the ramp ---------------------------------------------------------------------------------
def test_bucket_is_sha256_of_workflow_and_key() -> None:
    # Pinned: a change here would move live keys between engines, which must never happen
    # by accident.
    assert [bucket("debtor", k) for k in ("d000", "d001", "customer-7")] == [3809, 8703, 6320]
    digest = hashlib.sha256(b"debtor\x00d000").digest()
    assert bucket("debtor", "d000") == int.from_bytes(digest[:8], "big") % BUCKETS
    assert all(0 <= bucket("w", k) < BUCKETS for k in KEYS)
    # The workflow type is part of the hash: two ramps do not move the same keys.
    assert [bucket("a", k) for k in KEYS[:50]] != [bucket("b", k) for k in KEYS[:50]]


def test_bucket_is_the_same_in_every_process() -> None:
    """Python's hash() is salted per process; the ramp must not be."""
    code = (
        "from bridge.migrate._ramp import bucket;"
        "print([bucket('debtor', f'k{i}') for i in range(20)])"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(proc.stdout)
    assert outputs == {f"{[bucket('debtor', f'k{i}') for i in range(20)]}\n"}


def test_raising_the_ramp_only_moves_keys_forward() -> None:
    previous: set[str] = set()
    for ramp in RAMPS:
        now = {k for k in KEYS if on_new_engine("debtor", k, ramp)}
        assert previous <= now, f"raising the ramp to {ramp}% moved keys back to the old engine"
        previous = now
    assert not any(on_new_engine("debtor", k, 0) for k in KEYS)
    assert all(on_new_engine("debtor", k, 100) for k in KEYS)


@pytest.mark.parametrize("ramp", [5, 30, 50, 90])
def test_ramp_distribution_is_within_tolerance(ramp: float) -> None:
    share = sum(on_new_engine("debtor", k, ramp) for k in KEYS) / len(KEYS)
    # 4000 keys: the binomial standard deviation is under 0.8 points; allow 3 points.
    assert abs(share - ramp / 100) < 0.03, f"{share:.3f} of keys at a {ramp}% ramp"


# -- the routing table --------------------------------------------------------------------------
def test_routing_table_is_sticky(tmp_path: Path) -> None:
    table = RoutingTable(RouterSettings(url=f"sqlite:///{tmp_path}/routes.db"))
    try:
        first = table.claim("run-1", "debtor", "sql")
        assert (first.engine, first.status) == ("sql", OPEN)
        # A second claim (a redelivered start, a racing router) never moves the run.
        assert table.claim("run-1", "debtor", "langgraph").engine == "sql"
        table.claim("run-2", "debtor", "langgraph")
        table.claim("run-3", "debtor", "langgraph")
        assert [r.workflow_id for r in table.open_routes()] == ["run-1", "run-2", "run-3"]
        table.close_route("run-2", "COMPLETED")
        table.close_route("run-2", "FAILED")  # closing again changes nothing
        assert table.get("run-2").status == "COMPLETED"  # type: ignore[union-attr]
        assert table.get("missing") is None
        assert table.counts() == {("debtor", "sql"): (1, 1), ("debtor", "langgraph"): (1, 2)}
    finally:
        table.close()
    # Routes are durable: a new process sees the same owners.
    again = RoutingTable(RouterSettings(url=f"sqlite:///{tmp_path}/routes.db"))
    try:
        assert again.get("run-1").engine == "sql"  # type: ignore[union-attr]
    finally:
        again.close()


@pytest.mark.postgres
def test_routing_table_on_postgresql(pg_database: str) -> None:
    table = RoutingTable(RouterSettings(url=pg_database))
    try:
        table.claim("pg-run", "debtor", "sql")
        assert table.claim("pg-run", "debtor", "langgraph").engine == "sql"
        table.close_route("pg-run", "COMPLETED")
        assert table.counts()[("debtor", "sql")] == (0, 1)
    finally:
        table.close()


# -- the router over two real engines ---------------------------------------------------------
def _explicit(tmp_path: Path, sql: dict[str, Any], langgraph: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": "sql",
        "sql": sql["sql"],
        "langgraph": langgraph["langgraph"],
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
    }


def _rule(path: Path, ramp: float, *, workflow: str = "approval") -> None:
    path.write_text(f'[migrate.{workflow}]\nfrom = "sql"\nto = "langgraph"\nramp = {ramp}\n')


async def test_router_follows_the_ramp_and_in_flight_runs_stay(
    tmp_path: Path,
    sql_settings: dict[str, Any],
    langgraph_settings: dict[str, Any],
    ledger_path: str,
) -> None:
    _rule(tmp_path / "bridge.toml", 40)
    router = await Router.connect(
        _explicit(tmp_path, sql_settings, langgraph_settings), cwd=tmp_path
    )
    try:
        ids = [f"approval-{i}" for i in range(30)]
        for run_id in ids:
            await router.start(wfs.approval, ledger_path, None, id=run_id)
        owners = {run_id: router.engine_of(run_id) for run_id in ids}
        assert owners == {
            run_id: "langgraph" if on_new_engine("approval", run_id, 40) else "sql"
            for run_id in ids
        }
        assert set(owners.values()) == {"sql", "langgraph"}

        # All on the new engine from now on; the runs already started stay where they are.
        _rule(tmp_path / "bridge.toml", 100)
        router.reload()
        assert router.choose("approval", "anything") == "langgraph"
        for run_id in ids:
            again = await router.start(wfs.approval, ledger_path, None, id=run_id)
            assert again.created is False
            assert router.engine_of(run_id) == owners[run_id]
        late = await router.start(wfs.approval, ledger_path, None, id="approval-late")
        assert late.created and router.engine_of("approval-late") == "langgraph"

        # Signals, cancels and describes go to the owner; the other engine never heard of it.
        sql, langgraph = await router.client("sql"), await router.client("langgraph")
        for run_id, engine in owners.items():
            await router.signal(run_id, "approve", True)
            assert (await router.describe(run_id)).backend == engine
            other = langgraph if engine == "sql" else sql
            with pytest.raises(WorkflowNotFoundError):
                await other.describe(run_id)
        async with sql.worker([wfs.approval]), langgraph.worker([wfs.approval]):
            for run_id in ids:
                assert await router.result(run_id, timeout=30) == "decided:True"
            await router.cancel("approval-late")
            with pytest.raises(bridge.WorkflowCancelledError):
                await router.result("approval-late", timeout=30)
        assert (await router.history(ids[0]))[0].type is bridge.EventType.WORKFLOW_STARTED

        # Without a completion watcher, refresh() closes the finished routes.
        assert await router.refresh() == len(ids) + 1
        rows = {row.engine: row for row in router.status()}
        assert rows["sql"].state is EngineState.DRAINED and rows["sql"].open == 0
        assert rows["langgraph"].state is EngineState.ACTIVE
    finally:
        await router.close()


async def test_reload_every_rereads_the_rules_on_start(
    tmp_path: Path, sql_settings: dict[str, Any], langgraph_settings: dict[str, Any]
) -> None:
    _rule(tmp_path / "bridge.toml", 0)
    explicit = _explicit(tmp_path, sql_settings, langgraph_settings)
    router = await Router.connect(explicit, cwd=tmp_path, reload_every=0)
    try:
        await router.start(wfs.approval, "unused", None, id="before")
        _rule(tmp_path / "bridge.toml", 100)
        await router.start(wfs.approval, "unused", None, id="after")
        assert [router.engine_of("before"), router.engine_of("after")] == ["sql", "langgraph"]
    finally:
        await router.close()


async def test_workflows_without_a_rule_and_unknown_ids_use_the_default_engine(
    tmp_path: Path, sql_settings: dict[str, Any], langgraph_settings: dict[str, Any]
) -> None:
    explicit = _explicit(tmp_path, sql_settings, langgraph_settings)
    router = await Router.connect(explicit, cwd=tmp_path)
    try:
        await router.start(wfs.approval, "unused", None, id="plain")
        assert router.engine_of("plain") == "sql"
        # A run started before the router was in use is found on the default engine.
        sql = await router.client("sql")
        await sql.start(wfs.approval, "unused", None, id="legacy")
        assert router.route("legacy") is None
        assert (await router.describe("legacy")).backend == "sql"
    finally:
        await router.close()


async def test_shadow_rule_starts_on_the_primary_and_calls_the_hook(
    tmp_path: Path, sql_settings: dict[str, Any], langgraph_settings: dict[str, Any]
) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[migrate.approval]\nfrom = "sql"\nto = "langgraph"\nramp = 100\nshadow = true\n'
    )
    calls: list[tuple[str, tuple[Any, ...], str]] = []

    async def hook(**kw: Any) -> None:
        calls.append((kw["workflow_id"], kw["args"], kw["rule"].to))

    explicit = _explicit(tmp_path, sql_settings, langgraph_settings)
    router = await Router.connect(explicit, cwd=tmp_path, shadow_hook=hook)
    try:
        await router.start(wfs.approval, "p", None, id="shadowed")
        await router.start(wfs.approval, "p", None, id="shadowed")  # not created: no hook
        assert router.engine_of("shadowed") == "sql"
        assert calls == [("shadowed", ("p", None), "langgraph")]
        rows = {row.engine: row.state for row in router.status()}
        assert rows == {"sql": EngineState.ACTIVE, "langgraph": EngineState.DRAINED}
    finally:
        await router.close()


# -- configuration --------------------------------------------------------------------------------
def test_migrate_section_from_bridge_toml(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        textwrap.dedent(
            """
            [router]
            url = "postgresql+psycopg://postgres@127.0.0.1/routes"

            [migrate.debtor]
            from = "old"
            to = "langgraph"
            ramp = 25

            [migrate.ingest]
            from = "sql"
            to = "sql"
            shadow = true

            [engines.old]
            backend = "sql"
            sql = { url = "sqlite:///old.db", durability = "NORMAL" }
            """
        )
    )
    settings = bridge.load_settings(cwd=tmp_path, environ={})
    rule = settings.migrate["debtor"]
    assert (rule.from_, rule.to, rule.ramp, rule.shadow) == ("old", "langgraph", 25, False)
    assert settings.migrate["ingest"].shadow is True
    assert settings.router.url.startswith("postgresql")
    old = settings.engine("old")
    assert (old.backend, old.sql.url, old.sql.durability) == ("sql", "sqlite:///old.db", "NORMAL")
    # An engine without a table is the backend of that name with the file's settings.
    assert settings.engine("langgraph").backend == "langgraph"
    assert settings.engine("langgraph").langgraph == settings.langgraph


def test_migrate_from_the_environment(tmp_path: Path) -> None:
    rules = {"debtor": {"from": "sql", "to": "langgraph", "ramp": 10}}
    environ = {"BRIDGE_MIGRATE": json.dumps(rules), "BRIDGE_ROUTER_URL": "sqlite:///r.db"}
    settings = bridge.load_settings(cwd=tmp_path, environ=environ)
    assert settings.migrate["debtor"].ramp == 10
    assert settings.router.url == "sqlite:///r.db"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[migrate.debtor]\nfrom = "sql"\nto = "langgraph"\nrampp = 5\n',
            "unknown setting `migrate.debtor.rampp` (from {path}); allowed here: from, paused, "
            "ramp, sample, shadow, to",
        ),
        (
            '[migrate.debtor]\nfrom = "sql"\nto = "langgraph"\nramp = 101\n',
            "bad value 101 for `migrate.debtor.ramp` (from {path}): Input should be less than "
            "or equal to 100",
        ),
        (
            '[migrate.debtor]\nto = "langgraph"\n',
            "missing setting `migrate.debtor.from`",
        ),
        (
            '[migrate.debtor]\nfrom = "sql"\nto = "sql"\n',
            "`from` and `to` are both 'sql'; name two engines, or set shadow = true",
        ),
        (
            '[migrate.debtor]\nfrom = "sql"\nto = "langgraph"\nshadow = "sometimes"\n',
            "bad value 'sometimes' for `migrate.debtor.shadow`",
        ),
        (
            '[engines.old]\nsql = { urll = "x" }\n',
            "engine 'old': unknown setting `sql.urll` (from [engines.old]); allowed here:",
        ),
        (
            "[engines.old]\nmigrate = { }\n",
            "[engines.old] sets `migrate`; an engine's table holds only its backend's settings",
        ),
        ('[router]\nuri = "x"\n', "unknown setting `router.uri` (from {path}); allowed here:"),
    ],
)
def test_bad_migrate_config_is_an_error_naming_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    (tmp_path / "bridge.toml").write_text(toml)
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={})
    assert message.format(path=tmp_path / "bridge.toml") in str(info.value)


async def test_a_rule_naming_no_engine_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        f'[router]\nurl = "sqlite:///{tmp_path}/r.db"\n'
        '[migrate.debtor]\nfrom = "sql"\nto = "temporl"\n'
    )
    with pytest.raises(bridge.ConfigError) as info:
        await Router.connect(cwd=tmp_path)
    assert "[migrate.debtor] to = 'temporl' names no engine: add an [engines.temporl] table" in (
        str(info.value)
    )
    assert "langgraph" in str(info.value)  # the installed backends are listed


# -- bridge migrate status ------------------------------------------------------------------------
def _bridge(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(COLUMNS="200", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # a `bridge` subprocess that loads LangGraph: ~10 s on a busy machine
def test_migrate_status_command(
    tmp_path: Path, ledger_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bridge.toml").write_text(
        textwrap.dedent(
            f"""
            [sql]
            url = "sqlite:///{tmp_path}/journal.db"
            [langgraph]
            url = "sqlite:///{tmp_path}/lg.db"
            [router]
            url = "sqlite:///{tmp_path}/routes.db"
            [migrate.approval]
            from = "sql"
            to = "langgraph"
            ramp = 100
            """
        )
    )

    async def setup() -> None:
        router = await Router.connect(cwd=tmp_path)
        try:
            # Three runs routed to sql while the ramp was lower (routes are facts, not rules).
            sql = await router.client("sql")
            for i in range(3):
                router.table.claim(f"old-{i}", "approval", "sql")
                await sql.start(wfs.approval, ledger_path, None, id=f"old-{i}")
            await router.start(wfs.approval, ledger_path, None, id="new-0")
            # One sql run finishes; `status --refresh` sees it.
            await sql.signal("old-0", "approve", True)
            async with sql.worker([wfs.approval]):
                await sql.result("old-0", timeout=30)
        finally:
            await router.close()

    asyncio.run(setup())

    proc = _bridge(tmp_path, "migrate", "status", "--json", "--refresh")
    assert proc.returncode == 0, proc.stderr
    rows = {row["engine"]: row for row in json.loads(proc.stdout)["workflows"]}
    assert rows["sql"] == {
        "workflow": "approval",
        "engine": "sql",
        "role": "from",
        "open": 2,
        "total": 3,
        "finished": 1,
        "failed_starts": 0,
        "shadow": {},
        "state": "Draining",
        "rule": "sql -> langgraph 100%",
        "ramp": 100,
        "paused": False,
        "shadowed": False,
    }
    assert (rows["langgraph"]["open"], rows["langgraph"]["state"]) == (1, "Active")

    # The table, in process (the subprocess above already proved the real command).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(app, ["migrate", "status", "--no-refresh"])
    assert shown.exit_code == 0, shown.output
    cells = {
        tuple(c.strip() for c in line.split("│")[1:-1])
        for line in shown.output.splitlines()
        if "approval" in line
    }
    assert cells == {
        ("approval", "sql -> langgraph 100%", "sql", "from", "2", "1", "0", "", "Draining"),
        ("approval", "sql -> langgraph 100%", "langgraph", "to", "1", "0", "0", "", "Active"),
    }
