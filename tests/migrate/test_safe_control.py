"""Safe control of a live migration: `bridge migrate set` edits one [migrate.WORKFLOW] table
validated and atomically, `bridge config check` says what is wrong with a file, `paused`
stops new runs moving, and a router that reloads a bad edit keeps its last good rules
instead of refusing starts."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bridge.cli import app
from bridge.errors import ConfigError
from bridge.migrate.router import EngineState, Router
from tests import wfs

runner = CliRunner()

CONFIG = """\
# the team's settings: comments and other tables must survive an edit
backend = "sql"

[sql]
poll_interval = 0.1   # fast polls

[migrate.approval]
from = "sql"   # the old engine
to = "langgraph"
ramp = 10

[migrate."billing.v2"]
from = "sql"
to = "langgraph"
ramp = 0
"""


def _set(path: Path, *args: str) -> Any:
    return runner.invoke(app, ["migrate", "set", *args, "--config", str(path)])


def _explicit(tmp_path: Path, sql: dict[str, Any], langgraph: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": "sql",
        "sql": sql["sql"],
        "langgraph": langgraph["langgraph"],
        "router": {"url": f"sqlite:///{tmp_path}/routes.db"},
    }


def test_set_edits_one_table_and_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG)
    done = _set(path, "approval", "--ramp", "50")
    assert done.exit_code == 0, done.output
    assert "[migrate.approval] sql -> langgraph 50%" in done.output
    assert path.read_text() == CONFIG.replace("ramp = 10", "ramp = 50")

    assert _set(path, "approval", "--pause").exit_code == 0
    assert _set(path, "billing.v2", "--shadow", "on").exit_code == 0
    text = path.read_text()
    assert "# the team's settings" in text and "poll_interval = 0.1   # fast polls" in text
    assert 'from = "sql"   # the old engine' in text
    rules = tomllib.loads(text)["migrate"]
    assert rules["approval"] == {"from": "sql", "to": "langgraph", "ramp": 50, "paused": True}
    assert rules["billing.v2"] == {"from": "sql", "to": "langgraph", "ramp": 0, "shadow": True}
    # The key added to [migrate.approval] went into that table, before the next one.
    assert text.index("paused = true") < text.index('[migrate."billing.v2"]')

    # A new rule is appended; no temporary file is left beside the configuration.
    done = _set(path, "debtor", "--from", "sql", "--to", "langgraph", "--ramp", "5")
    assert done.exit_code == 0, done.output
    assert tomllib.loads(path.read_text())["migrate"]["debtor"]["ramp"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge.toml"]
    assert _set(path, "approval", "--resume").exit_code == 0
    assert tomllib.loads(path.read_text())["migrate"]["approval"]["paused"] is False


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["approval", "--ramp", "150"], "ramp: Input should be less than or equal to 100"),
        (["approval", "--ramp", "-1"], "ramp: Input should be greater than or equal to 0"),
        (["approval", "--to", "nowhere"], "to = 'nowhere' names no engine"),
        (["newflow", "--ramp", "5"], "a new rule needs --from and --to"),
        (["approval"], "nothing to change"),
    ],
)
def test_set_refuses_a_bad_rule_and_leaves_the_file_alone(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG)
    done = _set(path, *args)
    assert done.exit_code != 0
    assert isinstance(done.exception, ConfigError)
    assert complaint in str(done.exception)
    assert path.read_text() == CONFIG


def test_set_refuses_a_rule_it_cannot_edit_in_place(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    inline = '[migrate]\napproval = { from = "sql", to = "langgraph", ramp = 1 }\n'
    path.write_text(inline)
    done = _set(path, "approval", "--ramp", "2")
    assert isinstance(done.exception, ConfigError)
    assert "write it as a table" in str(done.exception)
    assert path.read_text() == inline


def test_config_check_says_ok_or_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(CONFIG)
    done = runner.invoke(app, ["config", "check", str(good)])
    assert done.exit_code == 0 and done.output.strip() == f"{good}: ok"

    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("ramp = 10", "ramp = 150").replace("[sql]", "[sql]\nurll = 1"))
    done = runner.invoke(app, ["config", "check", str(bad)])
    assert done.exit_code == 1
    output = " ".join(done.output.split())
    assert "bad value 150 for `migrate.approval.ramp`" in output
    assert "unknown setting `sql.urll`" in output

    broken = tmp_path / "broken.toml"
    broken.write_text("[migrate.approval\n")
    done = runner.invoke(app, ["config", "check", str(broken)])
    assert done.exit_code == 1 and "not valid TOML" in done.output

    nowhere = tmp_path / "nowhere.toml"
    nowhere.write_text('[migrate.approval]\nfrom = "sql"\nto = "nope"\n')
    done = runner.invoke(app, ["config", "check", str(nowhere)])
    assert done.exit_code == 1 and "to = 'nope' names no engine" in done.output


def test_status_warns_when_the_file_is_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.toml").write_text(CONFIG.replace("ramp = 10", "ramp = 150"))
    done = runner.invoke(app, ["migrate", "status"])
    assert done.exit_code == 1
    output = " ".join(done.output.split())
    assert "warning:" in output and "migrate.approval.ramp" in output
    assert "routers that reload keep the rules they loaded before" in output


async def test_a_bad_edit_under_hot_reload_refuses_no_start(
    tmp_path: Path,
    sql_settings: dict[str, Any],
    langgraph_settings: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[migrate.approval]\nfrom = "sql"\nto = "langgraph"\nramp = 100\n')
    explicit = _explicit(tmp_path, sql_settings, langgraph_settings)
    router = await Router.connect(explicit, cwd=tmp_path, reload_every=0)
    try:
        await router.start(wfs.approval, "unused", None, id="before")
        assert router.engine_of("before") == "langgraph" and router.warning is None

        # A hand edit gone wrong, as a live router rereads it on every start.
        path.write_text('[migrate.approval]\nfrom = "sql"\nto = "langgraph"\nramp = 150\n')
        with caplog.at_level(logging.WARNING, logger="bridge.migrate"):
            for n in range(3):
                await router.start(wfs.approval, "unused", None, id=f"during-{n}")
        # No start refused, and the old rule (ramp 100) still decides.
        assert [router.engine_of(f"during-{n}") for n in range(3)] == ["langgraph"] * 3
        assert router.rule("approval").ramp == 100  # type: ignore[union-attr]
        assert router.warning is not None and "migrate.approval.ramp" in router.warning
        warned = [r for r in caplog.records if "could not be reloaded" in r.getMessage()]
        assert len(warned) == 1  # loud once, not once per start

        # Not TOML at all: the same.
        path.write_text("[migrate.approval\n")
        await router.start(wfs.approval, "unused", None, id="garbled")
        assert router.engine_of("garbled") == "langgraph"
        assert "not valid TOML" in (router.warning or "")

        # Fixed: the new rule applies and the warning is gone.
        path.write_text('[migrate.approval]\nfrom = "sql"\nto = "langgraph"\nramp = 0\n')
        await router.start(wfs.approval, "unused", None, id="after")
        assert router.engine_of("after") == "sql" and router.warning is None
    finally:
        await router.close()


async def test_pause_keeps_the_ramp_and_moves_no_new_runs(
    tmp_path: Path, sql_settings: dict[str, Any], langgraph_settings: dict[str, Any]
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[migrate.approval]\nfrom = "sql"\nto = "langgraph"\nramp = 0\n')
    explicit = _explicit(tmp_path, sql_settings, langgraph_settings)
    router = await Router.connect(explicit, cwd=tmp_path)
    try:
        assert _set(path, "approval", "--ramp", "100").exit_code == 0
        router.reload()
        await router.start(wfs.approval, "unused", None, id="ramped")
        assert router.engine_of("ramped") == "langgraph"

        assert _set(path, "approval", "--pause").exit_code == 0
        router.reload()
        rule = router.rule("approval")
        assert rule is not None and rule.paused and rule.ramp == 100
        await router.start(wfs.approval, "unused", None, id="paused")
        assert router.engine_of("paused") == "sql"
        states = {row.engine: row.state for row in router.status()}
        # langgraph gets no new runs but still holds "ramped".
        assert states == {"sql": EngineState.ACTIVE, "langgraph": EngineState.DRAINING}

        assert _set(path, "approval", "--resume").exit_code == 0
        router.reload()
        await router.start(wfs.approval, "unused", None, id="resumed")
        assert router.engine_of("resumed") == "langgraph"
    finally:
        await router.close()
