"""Typed settings from bridge.toml, `[tool.bridge]` in pyproject.toml and BRIDGE_* variables.

Later sources win: defaults < pyproject.toml < bridge.toml < environment < explicit values.
Unknown keys and bad values are errors that name the key, where it came from and what is
allowed, because a silently ignored typo in a durability setting is a lost-data bug.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from bridge._settings_base import Section as _Section
from bridge.errors import ConfigError

__all__ = [
    "AgentsSettings",
    "EncryptionSettings",
    "JournalSettings",
    "LangGraphSettings",
    "RouterSettings",
    "Settings",
    "SqlSettings",
    "TemporalSettings",
    "load_settings",
]

ENV_PREFIX = "BRIDGE_"
CONFIG_PATH_ENV = "BRIDGE_CONFIG"
# BRIDGE_* variables that are switches of the process, not settings. BRIDGE_UI_TOKEN is
# `bridge ui`'s secret (bridge/ui/auth.py): read by that command only, never a setting.
_NOT_SETTINGS = frozenset({CONFIG_PATH_ENV, "BRIDGE_DISABLE_PLUGIN_AUTOLOAD", "BRIDGE_UI_TOKEN"})
_NOT_SETTINGS_PREFIX = "BRIDGE_TEST_"  # the test suite's own knobs
_TABLE_ENTRY_POINTS = "bridge.settings"


def _feature_table(name: str) -> type[_Section]:
    """The model of settings table `[name.KEY]` that a feature package declares in the
    `bridge.settings` entry-point group: the migration router declares `[migrate.WORKFLOW]`
    (its rules) itself, so the core validates every key in one pass without knowing what a
    feature's settings mean."""
    found = importlib.metadata.entry_points(group=_TABLE_ENTRY_POINTS, name=name)
    for ep in found:
        model: type[_Section] = ep.load()
        return model
    raise ConfigError(
        f"no package declares the settings table [{name}] (entry-point group "
        f"{_TABLE_ENTRY_POINTS!r}); reinstall durable-bridge: pip install -e ."
    )


class JournalSettings(_Section):
    """What every journal-keeping backend (`bridge.journal`: sql, langgraph) is set with.
    `durability`: FULL survives a power cut; NORMAL survives a killed process but may lose
    the last commits on power loss (SQLite only)."""

    url: str
    durability: Literal["FULL", "NORMAL"] = "FULL"
    lease_seconds: float = Field(30.0, gt=0)
    poll_interval: float = Field(0.2, gt=0)
    max_concurrency: int = Field(1000, gt=0)
    busy_timeout_ms: int = Field(5000, ge=0)


class SqlSettings(JournalSettings):
    """The embedded executor: a journal on SQLite or PostgreSQL."""

    url: str = "sqlite:///.bridge/bridge.db"
    # Publish bridge.workflow.completed.v1 / failed.v1 to the bus's SQL outbox tables in
    # this database, in the same transaction as the journal change that ends the run.
    outbox: bool = False


class TemporalSettings(_Section):
    """A Temporal server. `heartbeat_timeout` (seconds) applies to activities that declare
    none: the activity shim heartbeats on its own, so an attempt whose worker died is
    retried after this long instead of after its whole start-to-close timeout.
    `eager_start` asks for Temporal's eager workflow start: when this process runs a worker
    on the task queue, the first workflow task comes back with the start call instead of
    through the server's task matching (temporalio leaves the flag off otherwise).
    `sticky_schedule_to_start_timeout` (seconds, Temporal's 10 by default) is how long a
    run's next workflow task waits for the worker that has it cached before any worker may
    take it: after a worker dies, its runs resume that much later. Lower it for faster
    recovery at the price of more full replays when a busy worker is slow to poll."""

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "bridge"
    tls: bool = False
    tls_server_root_ca: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    connect_timeout: float = Field(5.0, gt=0)
    heartbeat_timeout: float = Field(60.0, gt=0)
    eager_start: bool = True
    sticky_schedule_to_start_timeout: float = Field(10.0, gt=0)


class LangGraphSettings(JournalSettings):
    """The LangGraph backend: LangGraph's checkpointer (SqliteSaver, or PostgresSaver for a
    postgresql:// URL) plus the bridge's run, timer and signal tables in the same database.
    `durability`, leases and the busy timeout mean what they mean for `sql`."""

    url: str = "sqlite:///.bridge/langgraph.db"


