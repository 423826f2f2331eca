"""A deterministic OpenAI-compatible server on localhost, driven by the request's schemas.

Agent code written for the real API (the SDK's examples, our own agents) runs against it
unchanged: `OPENAI_BASE_URL=server.base_url`. Its answer depends only on the request, so a
plain `Runner.run` and the same run inside a bridge workflow see the same conversation,
and a test can compare their outputs and count requests against journaled model calls.

The rule, for `POST /v1/responses` and `POST /v1/chat/completions`, streaming or not:

1. tools offered (function tools, handoffs' `transfer_to_*` too), `tool_choice` not
   "none", and no tool output since the last user message: call one tool (the one
   `tool_choice` names, else the first), with arguments generated from its JSON schema;
2. else, a structured output schema asked (`text.format` / `response_format`): a JSON
   instance of it (first enum value, `true`, 1, one-element arrays, every property);
3. else a short text quoting the last user message.

Strings in generated JSON are `"<property>: <last user message>"`, so a check on the
content (an output guardrail) sees what the user wrote. Ids are derived from the
conversation's length, never from a counter, so they are the same in every run.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI", "Reply", "decide", "instance_of", "serve"]

USAGE_IN, USAGE_OUT = 10, 5
_MAX_QUOTE = 120


@dataclass(frozen=True)
class Reply:
    """What the server answers: a tool call (`tool` set) or a text (JSON when structured)."""

    text: str | None = None
    tool: str | None = None
    arguments: str | None = None
    seq: int = 0  # how long the conversation was; the ids are made from it

    @property
    def call_id(self) -> str:
        return f"call_{self.tool}_{self.seq}"


# -- the request, read the same way for both APIs -------------------------------------------
def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _conversation(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items (Responses) or messages (Chat Completions) of the request, as a list."""
    if path.endswith("/chat/completions"):
        return list(body.get("messages") or [])
    items = body.get("input") or []
    return [{"role": "user", "content": items}] if isinstance(items, str) else list(items)


def _is_user(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def _is_tool_output(item: dict[str, Any]) -> bool:
    return item.get("role") == "tool" or str(item.get("type", "")).endswith("_call_output")


def _tools(path: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, parameters schema) of each function tool offered; hosted tools are ignored."""
    found = []
    for tool in body.get("tools") or []:
        if tool.get("type") != "function":
            continue
        spec = tool.get("function", tool)  # Chat Completions nests it, Responses does not
        found.append((spec["name"], spec.get("parameters") or {}))
    return found


def _forced(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict):
        return (tool_choice.get("function") or tool_choice).get("name")
    return None


def _output_schema(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    if path.endswith("/chat/completions"):
        fmt = body.get("response_format") or {}
        return (
            (fmt.get("json_schema") or {}).get("schema")
            if fmt.get("type") == "json_schema"
            else None
        )
    fmt = (body.get("text") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None


def instance_of(
    schema: dict[str, Any], text: str, defs: dict[str, Any] | None = None, key: str = "value"
) -> Any:
    """A JSON value valid for `schema` (the subset tool and output schemas use)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return instance_of(defs[schema["$ref"].rsplit("/", 1)[-1]], text, defs, key)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            options = [s for s in schema[union] if s.get("type") != "null"] or schema[union]
            return instance_of(options[0], text, defs, key)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance_of(sub, text, defs, name) for name, sub in props.items()}
    if kind == "array":
        return [instance_of(schema.get("items", {}), text, defs, key)]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return 1
    if kind == "null":
        return None
    return f"{key}: {text}"


def decide(path: str, body: dict[str, Any]) -> Reply:
    """The answer to one request (see the module docstring for the rule)."""
    items = _conversation(path, body)
    last_user = max((i for i, item in enumerate(items) if _is_user(item)), default=-1)
    said = _text_of(items[last_user].get("content")) if last_user >= 0 else ""
    said = said[:_MAX_QUOTE]
    answered = any(_is_tool_output(item) for item in items[last_user + 1 :])
    tools = _tools(path, body)
    choice = body.get("tool_choice")
    if tools and not answered and choice != "none":
        forced = _forced(choice)
        name, params = next(((n, p) for n, p in tools if n == forced), tools[0])
        args = json.dumps(instance_of(params, said), separators=(",", ":"))
        return Reply(tool=name, arguments=args, seq=len(items))
    schema = _output_schema(path, body)
    if schema is not None:
        return Reply(text=json.dumps(instance_of(schema, said)), seq=len(items))
    return Reply(text=f"Reply to: {said}", seq=len(items))


# -- the answers, in each API's shape ---------------------------------------------------------
def _chunks(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text) or [""]


