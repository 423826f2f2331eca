"""`bridge ui`'s JSON over langgraph as well (the browser tests cover sql and Temporal), and
without migration rules: the same views, whatever the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import bridge
from tests.conftest import fast_sql
from tests.ui import ui_wfs
from tests.ui.conftest import UiServer, write_toml

pytestmark = pytest.mark.timeout(120)


async def test_runs_and_a_run_of_a_langgraph_engine_during_a_migration(
    tmp_path: Path, langgraph_settings: dict[str, Any], ui_server: UiServer
) -> None:
    settings = {
        "backend": "sql",
        "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db"),
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
        "engines": {"graph": langgraph_settings},
        "migrate": {"ui_nap": {"from": "sql", "to": "graph", "ramp": 100}},
    }
    write_toml(tmp_path, settings)
    async with await bridge.connect(settings) as client:
        await client.start(ui_wfs.nap, 0.05, id="ui-nap-graph")
        async with (await client.router.client("graph")).worker([ui_wfs.nap]):
            assert await client.result("ui-nap-graph", timeout=30) == "rested"
    ui_server.start()

    runs = httpx.get(f"{ui_server.url}/api/runs", params={"engine": "graph"}).json()
    assert [(r["id"], r["engine"], r["status"]) for r in runs["runs"]] == [
        ("ui-nap-graph", "graph", "COMPLETED")
    ]
    run = httpx.get(f"{ui_server.url}/api/run", params={"id": "ui-nap-graph"}).json()
    assert (run["engine"], run["backend"], run["output"]) == ("graph", "langgraph", "rested")
    assert [(b["kind"], b["status"]) for b in run["bars"]] == [("timer", "completed")]
    assert run["input"] == {"seconds": 0.05}
    migrations = httpx.get(f"{ui_server.url}/api/migrations").json()
    (nap,) = migrations["workflows"]
    assert (nap["from"], nap["to"], nap["ramp"]) == ("sql", "graph", 100.0)
    assert {e["engine"]: e["state"] for e in nap["engines"]} == {
        "sql": "Drained",
        "graph": "Active",
    }
    missing = httpx.get(f"{ui_server.url}/api/run", params={"id": "no-such-run"})
    assert missing.status_code == 404


async def test_a_single_engine_without_rules(tmp_path: Path, ui_server: UiServer) -> None:
    settings = {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/journal.db")}
    write_toml(tmp_path, settings)
    async with await bridge.connect(settings) as client, client.worker([ui_wfs.nap]):
        for n in range(3):
            await client.execute(ui_wfs.nap, 0.0, id=f"ui-nap-{n}", timeout=30)
    ui_server.start()
    page = httpx.get(f"{ui_server.url}/api/runs", params={"size": 2, "page": 1}).json()
    assert page["total"] == 3 and [r["id"] for r in page["runs"]] == ["ui-nap-0"]
    assert page["counts"]["COMPLETED"] == 3 and page["engines"][0]["name"] == "sql"
    bad = httpx.get(f"{ui_server.url}/api/runs", params={"where": "amount >"})
    assert bad.status_code == 400
    assert httpx.get(f"{ui_server.url}/api/migrations").json()["migrating"] is False
