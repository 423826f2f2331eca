"""Bad input gives a clear error naming what is at fault, and loses nothing already journaled."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.history import EventType
from tests.conftest import fast_sql


@bridge.activity
async def bad_input_shout(text: str) -> str:
    return text.upper()


@bridge.workflow
async def bad_input_echo(ctx: bridge.Context, text: str) -> str:
    return await ctx.run(bad_input_shout, text)


@bridge.workflow
async def bad_input_other(ctx: bridge.Context, text: str) -> str:
    return text


def plain_helper(text: str) -> str:
    """Not decorated: ctx.run must refuse it."""
    return text


@bridge.workflow
async def bad_input_runs_plain(ctx: bridge.Context) -> str:
    return await ctx.run(plain_helper, "x")  # type: ignore[arg-type]


async def plain_workflow(ctx: bridge.Context) -> str:
    """Not decorated: client.start must refuse it."""
    return "never"


@pytest.fixture(autouse=True)
def _no_bridge_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No BRIDGE_* variable or config file of the caller leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _settings(url: str, **sql: Any) -> bridge.Settings:
    return bridge.load_settings(
        {"backend": "sql", "sql": {**fast_sql(url), **sql}}, cwd=Path.cwd(), environ={}
    )


async def _completed_run(client: bridge.Client, id: str) -> tuple[Any, list[bridge.HistoryEvent]]:
    async with client.worker([bad_input_echo]):
        result = await client.execute(bad_input_echo, "hello", id=id, timeout=20)
    assert result == "HELLO"
    return result, await client.history(id)


# -- unknown backend ----------------------------------------------------------------------
async def test_unknown_backend_lists_the_installed_ones() -> None:
    with pytest.raises(bridge.UnknownBackendError) as info:
        await bridge.connect({"backend": "nope"})
    message = str(info.value)
    assert "'nope'" in message
    assert "sql" in message and "sql" in info.value.installed
    assert isinstance(info.value, bridge.ConfigError)


# -- unknown or bad settings ----------------------------------------------------------------
def test_unknown_top_level_key_in_bridge_toml(tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text('backend = "sql"\nbakend = "sql"\n')
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={})
    message = str(info.value)
    assert "unknown setting `bakend`" in message
    assert str(toml) in message
    assert "backend" in message  # the allowed keys are listed


def test_unknown_key_inside_sql_section(tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text('[sql]\nurl = "sqlite:///x.db"\nlease_secs = 3\n')
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={})
    message = str(info.value)
    assert "`sql.lease_secs`" in message
    assert str(toml) in message
    assert "lease_seconds" in message  # what is allowed in [sql]


def test_unknown_environment_variable(tmp_path: Path) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_SQL_NOPE": "1"})
    message = str(info.value)
    assert "BRIDGE_SQL_NOPE" in message
    assert "BRIDGE_SQL_URL" in message  # the allowed names are listed


def test_bad_durability_names_the_allowed_values(tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text('[sql]\ndurability = "FAST"\n')
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={})
    message = str(info.value)
    assert "'FAST'" in message and "`sql.durability`" in message
    assert "FULL" in message and "NORMAL" in message
    assert str(toml) in message


def test_bad_durability_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_SQL_DURABILITY": "FAST"})
    message = str(info.value)
    assert "BRIDGE_SQL_DURABILITY" in message
    assert "FULL" in message and "NORMAL" in message


def test_unknown_key_in_pyproject_tool_bridge(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[tool.bridge]\nbackend = "sql"\nworkflow = []\n')
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={})
    message = str(info.value)
    assert "unknown setting `workflow`" in message
    assert "[tool.bridge]" in message and str(pyproject) in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text("backend = \n")
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={})
    assert str(toml) in str(info.value) and "TOML" in str(info.value)


# -- unknown workflow id --------------------------------------------------------------------
@pytest.mark.parametrize("action", ["describe", "result", "signal", "cancel", "history"])
async def test_unknown_workflow_id(client: bridge.Client, action: str) -> None:
    calls = {
        "describe": lambda: client.describe("no-such-run"),
        "result": lambda: client.result("no-such-run", timeout=5),
        "signal": lambda: client.signal("no-such-run", "go", 1),
        "cancel": lambda: client.cancel("no-such-run"),
        "history": lambda: client.history("no-such-run"),
    }
    with pytest.raises(bridge.WorkflowNotFoundError) as info:
        await calls[action]()
    assert "'no-such-run'" in str(info.value)
    assert info.value.workflow_id == "no-such-run"
    # Nothing was created by the failed call (the Temporal dev server is shared by the whole
    # session, so other tests' runs may be listed too).
    assert "no-such-run" not in [d.id for d in await client.list()]


# -- a finished workflow --------------------------------------------------------------------
@pytest.mark.parametrize("action", ["signal", "cancel"])
async def test_signal_or_cancel_a_completed_workflow(client: bridge.Client, action: str) -> None:
    result, history = await _completed_run(client, "closed-1")
    with pytest.raises(bridge.WorkflowClosedError) as info:
        if action == "signal":
            await client.signal("closed-1", "go", {"late": True})
        else:
            await client.cancel("closed-1")
    message = str(info.value)
    assert "'closed-1'" in message and action in message and "completed" in message
    desc = await client.describe("closed-1")
    assert desc.status is bridge.Status.COMPLETED
    assert await client.result("closed-1", timeout=5) == result
    assert await client.history("closed-1") == history


# -- undecorated functions ------------------------------------------------------------------
async def test_starting_an_undecorated_function(client: bridge.Client) -> None:
    with pytest.raises(bridge.NotRegisteredError) as info:
        await client.start(plain_workflow, id="plain-1")  # type: ignore[arg-type]
    assert "plain_workflow" in str(info.value)
    assert "@bridge.workflow" in str(info.value)
    with pytest.raises(bridge.WorkflowNotFoundError):
        await client.describe("plain-1")


async def test_running_an_undecorated_activity_fails_the_run(client: bridge.Client) -> None:
    async with client.worker([bad_input_runs_plain]):
        with pytest.raises(bridge.WorkflowFailedError) as info:
            await client.execute(bad_input_runs_plain, id="plain-2", timeout=20)
    message = str(info.value)
    assert "plain_helper" in message and "@bridge.activity" in message
    assert info.value.error_type.endswith("NotRegisteredError")
    types = [e.type for e in await client.history("plain-2")]
    assert types[-1] is EventType.WORKFLOW_FAILED


# -- id conflict ----------------------------------------------------------------------------
async def test_id_used_by_another_workflow(client: bridge.Client) -> None:
    first = await client.start(bad_input_echo, "a", id="shared-id")
    assert first.created
    with pytest.raises(bridge.WorkflowIdConflictError) as info:
        await client.start(bad_input_other, "b", id="shared-id")
    message = str(info.value)
    assert "'shared-id'" in message
    assert "bad_input_echo" in message and "bad_input_other" in message
    desc = await client.describe("shared-id")
    assert desc.name == "bad_input_echo" and desc.status is bridge.Status.PENDING
    async with client.worker([bad_input_echo]):
        assert await client.result("shared-id", timeout=20) == "A"


# -- the database file ----------------------------------------------------------------------
async def test_corrupt_database_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    garbage = bytes(range(256)) * 64 + b"definitely not SQLite\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(bridge.StorageError) as info:
        await bridge.connect(_settings(f"sqlite:///{path}"))
    message = str(info.value)
    assert str(path) in message
    assert "corrupt" in message
    assert path.read_bytes() == garbage


async def test_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    client = await bridge.connect(_settings(f"sqlite:///{path}", busy_timeout_ms=200))
    try:
        result, history = await _completed_run(client, "done-1")
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(bridge.StorageError) as info:
                await client.start(bad_input_echo, "again", id="while-locked")
            message = str(info.value)
            assert "locked" in message and str(path) in message
            # WAL: readers are not blocked by the writer holding the lock.
            assert (await client.describe("done-1")).status is bridge.Status.COMPLETED
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await client.result("done-1", timeout=5) == result
        assert await client.history("done-1") == history
        with pytest.raises(bridge.WorkflowNotFoundError):
            await client.describe("while-locked")
        handle = await client.start(bad_input_echo, "again", id="while-locked")
        assert handle.created
        async with client.worker([bad_input_echo]):
            assert await handle.result(timeout=20) == "AGAIN"
        assert await client.history("done-1") == history
    finally:
        await client.close()


async def test_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    client = await bridge.connect(_settings(f"sqlite:///{path}"))
    await client.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE bridge_meta SET value = '999' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(bridge.StorageError) as info:
        await bridge.connect(_settings(f"sqlite:///{path}"))
    message = str(info.value)
    assert "999" in message and "upgrade" in message
    with sqlite3.connect(path) as db:
        (version,) = db.execute(
            "SELECT value FROM bridge_meta WHERE key = 'schema_version'"
        ).fetchone()
    db.close()
    assert version == "999"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
async def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(bridge.StorageError) as info:
        await bridge.connect(_settings(url))
    message = str(info.value)
    assert "in-memory" in message and "durable" in message
    assert "sqlite:///PATH" in message