def _usage_responses() -> dict[str, Any]:
    # Every field the openai types require: code that validates events strictly
    # (`model_validate`, as a journal decoding them does) must accept them too.
    return {
        "input_tokens": USAGE_IN,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": USAGE_OUT,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": USAGE_IN + USAGE_OUT,
    }


def _output_item(reply: Reply) -> dict[str, Any]:
    if reply.tool is not None:
        return {
            "type": "function_call",
            "id": f"fc_{reply.seq}",
            "call_id": reply.call_id,
            "name": reply.tool,
            "arguments": reply.arguments,
            "status": "completed",
        }
    return {
        "type": "message",
        "id": f"msg_{reply.seq}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
    }


def _response(body: dict[str, Any], reply: Reply | None) -> dict[str, Any]:
    """A Responses API `response` object; `reply` None: the in-progress shell."""
    seq = reply.seq if reply else 0
    return {
        "id": f"resp_{seq}",
        "object": "response",
        "created_at": 0,
        "model": body.get("model", "fake"),
        "status": "completed" if reply else "in_progress",
        "output": [_output_item(reply)] if reply else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": None,
        "top_p": None,
        "usage": _usage_responses() if reply else None,
    }


def _response_events(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    """The Responses stream: created, the item added, its deltas, the item done, completed."""
    item = _output_item(reply)
    at = {"output_index": 0, "item_id": item["id"]}
    if reply.tool is not None:
        added = {**item, "arguments": "", "status": "in_progress"}
        middle = [
            {"type": "response.function_call_arguments.delta", **at, "delta": reply.arguments},
            {
                "type": "response.function_call_arguments.done",
                **at,
                "arguments": reply.arguments,
                "name": reply.tool,
            },
        ]
    else:
        text = reply.text or ""
        part = item["content"][0]
        added = {**item, "content": [], "status": "in_progress"}
        at = {**at, "content_index": 0}
        middle = [
            {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
            *(
                {"type": "response.output_text.delta", **at, "delta": d, "logprobs": []}
                for d in _chunks(text)
            ),
            {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **at, "part": part},
        ]
    events = [
        {"type": "response.created", "response": _response(body, None)},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        *middle,
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": _response(body, reply)},
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def _chat_message(reply: Reply) -> dict[str, Any]:
    if reply.tool is not None:
        call = {
            "id": reply.call_id,
            "type": "function",
            "function": {"name": reply.tool, "arguments": reply.arguments},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": reply.text}


def _chat_usage() -> dict[str, Any]:
    return {
        "prompt_tokens": USAGE_IN,
        "completion_tokens": USAGE_OUT,
        "total_tokens": USAGE_IN + USAGE_OUT,
    }


def _chat_completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": f"chatcmpl_{reply.seq}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": _chat_message(reply),
                "finish_reason": "tool_calls" if reply.tool else "stop",
            }
        ],
        "usage": _chat_usage(),
    }


def _chat_chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    """The Chat Completions stream: the role, the content or the call in pieces, the finish,
    then the usage chunk."""
    if reply.tool is not None:
        call = {"index": 0, "id": reply.call_id, "type": "function"}
        deltas = [
            {
                "role": "assistant",
                "tool_calls": [{**call, "function": {"name": reply.tool, "arguments": ""}}],
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": reply.arguments}}]},
        ]
    else:
        deltas = [{"role": "assistant", "content": ""}] + [
            {"content": c} for c in _chunks(reply.text or "")
        ]
    head = {
        "id": f"chatcmpl_{reply.seq}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": body.get("model", "fake"),
    }
    chunks = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    finish = "tool_calls" if reply.tool else "stop"
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({**head, "choices": [], "usage": _chat_usage()})
    return chunks


# -- the server -------------------------------------------------------------------------------
class FakeOpenAI(ThreadingHTTPServer):
    """The server; `requests` holds (path, body) of every request, in arrival order."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, body))


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        path = self.path.split("?", 1)[0]
        if not path.endswith(("/responses", "/chat/completions")):
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        self.server.record(path, body)
        reply = decide(path, body)
        chat = path.endswith("/chat/completions")
        if not body.get("stream"):
            self._send_json(200, _chat_completion(body, reply) if chat else _response(body, reply))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # no length: HTTP/1.0, the stream ends when the connection closes
        if chat:
            for chunk in _chat_chunks(body, reply):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            for event in _response_events(body, reply):
                self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass  # quiet: pytest treats stray output as noise


@contextlib.contextmanager
def serve() -> Iterator[FakeOpenAI]:
    """`with serve() as server:` a running server on a free port, stopped on exit."""
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
