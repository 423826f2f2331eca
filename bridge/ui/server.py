"""`bridge ui`'s server: the app on uvicorn, after the bind is checked.

Kept apart from the app so tests (and anyone embedding the UI in their own ASGI server)
can take `create_app` alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bridge.config import Settings
from bridge.ui.app import create_app
from bridge.ui.auth import check_bind, is_local

__all__ = ["serve"]


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8233,
    token: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the UI until Ctrl-C / SIGTERM. Refuses (ConfigError) a bind other machines
    can reach when no token guards it. `announce` gets the address once the client is
    connected (the socket is bound right after); a client that cannot connect is raised
    here, so the CLI prints it as one line."""
    check_bind(host, token)
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError('bridge ui needs uvicorn: pip install "durable-bridge[ui]"') from exc

    shown = f"[{host}]" if ":" in host else host
    where = f"http://{shown}:{port}/"

    def ready() -> None:
        if announce is not None:
            announce(where)
        sys.stdout.flush()  # whoever reads a pipe needs the address now

    failures: list[Exception] = []

    def failed(exc: Exception) -> None:
        failures.append(exc)
        server.should_exit = True

    app = create_app(
        settings, token=token, local_bind=is_local(host), on_ready=ready, on_failure=failed
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    server.run()
    if failures:
        raise failures[0]
