"""Signed webhooks in, events or signals out: an optional ASGI app on Starlette.

The seeds' pattern "wake the workflow when the webhook arrives" (the debtor workflow waits
for the call-completed webhook) needs an HTTP endpoint that only the webhook's sender can
use. `webhook_app()` gives one route per webhook: an `EventRoute` publishes an `Event` on a
transport (triggers and consumers take it from there), a `SignalRoute` signals a workflow
through a `bridge.Client` (or anything with the same `signal(id, name, payload)`, such as
the migration router, so the signal reaches the engine that owns the run).

Authentication, the scheme Stripe uses:

    X-Bridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

- several `v1=` entries are allowed (a sender signing with the old and the new secret
  during a rotation), and the app may hold several secrets; one match is enough;
- every comparison is `hmac.compare_digest` (constant time);
- a timestamp more than `tolerance` seconds (default 300) from the server's clock is
  refused, so a captured request cannot be replayed later;
- a signature already accepted inside that window is refused too. Accepted signatures are
  kept in a table of a SQL database (`replay_url`, by default the configured `sql.url`)
  until their window ends, so a restarted app, or another replica on the same database,
  refuses the replay as well; rows past the window are deleted as requests come.

A request that fails any of these gets 401 and changes nothing: no event is published, no
signal sent. `sign()` makes the header, for senders and tests.

Error replies go to whoever can reach the URL, so they say what class of thing went wrong
and nothing of the inside (no database URL, no exception text); the reason is logged, with
any password masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'bridge.bus.webhooks needs starlette: pip install "durable-bridge[webhooks]"'
    ) from exc

from sqlalchemy import Column, Engine, Float, MetaData, String, Table, delete, inspect
from sqlalchemy.exc import DBAPIError

from bridge._redact import mask
from bridge.bus._sql import create_bus_engine, insert_for, translate
from bridge.bus.envelope import Event, EventError
from bridge.errors import BridgeError, ConfigError, WorkflowClosedError, WorkflowNotFoundError
from bridge.tracing import continued

__all__ = [
    "SIGNATURE_HEADER",
    "EventRoute",
    "Publisher",
    "SignalRoute",
    "Signaller",
    "sign",
    "webhook_app",
]

SIGNATURE_HEADER = "X-Bridge-Signature"
_SCHEME = "v1"

log = logging.getLogger("bridge.bus.webhooks")

_metadata = MetaData()
#: Accepted signatures (the matched HMAC, hex) and when their timestamp goes stale anyway.
seen_signatures = Table(
    "bridge_webhook_signatures",
    _metadata,
    Column("signature", String(128), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)


class Publisher(Protocol):
    """What an EventRoute needs: any `Transport` has it."""

    async def publish(self, event: Event) -> None: ...


class Signaller(Protocol):
    """What a SignalRoute needs: `bridge.Client` has it (so does the migration router)."""

    async def signal(self, id: str, name: str, payload: Any = None) -> None: ...


@dataclass(frozen=True)
class EventRoute:
    """POST `path` publishes one event.

    With `type` set, the JSON body becomes the event's `data`; its id is `id_from(body)`, by
    default the SHA-256 of the raw body, so a sender's retry of the same notification is
    the same event (and is delivered once). With `type=None` the body must be a CloudEvents
    structured-mode event (`application/cloudevents+json`), published as it is.
    """

    path: str
    type: str | None = None
    source: str = "webhook"
    id_from: Callable[[Any], str] | None = None
    subject_from: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class SignalRoute:
    """POST `path` sends signal `signal` to workflow `workflow_id_from(body)`, with
    `payload_from(body)` (default: the whole JSON body) as its payload."""

    path: str
    signal: str
    workflow_id_from: Callable[[Any], str]
    payload_from: Callable[[Any], Any] | None = None


class _Rejected(Exception):
    """A refused request: `message` is the reply, `reason` (for the log only) may say more."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or message


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(body: bytes, secret: str | bytes, *, timestamp: int | None = None) -> str:
    """The `X-Bridge-Signature` header value for `body`, signed now (or at `timestamp`)."""
    t = str(int(time.time()) if timestamp is None else timestamp)
    return f"t={t},{_SCHEME}={_mac(_as_bytes(secret), t, body)}"


