"""Settings: defaults < pyproject [tool.bridge] < bridge.toml < BRIDGE_* env < explicit values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import bridge
from bridge.config import LangGraphSettings, SqlSettings, TemporalSettings

PYPROJECT = """\
[project]
name = "someapp"

[tool.bridge]
workflows = ["from.pyproject"]

[tool.bridge.sql]
url = "sqlite:///from-pyproject.db"
durability = "NORMAL"
lease_seconds = 1.0
poll_interval = 1.0
max_concurrency = 1
"""

BRIDGE_TOML = """\
workflows = ["from.toml"]

[sql]
lease_seconds = 2.0
poll_interval = 2.0
max_concurrency = 2
"""


def test_defaults(tmp_path: Path) -> None:
    settings = bridge.load_settings(cwd=tmp_path, environ={})
    assert settings == bridge.Settings()
    assert settings.backend == "sql"
    assert settings.workflows == []
    assert settings.sql == SqlSettings()
    assert settings.sql.url == "sqlite:///.bridge/bridge.db"
    assert settings.sql.durability == "FULL"
    assert settings.sql.busy_timeout_ms == 5000
    assert settings.temporal == TemporalSettings()
    assert settings.langgraph == LangGraphSettings()
    assert settings.backend_options == {}


def test_precedence_of_every_source(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "bridge.toml").write_text(BRIDGE_TOML)
    environ = {"BRIDGE_SQL_POLL_INTERVAL": "3", "BRIDGE_SQL_MAX_CONCURRENCY": "3"}
    settings = bridge.load_settings({"sql": {"max_concurrency": 4}}, cwd=tmp_path, environ=environ)
    sql = settings.sql
    assert sql.busy_timeout_ms == 5000  # default: set nowhere
    assert sql.url == "sqlite:///from-pyproject.db"  # pyproject only
    assert sql.durability == "NORMAL"  # pyproject only
    assert sql.lease_seconds == 2.0  # bridge.toml beats pyproject
    assert settings.workflows == ["from.toml"]  # bridge.toml beats pyproject (lists replace)
    assert sql.poll_interval == 3.0  # env beats bridge.toml
    assert sql.max_concurrency == 4  # explicit beats env
    assert settings.backend == "sql"


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ((), 30.0),
        (("pyproject",), 1.0),
        (("pyproject", "toml"), 2.0),
        (("toml",), 2.0),
        (("pyproject", "toml", "env"), 3.0),
        (("env",), 3.0),
        (("pyproject", "toml", "env", "explicit"), 4.0),
        (("pyproject", "explicit"), 4.0),
    ],
)
def test_one_key_through_the_layers(
    tmp_path: Path, sources: tuple[str, ...], expected: float
) -> None:
    if "pyproject" in sources:
        (tmp_path / "pyproject.toml").write_text("[tool.bridge.sql]\nlease_seconds = 1.0\n")
    if "toml" in sources:
        (tmp_path / "bridge.toml").write_text("[sql]\nlease_seconds = 2.0\n")
    environ = {"BRIDGE_SQL_LEASE_SECONDS": "3"} if "env" in sources else {}
    overrides = {"sql": {"lease_seconds": 4.0}} if "explicit" in sources else None
    settings = bridge.load_settings(overrides, cwd=tmp_path, environ=environ)
    assert settings.sql.lease_seconds == expected


def test_sections_merge_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[sql]\nurl = "sqlite:///a.db"\n\n[temporal]\nnamespace = "prod"\n'
    )
    settings = bridge.load_settings(
        {"sql": {"durability": "NORMAL"}},
        cwd=tmp_path,
        environ={"BRIDGE_TEMPORAL_ADDRESS": "temporal:7233"},
    )
    assert settings.sql.url == "sqlite:///a.db" and settings.sql.durability == "NORMAL"
    assert settings.temporal.namespace == "prod"
    assert settings.temporal.address == "temporal:7233"
    assert settings.temporal.task_queue == "bridge"  # default kept


def test_pyproject_without_tool_bridge_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.ruff]\nfoo = 1\n')
    assert bridge.load_settings(cwd=tmp_path, environ={}) == bridge.Settings()


def test_explicit_settings_object_is_used_as_is(tmp_path: Path) -> None:
    settings = bridge.Settings(backend="sql", sql=SqlSettings(url="sqlite:///x.db"))
    assert settings.sql.url == "sqlite:///x.db"
    with pytest.raises(ValidationError, match="frozen"):
        settings.sql.url = "sqlite:///y.db"  # type: ignore[misc]


# -- BRIDGE_CONFIG --------------------------------------------------------------------------
def test_bridge_config_points_at_a_file(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text("[sql]\nlease_seconds = 2.0\npoll_interval = 2.0\n")
    other = tmp_path / "conf" / "prod.toml"
    other.parent.mkdir()
    other.write_text('[sql]\nlease_seconds = 7.0\nurl = "sqlite:///prod.db"\n')
    settings = bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_CONFIG": str(other)})
    assert settings.sql.lease_seconds == 7.0
    assert settings.sql.url == "sqlite:///prod.db"
    # The file named by BRIDGE_CONFIG replaces ./bridge.toml; it is not read as well.
    assert settings.sql.poll_interval == 0.2


def test_bridge_config_still_loses_to_env_and_beats_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.bridge.sql]\nlease_seconds = 1.0\n")
    other = tmp_path / "other.toml"
    other.write_text("[sql]\nlease_seconds = 7.0\npoll_interval = 7.0\n")
    settings = bridge.load_settings(
        cwd=tmp_path,
        environ={"BRIDGE_CONFIG": str(other), "BRIDGE_SQL_POLL_INTERVAL": "0.5"},
    )
    assert settings.sql.lease_seconds == 7.0
    assert settings.sql.poll_interval == 0.5


def test_bridge_config_naming_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_CONFIG": str(missing)})
    assert "BRIDGE_CONFIG" in str(info.value) and str(missing) in str(info.value)


def test_errors_in_the_bridge_config_file_name_it(tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[sql]\nlease = 1\n")
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_CONFIG": str(other)})
    assert "`sql.lease`" in str(info.value) and str(other) in str(info.value)


# -- environment variables --------------------------------------------------------------------
def test_bridge_workflows_is_a_comma_list(tmp_path: Path) -> None:
    settings = bridge.load_settings(
        cwd=tmp_path, environ={"BRIDGE_WORKFLOWS": "myapp.flows,myapp.other"}
    )
    assert settings.workflows == ["myapp.flows", "myapp.other"]
    single = bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_WORKFLOWS": "myapp.flows"})
    assert single.workflows == ["myapp.flows"]
    empty = bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_WORKFLOWS": ""})
    assert empty.workflows == []
    trailing = bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_WORKFLOWS": "a.b,,c,"})
    assert trailing.workflows == ["a.b", "c"]


def test_bridge_workflows_ignores_spaces_around_commas(tmp_path: Path) -> None:
    settings = bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_WORKFLOWS": "a.b, c.d ,e"})
    assert settings.workflows == ["a.b", "c.d", "e"]


def test_bridge_workflows_env_beats_toml(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text('workflows = ["from.toml"]\n')
    settings = bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_WORKFLOWS": "from.env"})
    assert settings.workflows == ["from.env"]


def test_bridge_backend_options_is_json(tmp_path: Path) -> None:
    options = {"region": "eu", "retries": 3, "nested": {"tls": True}, "hosts": ["a", "b"]}
    settings = bridge.load_settings(
        cwd=tmp_path, environ={"BRIDGE_BACKEND_OPTIONS": json.dumps(options)}
    )
    assert settings.backend_options == options


def test_bridge_backend_options_bad_json_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_BACKEND_OPTIONS": "{region: eu"})
    assert "BRIDGE_BACKEND_OPTIONS" in str(info.value) and "JSON" in str(info.value)


def test_bridge_backend_options_not_an_object_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_BACKEND_OPTIONS": "[1, 2]"})
    assert "BRIDGE_BACKEND_OPTIONS" in str(info.value)
    assert "`backend_options`" in str(info.value)


def test_env_values_are_coerced_to_their_types(tmp_path: Path) -> None:
    settings = bridge.load_settings(
        cwd=tmp_path,
        environ={
            "BRIDGE_BACKEND": "sql",
            "BRIDGE_SQL_URL": "sqlite:///env.db",
            "BRIDGE_SQL_LEASE_SECONDS": "2.5",
            "BRIDGE_SQL_MAX_CONCURRENCY": "7",
            "BRIDGE_SQL_DURABILITY": "NORMAL",
            "BRIDGE_TEMPORAL_TLS": "true",
            "BRIDGE_LANGGRAPH_POLL_INTERVAL": "0.5",
        },
    )
    assert settings.sql.url == "sqlite:///env.db"
    assert settings.sql.lease_seconds == 2.5
    assert settings.sql.max_concurrency == 7
    assert settings.sql.durability == "NORMAL"
    assert settings.temporal.tls is True
    assert settings.langgraph.poll_interval == 0.5


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings(cwd=tmp_path, environ={"BRIDGE_SQL_LEASE_SECONDS": "0"})
    assert "BRIDGE_SQL_LEASE_SECONDS" in str(info.value)
    assert "`sql.lease_seconds`" in str(info.value)


def test_process_switches_are_not_settings(tmp_path: Path) -> None:
    environ = {
        "BRIDGE_DISABLE_PLUGIN_AUTOLOAD": "1",
        "BRIDGE_TEST_PG_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "BRIDGE_TEST_ANYTHING_ELSE": "x",
        "NOT_BRIDGE_SQL_NOPE": "ignored",
        "PATH": "/usr/bin",
    }
    assert bridge.load_settings(cwd=tmp_path, environ=environ) == bridge.Settings()


def test_unknown_env_setting_is_still_an_error_next_to_switches(tmp_path: Path) -> None:
    environ = {"BRIDGE_DISABLE_PLUGIN_AUTOLOAD": "1", "BRIDGE_BACKEND_OPTION": "{}"}
    with pytest.raises(bridge.ConfigError, match="BRIDGE_BACKEND_OPTION;"):
        bridge.load_settings(cwd=tmp_path, environ=environ)


def test_explicit_overrides_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        bridge.load_settings({"sql": {"durability": "SOMETIMES"}}, cwd=tmp_path, environ={})
    assert "explicit settings" in str(info.value)
    assert "FULL" in str(info.value) and "NORMAL" in str(info.value)