class TracingSettings(_Section):
    """OpenTelemetry spans for starts and step attempts (`bridge.tracing`). `enabled` None
    means on whenever `opentelemetry-api` is importable; spans go to the application's
    tracer provider, so nothing is exported until the application configures one."""

    enabled: bool | None = None
    tracer: str = "durable-bridge"


class EncryptionSettings(_Section):
    """Payload encryption at rest (`bridge.encryption`): `keys` maps a key id to a 256-bit
    AES key, base64 (`"base64:..."` or bare) or `"env:NAME"` naming an environment variable
    that holds it; `current` is the id new payloads are encrypted with, the others only
    decrypt (rotation). No keys: encryption off. From the environment,
    BRIDGE_ENCRYPTION_KEYS is a JSON object. Values are secrets: errors never print them."""

    keys: dict[str, SecretStr] = Field(default_factory=dict)
    current: str | None = None

    @field_validator("keys", mode="before")
    @classmethod
    def _keys_from_json(cls, value: Any) -> Any:
        # BRIDGE_ENCRYPTION_KEYS arrives as text; every other source gives a table.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("must be a JSON object of key id -> key") from None
        return value


class AgentsSettings(_Section):
    """Worker-side settings of the OpenAI Agents adapter (`adapters.openai_agents`): how
    durable model calls are retried (rate limits, overloaded servers) and timed out, which
    OpenAI-compatible endpoint and default model they use, and where conversation blobs
    live (None: next to the journal). Here, not in the adapter, so `[agents]` in bridge.toml
    and BRIDGE_AGENTS_* variables configure a worker like every other setting."""

    model_timeout: float | None = Field(120.0, gt=0)
    model_max_attempts: int = Field(5, ge=0)
    model_initial_interval: float = Field(1.0, gt=0)
    model_backoff: float = Field(2.0, ge=1)
    model_max_interval: float = Field(30.0, gt=0)
    base_url: str | None = None
    use_responses: bool | None = None
    default_model: str | None = None
    blob_url: str | None = None


class RouterSettings(_Section):
    """The migration router's routing table: which engine owns each workflow id. Every
    process that starts or signals migrating runs must share it (a SQLite file on one
    host, a postgresql:// URL across hosts)."""

    url: str = "sqlite:///.bridge/routes.db"
    busy_timeout_ms: int = Field(5000, ge=0)
    #: Seconds between re-reads of the `[migrate.*]` rules by a long-lived routing client
    #: (`bridge.connect()` in a service), so `bridge migrate set` reaches it without a
    #: restart; None reads them once.
    reload_every: float | None = Field(None, ge=0)


# Declared by bridge.migrate (bridge/migrate/rule.py); looked up, not imported, so the core
# names no feature.
_MigrationRule = _feature_table("migrate")


