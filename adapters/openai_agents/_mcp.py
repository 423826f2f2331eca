"""MCP servers of an agent run in a workflow: each listing and each tool call a journaled step.

An agent written for the SDK lists its MCP servers (`Agent(mcp_servers=[server])`), and the
SDK asks each server for its tools on every turn and calls them when the model says so.
Run unchanged inside a workflow those requests would go out again on every replay (a
ticket filed again after each crash), so the durable copy of the agent
(`_runner._Converter`) puts a `DurableMCPServer` in place of each server. The proxy turns
`list_tools` into the step `openai_agents.mcp_list_tools`, `call_tool` into
`openai_agents.mcp_call_tool`, and prompt and resource reads into
`openai_agents.mcp_request`; results are journaled as the mcp types' JSON and validated
back, so a replay reads what the first execution read and calls nothing.

The step's activity uses the user's own server object: every backend runs a run's
activities in the process that runs its workflow code, and the proxy hands the object over
through `_live` (by workflow id and server name) while the step runs, as plain function
tools do. No connection or client crosses a process or enters the journal.

The connection stays the user's. A server that workflow code connected (`async with
server:`, as in the SDK's examples; on sql and langgraph a resumed run's code opens it
again) is used as it is. A server that is not connected when its step runs is connected by
the step for that one call and closed after it, as Temporal's stateless MCP servers are:
that is the way on Temporal, whose sandboxed workflow code can open no connection; there
`async with server:` in workflow code does nothing (`leave_sandboxed_connections_to_steps`),
so the same code runs on every engine.

Prompts and resources are journaled too rather than passed through: the SDK never asks for
them itself, but code the run calls (dynamic instructions reading `agent.mcp_servers`) gets
this proxy, and a prompt read again on replay could differ from the first one and make the
run diverge from its journal.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from agents import RunContextWrapper, UserError
from agents.mcp import MCPServer

# The SDK's own name sanitizer (private module): a server named after its URL must not put
# credentials from that URL into the journal.
from agents.mcp._logging import get_mcp_server_log_name
from mcp import types as mcp_types
from mcp.shared import exceptions as mcp_exceptions

from adapters.openai_agents._context import HandOver, HandOverMissingError, workflow_context
from bridge.activity import RetryPolicy, activity, activity_info

__all__ = [
    "MCP_CALL_TOOL",
    "MCP_LIST_TOOLS",
    "MCP_REQUEST",
    "DurableMCPServer",
    "durable_mcp_server",
]

MCP_LIST_TOOLS = "openai_agents.mcp_list_tools"
MCP_CALL_TOOL = "openai_agents.mcp_call_tool"
MCP_REQUEST = "openai_agents.mcp_request"

#: mcp 2 names it MCPError (code, message, data), mcp 1 McpError (ErrorData); the SDK
#: supports both.
_MCP_V2 = hasattr(mcp_exceptions, "MCPError")
_MCPError: Any = mcp_exceptions.MCPError if _MCP_V2 else mcp_exceptions.McpError  # type: ignore[attr-defined]


_live = HandOver()


class MCPServerUnavailableError(HandOverMissingError):
    """The step of an MCP request ran in a process without the workflow's server."""


def server_name(server: MCPServer) -> str:
    """The server's name as journaled: URL credentials and query strings removed."""
    return get_mcp_server_log_name(server.name)


# -- the activities --------------------------------------------------------------------------
# One attempt each, as the SDK makes one: a server of the SDK retries its own requests
# (`max_retry_attempts`), and a tool call retried here could act twice.
_ONCE = RetryPolicy(max_attempts=1)


@activity(name=MCP_LIST_TOOLS, retry=_ONCE)
async def mcp_list_tools(request: dict[str, Any]) -> dict[str, Any]:
    """List the tools of the server the workflow handed over, filtered for its agent."""
    server, run_context, agent = _found(request, f"{request['server']}@{request['agent']}")
    return await _outcome(
        server,
        lambda s: s.list_tools(run_context, agent),
        lambda tools: [_dump(t) for t in tools],
    )


@activity(name=MCP_CALL_TOOL, retry=_ONCE, journal_start=True)  # on_tool_start runs once
async def mcp_call_tool(request: dict[str, Any]) -> dict[str, Any]:
    """Call one tool on the server the workflow handed over."""
    (server,) = _found(request, request["server"])
    name, arguments, meta = request["tool"], request["arguments"], request["meta"]
    if meta is None:  # the SDK's own call shape: a server may not take `meta`
        return await _outcome(server, lambda s: s.call_tool(name, arguments), _dump)
    return await _outcome(server, lambda s: s.call_tool(name, arguments, meta=meta), _dump)


