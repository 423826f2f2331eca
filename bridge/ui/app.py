"""The routes of `bridge ui`: three pages, their JSON, and two actions.

Pages are static files (`bridge/ui/static/`, plain HTML and JavaScript, no build step,
nothing loaded from elsewhere) that fetch their data from `/api/...` every two seconds.
The app holds one client (`bridge.connect(settings)`, a routing client when migration
rules exist) for its whole life, connected at start-up, so a wrong configuration fails
before the server listens.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bridge.client import Client, connect
from bridge.config import Settings
from bridge.errors import BridgeError, WorkflowNotFoundError
from bridge.ui.auth import TokenGate
from bridge.ui.views import (
    MigrationsView,
    RunFilters,
    clean,
    engine_names,
    engine_summary,
    run_view,
    runs_view,
)

__all__ = ["create_app"]

STATIC = Path(__file__).resolve().parent / "static"
#: The same headers on every page: no caching of live data, no framing, no remote code.
_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(clean(data), status_code=status, headers=_HEADERS)


def _problem(message: str, status: int) -> JSONResponse:
    return _json({"error": message}, status)


def _page(name: str) -> Callable[[Request], Any]:
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html", headers=_HEADERS)

    return page


def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ValueError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


def _run_id(request: Request, body: dict[str, Any] | None = None) -> str:
    run_id = (body or {}).get("id", request.query_params.get("id"))
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("say which run: id=RUN_ID")
    return run_id


async def api_config(request: Request) -> JSONResponse:
    """What the header shows: the engines and where they are (passwords masked)."""
    client = _client(request)
    settings: Settings = request.app.state.settings
    return _json(
        {
            "engines": engine_summary(settings, engine_names(client)),
            "default": settings.backend,
            "migrating": bool(settings.migrate),
        }
    )


async def api_runs(request: Request) -> JSONResponse:
    try:
        filters = RunFilters.parse(dict(request.query_params))
    except ValueError as exc:
        return _problem(str(exc), 400)
    try:
        return _json(await runs_view(_client(request), filters))
    except BridgeError as exc:  # a bad search query, say: the user's to fix
        return _problem(str(exc), 400)


async def api_run(request: Request) -> JSONResponse:
    try:
        run_id = _run_id(request)
        return _json(await run_view(_client(request), run_id))
    except ValueError as exc:
        return _problem(str(exc), 400)
    except WorkflowNotFoundError as exc:
        return _problem(str(exc), 404)


async def api_migrations(request: Request) -> JSONResponse:
    view: MigrationsView = request.app.state.migrations
    return _json(await view.view())


async def api_signal(request: Request) -> JSONResponse:
    """Send a signal (name and JSON payload) to a run, through the owning engine."""

    async def send(body: dict[str, Any]) -> str:
        run_id = _run_id(request, body)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a signal needs a name")
        await _client(request).signal(run_id, name.strip(), body.get("payload"))
        return f"signal {name.strip()!r} sent to {run_id}"

    return await _action(request, send)


async def api_cancel(request: Request) -> JSONResponse:
    """Ask a run to cancel (its compensations, if any, still run)."""

    async def cancel(body: dict[str, Any]) -> str:
        run_id = _run_id(request, body)
        await _client(request).cancel(run_id)
        return f"cancellation requested for {run_id}"

    return await _action(request, cancel)


async def _action(
    request: Request, act: Callable[[dict[str, Any]], Awaitable[str]]
) -> JSONResponse:
    """An action's reply: its message, or the error as the status a client can act on
    (400 bad request, 404 no such run, 409 the run cannot take it now)."""
    try:
        message = await act(await _body(request))
    except ValueError as exc:
        return _problem(str(exc), 400)
    except WorkflowNotFoundError as exc:
        return _problem(str(exc), 404)
    except BridgeError as exc:
        return _problem(str(exc), 409)
    return _json({"ok": True, "message": message})


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    local_bind: bool = True,
    on_ready: Callable[[], None] | None = None,
    on_failure: Callable[[Exception], None] | None = None,
) -> TokenGate:
    """The ASGI app of `bridge ui` for `settings`, behind its token gate (`bridge.ui.auth`).

    `on_ready` is called once the client is connected, before requests are served;
    `on_failure` (when given) gets the error of a client that cannot connect, instead of
    the server's start-up failing with a traceback."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            client = await connect(settings)
        except Exception as exc:
            if on_failure is None:
                raise
            on_failure(exc)
            yield
            return
        app.state.client = client
        app.state.settings = settings
        app.state.migrations = MigrationsView(client, settings)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            # A view starts nothing in the background: nothing to wait for.
            await client.close(wait=False)

    app = Starlette(
        routes=[
            Route("/", _page("runs.html")),
            Route("/run", _page("run.html")),
            Route("/migrations", _page("migrations.html")),
            Route("/api/config", api_config),
            Route("/api/runs", api_runs),
            Route("/api/run", api_run),
            Route("/api/migrations", api_migrations),
            Route("/api/signal", api_signal, methods=["POST"]),
            Route("/api/cancel", api_cancel, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    return TokenGate(app, token=token, local_bind=local_bind)