class Settings(_Section):
    backend: str = "sql"
    workflows: list[str] = Field(default_factory=list)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    langgraph: LangGraphSettings = Field(default_factory=LangGraphSettings)
    agents: AgentsSettings = Field(default_factory=AgentsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    # Options for third-party backends, handed to them unvalidated (they validate their own).
    backend_options: dict[str, Any] = Field(default_factory=dict)
    router: RouterSettings = Field(default_factory=RouterSettings)
    # [migrate.WORKFLOW] tables: the migration router's rules, one per workflow type.
    migrate: dict[str, _MigrationRule] = Field(default_factory=dict)  # type: ignore[valid-type]
    # [engines.NAME] tables: named engines for the router, each a settings mapping laid over
    # these settings (`backend` defaults to NAME, so `sql` or `langgraph` need no table).
    engines: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def engine(self, name: str) -> Settings:
        """The settings the router connects engine `name` with."""
        override = dict(self.engines.get(name, {}))
        for key in ("migrate", "engines"):
            if key in override:
                raise ConfigError(
                    f"[engines.{name}] sets `{key}`; an engine's table holds only its "
                    f"backend's settings (backend, sql, langgraph, temporal, ...)"
                )
        merged = self.model_dump(exclude={"migrate", "engines"})
        origin: dict[str, str] = {}
        _merge(merged, {"backend": name, **override}, origin, f"[engines.{name}]")
        try:
            return Settings.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(f"engine {name!r}: {_describe(exc, origin)}") from None


_SECTIONS: dict[str, type[_Section]] = {
    "sql": SqlSettings,
    "temporal": TemporalSettings,
    "langgraph": LangGraphSettings,
    "agents": AgentsSettings,
    "router": RouterSettings,
    "tracing": TracingSettings,
    "encryption": EncryptionSettings,
}
# Sections that are tables of tables, keyed by a name of the user's (`[migrate.WORKFLOW]`).
_TABLES: dict[str, type[_Section]] = {"migrate": _MigrationRule}
# Top-level settings given as JSON in their BRIDGE_* variable.
_JSON_ENV = frozenset({"backend_options", "migrate", "engines"})


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    parts = [str(p) for p in loc[:-1]]
    while parts:
        part = parts.pop(0)
        if part in _TABLES:
            model = _TABLES[part]
            parts = parts[1:]  # the user's name (the workflow) is not a setting
        elif part in _SECTIONS:
            model = _SECTIONS[part]
        else:
            return []
    return sorted(f.alias or n for n, f in model.model_fields.items())


def _describe(exc: ValidationError, origin: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        where = origin.get(key) or origin.get(key.split(".")[0], "configuration")
        if err["type"] == "extra_forbidden":
            lines.append(
                f"unknown setting `{key}` (from {where}); allowed here: {', '.join(_allowed(loc))}"
            )
        elif err["type"] == "missing":
            lines.append(f"missing setting `{key}` (from {where}); it has no default")
        else:
            allowed = ""
            ctx = err.get("ctx") or {}
            if "expected" in ctx:
                allowed = f"; allowed: {ctx['expected']}"
            # An encryption key is a secret: its value is never echoed.
            shown = "***" if loc[:1] == ("encryption",) else repr(err.get("input"))
            lines.append(f"bad value {shown} for `{key}` (from {where}): {err['msg']}{allowed}")
    return "; ".join(lines)


def _merge(
    into: dict[str, Any], new: Mapping[str, Any], origin: dict[str, str], source: str
) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            for sub_key in value:
                origin[f"{key}.{sub_key}"] = source
            _merge(into[key], value, origin, source)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
            origin[key] = source
            if isinstance(value, Mapping):
                for sub_key in value:
                    origin[f"{key}.{sub_key}"] = source


def _env_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    top_level = [k for k in Settings.model_fields if k not in _SECTIONS]
    for name, raw in environ.items():
        if (
            not name.startswith(ENV_PREFIX)
            or name in _NOT_SETTINGS
            or name.startswith(_NOT_SETTINGS_PREFIX)
        ):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in top_level:
            values[key] = _env_value(name, key, raw)
            origin[key] = name
            continue
        section = next((s for s in _SECTIONS if key.startswith(s + "_")), None)
        if section is None or key[len(section) + 1 :] not in _SECTIONS[section].model_fields:
            choices = [ENV_PREFIX + k.upper() for k in top_level] + [
                f"{ENV_PREFIX}{s.upper()}_{f.upper()}"
                for s, model in _SECTIONS.items()
                for f in model.model_fields
            ]
            raise ConfigError(f"unknown environment setting {name}; allowed: {', '.join(choices)}")
        field = key[len(section) + 1 :]
        values.setdefault(section, {})[field] = raw
        origin[f"{section}.{field}"] = name
    return values, origin


def _env_value(name: str, key: str, raw: str) -> Any:
    """Lists are comma-separated; tables are JSON objects."""
    if key == "workflows":
        return [m.strip() for m in raw.split(",") if m.strip()]
    if key in _JSON_ENV:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name} must be a JSON object: {exc}") from None
    return raw


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings for this directory and environment; `overrides` win over every source."""
    cwd = cwd or Path.cwd()
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}

    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool", {}).get("bridge")
        if tool:
            _merge(merged, tool, origin, f"[tool.bridge] in {pyproject}")

    explicit = environ.get(CONFIG_PATH_ENV)
    toml_path = cwd / explicit if explicit else cwd / "bridge.toml"
    if explicit and not toml_path.is_file():
        raise ConfigError(f"{CONFIG_PATH_ENV} names {toml_path}, which does not exist")
    if toml_path.is_file():
        _merge(merged, _read_toml(toml_path), origin, str(toml_path))

    env_values, env_origin = _env_values(environ)
    _merge(merged, env_values, origin, "environment")
    origin.update(env_origin)
    if overrides:
        _merge(merged, overrides, origin, "explicit settings")

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
    for name in settings.engines:
        settings.engine(name)  # a bad [engines.NAME] table fails here, not at first use
    return settings