#: The reads of `mcp_request`: method name -> (call, result type).
_READS: dict[str, tuple[Callable[[MCPServer, dict[str, Any]], Awaitable[Any]], type[Any]]] = {
    "list_prompts": (lambda s, a: s.list_prompts(), mcp_types.ListPromptsResult),
    "get_prompt": (lambda s, a: s.get_prompt(a["name"], a["arguments"]), mcp_types.GetPromptResult),
    "list_resources": (lambda s, a: s.list_resources(a["cursor"]), mcp_types.ListResourcesResult),
    "list_resource_templates": (
        lambda s, a: s.list_resource_templates(a["cursor"]),
        mcp_types.ListResourceTemplatesResult,
    ),
    "read_resource": (lambda s, a: s.read_resource(a["uri"]), mcp_types.ReadResourceResult),
}


@activity(name=MCP_REQUEST, retry=_ONCE)
async def mcp_request(request: dict[str, Any]) -> dict[str, Any]:
    """Read prompts or resources from the server the workflow handed over."""
    (server,) = _found(request, request["server"])
    call, _ = _READS[request["method"]]
    return await _outcome(server, lambda s: call(s, request["arguments"]), _dump)


def _found(request: dict[str, Any], name: str) -> tuple[Any, ...]:
    found = _live.get((activity_info().workflow_id, name))
    if found is None:
        raise MCPServerUnavailableError(
            f"the MCP server {request['server']!r} of this step was not handed over by "
            f"workflow code in this process; MCP requests of an agent run in the worker that "
            f"runs its workflow"
        )
    return found  # type: ignore[no-any-return]


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _outcome(
    server: MCPServer,
    call: Callable[[MCPServer], Awaitable[Any]],
    encode: Callable[[Any], Any],
) -> dict[str, Any]:
    """The call's result as JSON, or the error the SDK shows the model, journaled alike:
    the SDK turns a UserError or an MCP error into the tool's model-visible result, so a
    replay must raise the same error with the same text."""
    try:
        return {"result": encode(await _connected(server, call))}
    except UserError as exc:
        return {"error": {"kind": "user", "message": str(exc)}}
    except _MCPError as exc:
        error = getattr(exc, "error", None)
        data = error.model_dump(mode="json") if error is not None else {"message": str(exc)}
        return {"error": {"kind": "mcp", **data}}


#: Serializes the steps that open their own connection on one unconnected server object.
_connect_locks: weakref.WeakKeyDictionary[MCPServer, tuple[asyncio.AbstractEventLoop, asyncio.Lock]]
_connect_locks = weakref.WeakKeyDictionary()


def _connect_lock(server: MCPServer) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    held = _connect_locks.get(server)
    if held is None or held[0] is not loop:  # a lock belongs to the loop it waited in
        held = (loop, asyncio.Lock())
        _connect_locks[server] = held
    return held[1]


async def _connected(server: MCPServer, call: Callable[[MCPServer], Awaitable[Any]]) -> Any:
    """`call(server)` on a connection: the user's, or one opened for this call.

    The SDK's servers keep their `session` None until connected. One the workflow did not
    connect (always so on Temporal) is connected here and closed in this same task, which
    the SDK's anyio task groups require; steps doing so on one object take turns, because
    the object holds one connection.
    """
    lock = _connect_lock(server)
    if not lock.locked() and getattr(server, "session", server) is not None:
        return await call(server)
    async with lock:
        if getattr(server, "session", server) is not None:
            return await call(server)
        await server.connect()
        try:
            return await call(server)
        finally:
            await server.cleanup()


def leave_sandboxed_connections_to_steps() -> None:
    """Make `connect()`/`cleanup()` of the SDK's MCP servers do nothing when called from
    workflow code on an engine that refuses I/O there (`Context.sandboxed`: Temporal), so
    the SDK examples' `async with server:` runs unchanged on every engine; each step then
    connects the server for its own call (`_connected`). Elsewhere, and in the steps
    themselves, they do what the SDK does.

    A patch of the SDK's (private) base class of its stdio, SSE and streamable-HTTP
    servers, made once where the worker starts (`adapters/_openai_agents_install.py`): the
    SDK offers no hook for this, and the alternative is telling users to write their
    workflow differently on one engine. Idempotent.
    """
    from agents.mcp.server import _MCPServerWithClientSession as base

    if getattr(base.connect, _SANDBOX_SAFE, False):
        return
    connect, cleanup = base.connect, base.cleanup

    @functools.wraps(connect)
    async def sandbox_safe_connect(self: Any) -> None:
        if not _in_sandboxed_workflow_code():
            await connect(self)

    @functools.wraps(cleanup)
    async def sandbox_safe_cleanup(self: Any) -> None:
        if not _in_sandboxed_workflow_code():
            await cleanup(self)

    setattr(sandbox_safe_connect, _SANDBOX_SAFE, True)
    base.connect = sandbox_safe_connect  # type: ignore[method-assign]
    base.cleanup = sandbox_safe_cleanup  # type: ignore[method-assign]


