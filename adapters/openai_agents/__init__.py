"""Durable OpenAI Agents SDK agents on any bridge backend.

    from adapters.openai_agents import activity_as_tool, run_agent

    agent = Agent(name="researcher", model="gpt-4o-mini", tools=[activity_as_tool(search_web)])

    @bridge.workflow
    async def research(ctx: bridge.Context, topic: str) -> str:
        return (await run_agent(agent, topic)).final_output

Every model call is the journaled step `openai_agents.model_call` and every
`activity_as_tool` call a journaled step of its activity, so a run resumed after a crash
pays for nothing twice. Offline by default: a `ScriptedModel` replays a scripted
conversation; with OPENAI_API_KEY (or `AgentSettings.base_url`) agents whose model is a
name call the real model. Worker-side settings: the `[agents]` table of bridge.toml, or
`configure(AgentSettings(...))`.
"""

from __future__ import annotations

try:
    import agents as _agents  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "adapters.openai_agents needs the OpenAI Agents SDK: "
        'pip install "durable-bridge[openai-agents]"'
    ) from exc

from adapters.openai_agents._blobs import BlobStore
from adapters.openai_agents._config import (
    AgentSettings,
    blob_store,
    configure,
    current_settings,
)
from adapters.openai_agents._errors import (
    BlobMissingError,
    ModelNotFoundError,
    NonRetryableModelError,
    ScriptError,
)
from adapters.openai_agents._model import DurableModel
from adapters.openai_agents._model_activity import MODEL_CALL
from adapters.openai_agents._runner import approval_signal, run_agent
from adapters.openai_agents._scripted import (
    Reply,
    Script,
    ScriptedCall,
    ScriptedModel,
    ScriptedModelProvider,
)
from adapters.openai_agents._tool import activity_as_tool

__all__ = [
    # Making an agent durable
    "run_agent",
    "activity_as_tool",
    "approval_signal",
    "DurableModel",
    "MODEL_CALL",
    # Worker-side settings
    "AgentSettings",
    "configure",
    "current_settings",
    "blob_store",
    "BlobStore",
    # Offline models
    "ScriptedModel",
    "ScriptedModelProvider",
    "Script",
    "Reply",
    "ScriptedCall",
    # Errors
    "ModelNotFoundError",
    "NonRetryableModelError",
    "BlobMissingError",
    "ScriptError",
]