class _SeenSignatures:
    """Accepted signatures in a SQL table, each until its replay window ends."""

    def __init__(self, url: str) -> None:
        self._where = "webhook replay table"
        self.engine = create_bus_engine(url)
        try:
            _create_table(self.engine, self._where)
        except BaseException:
            self.engine.dispose()
            raise

    def claim(self, signature: str, *, expires_at: float, now: float) -> bool:
        """Record `signature`; False when it is already there (a replay)."""
        t = seen_signatures
        with translate(self._where, "recording a signature"), self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.expires_at <= now))  # past their window
            inserted = conn.execute(
                insert_for(conn, t)
                .values(signature=signature, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["signature"])
                .returning(t.c.signature)
            ).first()
        return inserted is not None

    def forget(self, signature: str) -> None:
        t = seen_signatures
        with translate(self._where, "forgetting a signature"), self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.signature == signature))


def _create_table(engine: Engine, where: str) -> None:
    with translate(where, "creating the table"):
        try:
            with engine.begin() as conn:
                _metadata.create_all(conn, checkfirst=True)
        except DBAPIError:
            # Another replica created it between the check and the CREATE (PostgreSQL).
            if not inspect(engine).has_table(seen_signatures.name):
                raise


class _Verifier:
    """Checks signatures, and refuses one already accepted inside its window."""

    def __init__(self, secrets: list[bytes], tolerance: float, seen: _SeenSignatures) -> None:
        self.secrets = secrets
        self.tolerance = tolerance
        self.seen = seen

    def verify(self, header: str | None, body: bytes) -> str:
        """The matching signature, or _Rejected(401) saying why not."""
        if not header:
            raise _Rejected(401, f"missing {SIGNATURE_HEADER} header")
        timestamp = ""
        offered: list[str] = []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key == "t":
                timestamp = value
            elif key == _SCHEME and value:
                offered.append(value)
        if not timestamp.isdigit() or not offered:
            raise _Rejected(401, f"malformed {SIGNATURE_HEADER} header (want t=...,v1=...)")
        now = time.time()
        if abs(now - int(timestamp)) > self.tolerance:
            raise _Rejected(
                401, f"signature timestamp is outside the {self.tolerance:g} s tolerance"
            )
        matched = None
        for secret in self.secrets:
            expected = _mac(secret, timestamp, body)
            for candidate in offered:
                if hmac.compare_digest(expected, candidate):
                    matched = candidate
        if matched is None:
            raise _Rejected(401, "signature does not match the body")
        if not self.seen.claim(matched, expires_at=int(timestamp) + self.tolerance + 1, now=now):
            raise _Rejected(401, "this signed request was already accepted (replay)")
        return matched

    def forget(self, signature: str) -> None:
        """The request failed after verification: let the sender retry it."""
        self.seen.forget(signature)


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it passes `limit`, before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Rejected(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Rejected(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _Rejected(400, f"{request.url.path}: body is not JSON: {exc}") from None


def _call(what: str, fn: Callable[[Any], Any], body: Any) -> Any:
    try:
        return fn(body)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _Rejected(400, f"{what} could not be read from the body: {exc!r}") from None


async def _publish(route: EventRoute, transport: Publisher, raw: bytes, body: Any) -> dict:
    try:
        if route.type is None:
            if not isinstance(body, dict):
                raise _Rejected(400, f"{route.path}: body is not a CloudEvents JSON object")
            event = Event.from_dict(body)
        else:
            event_id = (
                _call("event id", route.id_from, body)
                if route.id_from
                else hashlib.sha256(raw).hexdigest()
            )
            subject = (
                _call("event subject", route.subject_from, body) if route.subject_from else None
            )
            event = Event.new(
                route.type, body, source=route.source, subject=subject, id=str(event_id)
            )
    except EventError as exc:
        raise _Rejected(400, f"{route.path}: {exc}") from None
    await transport.publish(event)
    return {"published": {"source": event.source, "id": event.id, "type": event.type}}


async def _signal(route: SignalRoute, client: Signaller, body: Any) -> dict:
    workflow_id = str(_call("workflow id", route.workflow_id_from, body))
    payload = _call("signal payload", route.payload_from, body) if route.payload_from else body
    try:
        await client.signal(workflow_id, route.signal, payload)
    except WorkflowNotFoundError as exc:
        raise _Rejected(404, "no such workflow", str(exc)) from None
    except WorkflowClosedError as exc:
        raise _Rejected(409, "the workflow has already finished", str(exc)) from None
    return {"signalled": {"workflow_id": workflow_id, "signal": route.signal}}


def webhook_app(
    *,
    secret: str | bytes | Sequence[str | bytes],
    routes: Sequence[EventRoute | SignalRoute],
    transport: Publisher | None = None,
    client: Signaller | None = None,
    tolerance: float = 300.0,
    max_body_bytes: int = 1 << 20,
    replay_url: str | None = None,
) -> Starlette:
    """An ASGI app serving `routes` (POST only). Answers 202 with what it did, 401 on a
    bad, missing, stale or replayed signature, 400 on a body a route cannot read, 404/409
    when the workflow to signal is unknown/finished, 413 on a body over `max_body_bytes`,
    503 when the transport, the engine or the replay table cannot be used.

    `replay_url` is the SQL database (sqlite:///PATH or postgresql://...) that keeps the
    accepted signatures; by default the configured `sql.url` (bridge.toml, BRIDGE_SQL_URL).
    Every replica of the app must use the same one."""
    secrets = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    if not secrets or not all(secrets):
        raise ConfigError("webhook_app: `secret` must be one or more non-empty secrets")
    for route in routes:
        if isinstance(route, EventRoute) and transport is None:
            raise ConfigError(f"webhook route {route.path!r} publishes events: pass transport=")
        if isinstance(route, SignalRoute) and client is None:
            raise ConfigError(f"webhook route {route.path!r} sends signals: pass client=")
    if replay_url is None:
        from bridge.config import load_settings

        replay_url = load_settings().sql.url
    seen = _SeenSignatures(replay_url)
    verifier = _Verifier([_as_bytes(s) for s in secrets], tolerance, seen)

    def endpoint(route: EventRoute | SignalRoute) -> Callable[[Request], Any]:
        async def handle(request: Request) -> JSONResponse:
            signature = None
            try:
                raw = await _read_body(request, max_body_bytes)
                signature = verifier.verify(request.headers.get(SIGNATURE_HEADER), raw)
                body = await _json(request, raw)
                # In the sender's trace when it sent W3C `traceparent`: the event (or the
                # signal's run) continues it (`bridge.tracing`).
                with continued(request.headers):
                    if isinstance(route, EventRoute):
                        assert transport is not None
                        done = await _publish(route, transport, raw, body)
                    else:
                        assert client is not None
                        done = await _signal(route, client, body)
            except BaseException as exc:
                # Only a request that did what it asked uses its signature up.
                if signature is not None:
                    with contextlib.suppress(BridgeError):  # its window still ends it
                        verifier.forget(signature)
                if isinstance(exc, _Rejected):
                    log.info("webhook %s: %d: %s", route.path, exc.status, mask(exc.reason))
                    return JSONResponse({"error": exc.message}, status_code=exc.status)
                if isinstance(exc, BridgeError):  # the transport or the engine is down
                    log.warning("webhook %s: 503: %s", route.path, mask(str(exc)))
                    return JSONResponse(
                        {"error": "temporarily unavailable; retry later"}, status_code=503
                    )
                raise
            return JSONResponse(done, status_code=202)

        return handle

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            seen.engine.dispose()

    return Starlette(
        routes=[Route(r.path, endpoint(r), methods=["POST"]) for r in routes],
        lifespan=lifespan,
    )
