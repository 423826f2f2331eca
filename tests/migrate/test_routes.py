"""Routes that match reality: a failed start leaves no open route, `refresh()` removes the
route of a start that died, and `bridge migrate routes` lists and closes routes."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bridge
from bridge.cli import app
from bridge.errors import SerializationError
from bridge.migrate import router as router_module
from bridge.migrate.router import EngineState, Router
from tests import wfs


def _config(tmp_path: Path) -> Path:
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
    return tmp_path


async def test_a_failed_start_leaves_no_open_route(tmp_path: Path, ledger_path: str) -> None:
    router = await Router.connect(cwd=_config(tmp_path))
    try:
        with pytest.raises(SerializationError):
            await router.start(wfs.approval, object(), None, id="bad-args")
        assert router.route("bad-args") is None
        assert not any(row.open for row in router.status())
        # The id is free: a good start goes through and is routed.
        await router.start(wfs.approval, ledger_path, None, id="bad-args")
        assert router.engine_of("bad-args") == "langgraph"
    finally:
        await router.close()


async def test_a_start_refused_by_an_existing_run_keeps_its_route(
    tmp_path: Path, ledger_path: str
) -> None:
    router = await Router.connect(cwd=_config(tmp_path))
    try:
        langgraph = await router.client("langgraph")
        # A run with this id exists on the engine (started without the router) with other
        # arguments: the routed start is refused, and the route stays, since the run is real.
        await langgraph.start(wfs.approval, ledger_path, 5.0, id="taken")
        with pytest.raises(bridge.WorkflowIdConflictError):
            await router.start(wfs.approval, ledger_path, None, id="taken")
        assert router.route("taken").is_open  # type: ignore[union-attr]
    finally:
        await router.close()


async def test_refresh_removes_the_route_of_a_start_that_died(
    tmp_path: Path, ledger_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = await Router.connect(cwd=_config(tmp_path))
    try:
        # A router killed between writing the route and starting the run.
        router.table.claim("orphan", "approval", "langgraph")
        await router.start(wfs.approval, ledger_path, None, id="real")
        assert await router.refresh() == 0  # within the grace period: maybe still starting
        monkeypatch.setattr(router_module, "STARTING_GRACE_S", 0.0)
        assert await router.refresh() == 1
        assert router.route("orphan") is None and router.route("real") is not None
        rows = {row.engine: row for row in router.status()}
        assert rows["langgraph"].open == 1
        assert rows["sql"].state is EngineState.DRAINED
    finally:
        await router.close()


def test_migrate_routes_lists_and_closes(
    tmp_path: Path, ledger_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path)

    async def setup() -> None:
        router = await Router.connect(cwd=tmp_path)
        try:
            await router.start(wfs.approval, ledger_path, None, id="open-1")
            await router.start(wfs.approval, ledger_path, None, id="done-1")
            await router.signal("done-1", "approve", True)
            async with (await router.client("langgraph")).worker([wfs.approval]):
                await router.result("done-1", timeout=30)
            router.table.claim("ghost-1", "approval", "langgraph")
        finally:
            await router.close()

    asyncio.run(setup())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    listed = runner.invoke(app, ["migrate", "routes", "--json"])
    assert listed.exit_code == 0, listed.output
    rows: list[dict[str, Any]] = json.loads(listed.output)
    assert {r["workflow_id"]: r["status"] for r in rows} == {
        "open-1": "OPEN",
        "done-1": "OPEN",  # no watcher closed it: the CLI asks the engine when told to
        "ghost-1": "OPEN",
    }
    assert {r["engine"] for r in rows} == {"langgraph"}

    closed = runner.invoke(app, ["migrate", "routes", "--close", "done-1"])
    assert closed.exit_code == 0 and "COMPLETED" in closed.output, closed.output
    removed = runner.invoke(app, ["migrate", "routes", "--close", "ghost-1"])
    assert removed.exit_code == 0 and "has no such run" in removed.output, removed.output
    # In process the error is the exception (the console script prints it as one line).
    refused = runner.invoke(app, ["migrate", "routes", "--close", "open-1"])
    assert isinstance(refused.exception, bridge.ConfigError)
    assert "'open-1' is still WAITING" in str(refused.exception)

    still_open = runner.invoke(app, ["migrate", "routes", "--open"])
    assert still_open.exit_code == 0
    assert "open-1" in still_open.output and "done-1" not in still_open.output
    assert "ghost-1" not in still_open.output