_SANDBOX_SAFE = "__bridge_sandbox_safe__"


def _in_sandboxed_workflow_code() -> bool:
    ctx = workflow_context()
    return ctx is not None and ctx.sandboxed


# -- the workflow side -------------------------------------------------------------------------
#: What the proxy copies from the user's server: the SDK reads these from the server object
#: when it turns listed tools into function tools and calls them (approval policy, error
#: function, `_meta` resolver, output extractor, guardrails, structured content).
_POLICY = (
    "use_structured_content",
    "_needs_approval_policy",
    "_failure_error_function",
    "tool_meta_resolver",
    "custom_data_extractor",
    "tool_input_guardrails",
    "tool_output_guardrails",
)


class DurableMCPServer(MCPServer):
    """Stands for the user's server in the durable agent copy; its requests are steps.

    Outside workflow code (called from inside an activity, say) it is the user's server.
    """

    def __init__(self, server: MCPServer) -> None:
        super().__init__()
        self.server = server
        for attr in _POLICY:
            if hasattr(server, attr):
                setattr(self, attr, getattr(server, attr))

    @property
    def name(self) -> str:
        return self.server.name

    async def connect(self) -> None:
        """Nothing: the connection belongs to the user's server (see the module doc)."""

    async def cleanup(self) -> None:
        """Nothing: the connection belongs to the user's server (see the module doc)."""

    async def list_tools(
        self, run_context: RunContextWrapper[Any] | None = None, agent: Any = None
    ) -> list[mcp_types.Tool]:
        ctx = workflow_context()
        if ctx is None:
            return await self.server.list_tools(run_context, agent)
        name = server_name(self.server)
        agent_name = getattr(agent, "name", None) or ""
        # The agent and run context go along for a dynamic `tool_filter`, which the SDK
        # calls with them; they are live objects, not journaled.
        key = (ctx.workflow_id, f"{name}@{agent_name}")
        request = {"server": name, "agent": agent_name}
        outcome = await _live.run(
            ctx, key, (self.server, run_context, agent), mcp_list_tools, request
        )
        return [mcp_types.Tool.model_validate(t) for t in _result(outcome, name)]

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        ctx = workflow_context()
        if ctx is None:
            if meta is None:
                return await self.server.call_tool(tool_name, arguments)
            return await self.server.call_tool(tool_name, arguments, meta=meta)
        name = server_name(self.server)
        request = {"server": name, "tool": tool_name, "arguments": arguments, "meta": meta}
        outcome = await _live.run(
            ctx, (ctx.workflow_id, name), (self.server,), mcp_call_tool, request
        )
        return mcp_types.CallToolResult.model_validate(_result(outcome, name))

    async def list_prompts(self) -> mcp_types.ListPromptsResult:
        return await self._read("list_prompts", {})

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> mcp_types.GetPromptResult:
        return await self._read("get_prompt", {"name": name, "arguments": arguments})

    async def list_resources(self, cursor: str | None = None) -> mcp_types.ListResourcesResult:
        return await self._read("list_resources", {"cursor": cursor})

    async def list_resource_templates(
        self, cursor: str | None = None
    ) -> mcp_types.ListResourceTemplatesResult:
        return await self._read("list_resource_templates", {"cursor": cursor})

    async def read_resource(self, uri: Any) -> mcp_types.ReadResourceResult:
        return await self._read("read_resource", {"uri": str(uri)})

    async def _read(self, method: str, arguments: dict[str, Any]) -> Any:
        call, result_type = _READS[method]
        ctx = workflow_context()
        if ctx is None:
            return await call(self.server, arguments)
        name = server_name(self.server)
        request = {"server": name, "method": method, "arguments": arguments}
        outcome = await _live.run(
            ctx, (ctx.workflow_id, name), (self.server,), mcp_request, request
        )
        return result_type.model_validate(_result(outcome, name))


def _result(outcome: dict[str, Any], server: str) -> Any:
    """The journaled result, or the journaled error raised again as the SDK raised it."""
    error = outcome.get("error")
    if error is None:
        return outcome["result"]
    if error["kind"] == "user":
        raise UserError(error["message"])
    if _MCP_V2:
        raise _MCPError(error["code"], error["message"], error.get("data"))
    raise _MCPError(mcp_types.ErrorData.model_validate(error))  # mcp 1: McpError(ErrorData)


def durable_mcp_server(server: MCPServer) -> MCPServer:
    """The proxy that makes `server`'s requests journaled steps (a proxy stays itself)."""
    if isinstance(server, DurableMCPServer):
        return server
    return DurableMCPServer(server)
