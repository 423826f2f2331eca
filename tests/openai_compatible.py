"""An OpenAI-compatible endpoint on localhost, for testing the real-model path offline.

It rate-limits the first request (HTTP 429), then answers every chat completion with one
assistant message, and keeps what it was sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "hello from the server"


class CompatibleServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, Any]] = []

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: CompatibleServer

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.requests.append((self.path, json.loads(self.rfile.read(length))))
        if len(self.server.requests) == 1:
            status, payload = 429, {"error": {"message": "slow down", "type": "rate_limit"}}
        else:
            status, payload = (
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "local-model",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": REPLY},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                },
            )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass  # quiet: pytest treats stray output as noise


@contextlib.contextmanager
def serve() -> Iterator[CompatibleServer]:
    server = CompatibleServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
