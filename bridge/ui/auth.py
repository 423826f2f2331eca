"""Who may use `bridge ui`: safe by default.

The UI shows payloads and can signal and cancel runs, so it is as sensitive as the CLI.
It binds to localhost by default, where only this machine's users reach it. Any other bind
needs `BRIDGE_UI_TOKEN`, and `check_bind` refuses to start without it. When a token is
set, `TokenGate` checks it on every request, pages and actions alike: an
`Authorization: Bearer TOKEN` header, a `?token=TOKEN` query parameter (which also sets an
HttpOnly cookie, so the page's own requests carry it), or that cookie. Comparisons are
constant-time.

Two browser attacks are closed as well: on a localhost bind, a request whose Host header
is not a local name is refused (DNS rebinding: a web page whose name resolves to
127.0.0.1), and actions must be sent as JSON, which another site's page cannot do without
a CORS preflight that this app never answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from bridge.errors import ConfigError

__all__ = ["COOKIE", "TOKEN_ENV", "TokenGate", "check_bind", "is_local"]

#: The variable that holds the token.
TOKEN_ENV = "BRIDGE_UI_TOKEN"
#: The cookie a `?token=` request sets.
COOKIE = "bridge_ui_token"
#: Host names of this machine, as a Host header or a bind address.
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
#: Shorter tokens are refused: they could be guessed.
MIN_TOKEN_LENGTH = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_local(host: str) -> bool:
    """Whether `host` (a bind address or a Host header's name) is this machine only."""
    name = host.strip().lower()
    if name in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind other machines can reach unless a token guards it, and a token too
    short to be a secret."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{TOKEN_ENV} is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} "
            "random characters, e.g. from `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    if not is_local(host) and not token:
        raise ConfigError(
            f"bridge ui --host {host} can be reached from other machines: set {TOKEN_ENV} to "
            "a long random secret (every request must then carry it), or bind to 127.0.0.1"
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _host_name(host_header: str) -> str:
    """The name part of a Host header (`[::1]:8233` -> `[::1]`, `a:1` -> `a`)."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


class TokenGate:
    """ASGI middleware in front of the whole app: the token (when set) on every request,
    local Host headers on a local bind, JSON bodies for actions."""

    def __init__(self, app: ASGIApp, *, token: str | None, local_bind: bool) -> None:
        self.app = app
        self.token = token
        self.local_bind = local_bind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.local_bind and not is_local(_host_name(_header(scope, b"host") or "")):
            await _refuse(send, 403, "this UI answers to localhost names only")
            return
        if scope["method"] not in ("GET", "HEAD"):
            kind = (_header(scope, b"content-type") or "").split(";")[0].strip()
            if kind != "application/json":
                await _refuse(send, 415, "actions are sent as application/json")
                return
        if self.token is None:
            await self.app(scope, receive, send)
            return
        given, from_query = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            await _refuse(
                send,
                401,
                f"a token is required: open the page with ?token=... (the value of "
                f"{TOKEN_ENV}) or send Authorization: Bearer ...",
            )
            return
        if not from_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie: SimpleCookie = SimpleCookie()
                cookie[COOKIE] = self.token or ""
                cookie[COOKIE]["httponly"] = True
                cookie[COOKIE]["samesite"] = "Strict"
                cookie[COOKIE]["path"] = "/"
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", cookie[COOKIE].OutputString().encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    def _given(scope: Scope) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the query string."""
        auth = _header(scope, b"authorization")
        if auth is not None and auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(_header(scope, b"cookie") or "")
        except CookieError:
            return None, False
        morsel = cookies.get(COOKIE)
        return (None if morsel is None else morsel.value), False


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
