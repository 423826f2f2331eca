"""Worker-side settings of the adapter: model retries and timeout, endpoint, blob store.

A durable model call is an activity, so everything here is about the process that *runs*
activities, as `OpenAIAgentsPlugin(model_params=..., model_provider=...)` is on a Temporal
worker. They come from the `[agents]` table of bridge.toml (or BRIDGE_AGENTS_* variables,
see `bridge.config.AgentsSettings`); `configure(...)` where the worker starts overrides them
from code, and is where a model provider object is given. Nothing here is read by workflow
code, so a replay never depends on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from agents import Model, ModelProvider, OpenAIProvider
from openai import AsyncOpenAI

from adapters.openai_agents._blobs import BlobStore, close_blob_stores, open_blob_store
from adapters.openai_agents._errors import ModelNotFoundError
from bridge.activity import RetryPolicy, seconds
from bridge.config import AgentsSettings, load_settings
from bridge.errors import ConfigError

__all__ = ["AgentSettings", "blob_store", "configure", "current_settings", "resolve_model"]

# Rate limits (429) and overloaded servers (5xx) clear up in seconds to a minute: five
# attempts with doubling delays capped at 30 s cover about a minute of trouble.
DEFAULT_MODEL_RETRY = RetryPolicy(
    max_attempts=5, initial_interval=1.0, backoff=2.0, max_interval=30
)


@dataclass(frozen=True, kw_only=True)
class AgentSettings:
    """How this worker runs durable model calls.

    - `model_retry`: the retry policy of every model call (429, 408, 409 and 5xx answers and
      connection errors are retried with its backoff; other 4xx fail at once).
    - `model_timeout`: seconds one model call attempt may take (None: no limit).
    - `base_url`: an OpenAI-compatible endpoint; with it (or with OPENAI_API_KEY set) agents
      whose model is a name use a real model.
    - `use_responses`: the Responses API (True) or Chat Completions (False); None picks
      Responses for api.openai.com and Chat Completions for a custom `base_url`.
    - `default_model`: the model name for agents that give none (None: the SDK's default).
    - `blob_url`: where conversation blobs live (a SQLAlchemy URL). None puts them next to
      the journal: the sql or langgraph database of the configured backend, else
      `sqlite:///.bridge/agent_blobs.db`.
    """

    model_retry: RetryPolicy = DEFAULT_MODEL_RETRY
    model_timeout: float | timedelta | None = 120.0
    base_url: str | None = None
    use_responses: bool | None = None
    default_model: str | None = None
    blob_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_retry, RetryPolicy):
            raise ConfigError(
                f"AgentSettings.model_retry must be a bridge.RetryPolicy, got "
                f"{type(self.model_retry).__name__}"
            )
        timeout = seconds(self.model_timeout, what="AgentSettings.model_timeout")
        if timeout == 0:
            raise ConfigError("AgentSettings.model_timeout must be positive (or None: no limit)")
        object.__setattr__(self, "model_timeout", timeout)

    @classmethod
    def from_config(cls, agents: AgentsSettings) -> AgentSettings:
        """The settings an `[agents]` table (bridge.toml, BRIDGE_AGENTS_*) describes."""
        return cls(
            model_retry=RetryPolicy(
                max_attempts=agents.model_max_attempts,
                initial_interval=agents.model_initial_interval,
                backoff=agents.model_backoff,
                max_interval=agents.model_max_interval,
            ),
            model_timeout=agents.model_timeout,
            base_url=agents.base_url,
            use_responses=agents.use_responses,
            default_model=agents.default_model,
            blob_url=agents.blob_url,
        )


@dataclass
class _State:
    #: None until `configure()` or the first use, which reads the bridge configuration.
    settings: AgentSettings | None = None
    provider: ModelProvider | None = None
    real_provider: ModelProvider | None = None
    blob_url: str | None = None  # resolved once: the bridge settings are read from files


_state = _State()


def configure(
    settings: AgentSettings | None = None, *, model_provider: ModelProvider | None = None
) -> None:
    """Set how this worker process runs model calls (call it before the worker starts).

    `model_provider` resolves every model name the agents use (for example
    `ScriptedModelProvider(...)` in tests); without one, names go to OpenAI when
    OPENAI_API_KEY or `base_url` is set, else to a ScriptedModel of that name.
    """
    from adapters.openai_agents._model_activity import install_model_call

    new = settings or AgentSettings.from_config(load_settings().agents)
    if _state.settings is None or new.blob_url != _state.settings.blob_url:
        close_blob_stores()
    _state.settings = new
    _state.provider = model_provider
    _state.real_provider = None
    _state.blob_url = None
    install_model_call(new)


def current_settings() -> AgentSettings:
    """The settings this worker uses: those given to `configure()`, else the configuration's
    `[agents]` table (read once)."""
    if _state.settings is None:
        _state.settings = AgentSettings.from_config(load_settings().agents)
    return _state.settings


def blob_store() -> BlobStore:
    """The blob store model calls in this process use (see `AgentSettings.blob_url`)."""
    if _state.blob_url is None:
        url = current_settings().blob_url
        if url is None:
            bridge_settings = load_settings()
            if bridge_settings.backend == "sql":
                url = bridge_settings.sql.url
            elif bridge_settings.backend == "langgraph":
                url = bridge_settings.langgraph.url
            else:
                url = "sqlite:///.bridge/agent_blobs.db"
        _state.blob_url = url
    return open_blob_store(_state.blob_url)


def _real_model_available() -> bool:
    return bool(
        os.environ.get("OPENAI_API_KEY")
        or current_settings().base_url
        or os.environ.get("OPENAI_BASE_URL")
    )


#: Model and ModelProvider objects that workflow code put on its agents or run configs, by
#: the key its journaled requests name (`source`). Workflow code registers them each time it
#: builds a durable agent (a replay after a crash included), in the process whose worker
#: runs the call: every backend runs a run's model calls in the process that runs its
#: workflow code, so the object itself never has to cross a process or enter the journal.
_sources: dict[str, Model | ModelProvider] = {}


def register_source(key: str, source: Model | ModelProvider) -> dict[str, str]:
    """Keep `source` for model calls that name `key`; what the journaled request records."""
    _sources[key] = source
    kind = "provider" if isinstance(source, ModelProvider) else "object"
    return {kind: key}


def resolve_model(name: str | None, source: dict[str, str] | None = None) -> Model:
    """The model a durable call of `name` runs on in this worker.

    Order: the Model or ModelProvider object the workflow's agent named (`source`); the
    configured provider; a ScriptedModel registered under `name`; OpenAI when a key or base
    URL is configured. Names are resolved here, in the worker, as Temporal's integration
    does, so the journal holds a name and never a client object.
    """
    from adapters.openai_agents._scripted import registered_scripted_model

    if source:
        (kind, key), *_ = source.items()
        found = _sources.get(key)
        if found is None:
            raise ModelNotFoundError(
                f"the model call names the {kind} {key!r}, which no workflow code in this "
                f"process has registered; the agent's model object is registered when the "
                f"workflow builds its durable run, so run model calls in the process that "
                f"runs the workflow (every bridge worker does)"
            )
        if isinstance(found, ModelProvider):
            return found.get_model(name)
        return found
    name = name or current_settings().default_model
    if _state.provider is not None:
        return _state.provider.get_model(name)
    scripted = registered_scripted_model(name)
    if scripted is not None:
        return scripted
    if _real_model_available():
        if _state.real_provider is None:
            base_url = current_settings().base_url
            use_responses = current_settings().use_responses
            if use_responses is None:
                use_responses = base_url is None
            # max_retries=0: the activity's retry policy owns retrying, with backoff and a
            # journaled attempt history, instead of the client retrying inside one attempt.
            # OpenAI-compatible servers (vLLM, Ollama, ...) often want no key, but the client
            # refuses to start without one.
            api_key = os.environ.get("OPENAI_API_KEY") or ("unused" if base_url else None)
            client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
            _state.real_provider = OpenAIProvider(openai_client=client, use_responses=use_responses)
        return _state.real_provider.get_model(name)
    raise ModelNotFoundError(
        f"no model for {name or '(the default model)'!r} in this worker: set OPENAI_API_KEY "
        f"(or AgentSettings.base_url) to call a real model, give the agent a ScriptedModel "
        f"named {name!r} for offline runs, or pass model_provider= to "
        f"adapters.openai_agents.configure()"
    )
