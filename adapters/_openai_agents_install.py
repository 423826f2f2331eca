"""Making the SDK's own `Runner` durable in every process that runs bridge workflows.

An agent written for the OpenAI Agents SDK calls `Runner.run(agent, input)`; the SDK sends
that to its process-wide default runner (`agents.run.DEFAULT_AGENT_RUNNER`). Installing
`BridgeAgentRunner` there makes every run started from workflow code durable (the top-level
one, `agent.as_tool()`, a guardrail's agent, a handoff) while runs outside workflows stay
plain SDK runs. Temporal's integration does the same with its `OpenAIAgentsPlugin`.

It is installed by the `openai_agents` entry point of the `bridge.interceptors` group, which
every `bridge.connect()` (client or worker) loads: a user's agent code needs no bridge line.
The entry point does nothing in a process that has not imported the SDK, so programs
without agents never pay for importing it; that is also why this module lives outside the
`adapters.openai_agents` package, whose `__init__` imports the SDK.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.interceptors import Interceptor

__all__ = ["install", "interceptor"]


def install() -> None:
    """Install the durable default runner in this process (idempotent)."""
    from agents.run import get_default_agent_runner, set_default_agent_runner

    from adapters.openai_agents._mcp import leave_sandboxed_connections_to_steps
    from adapters.openai_agents._runner import BridgeAgentRunner
    from adapters.openai_agents._tracing import prepare_tracing

    # Here, where the worker starts: inside Temporal's sandbox the SDK's lazy set-up fails.
    prepare_tracing()
    # `async with server:` in workflow code, as the SDK's examples write it, on every engine.
    leave_sandboxed_connections_to_steps()
    current = get_default_agent_runner()
    if isinstance(current, BridgeAgentRunner):
        return
    set_default_agent_runner(BridgeAgentRunner(fallback=current))


def interceptor(settings: Settings) -> Interceptor | None:
    """The `bridge.interceptors` factory: installs the runner when the SDK is in use and adds
    no interceptor (nothing to do per activity attempt)."""
    if "agents" in sys.modules:
        install()
    return None
