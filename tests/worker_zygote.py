"""Forks crash-test workers from one warm process: `python -m tests.worker_zygote [MODULE ...]`.

Starting a worker costs seconds of imports (LangGraph), and a kill test needs a new worker
per kill. This process imports everything once; each line on stdin forks one worker, a
real process of its own that a SIGKILL really kills. It reports on stdout, one line each:
`ready`, `forked PID`, and `exit PID CODE` when it reaps a child (CODE -9: SIGKILL).
Closing stdin ends it and its workers. Settings come from BRIDGE_* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
from typing import Any

from bridge.config import load_settings
from tests import worker_proc


def _say(line: str) -> None:
    # os.write, not print: it is also called from the SIGCHLD handler.
    os.write(1, (line + "\n").encode())


def _reap(_signum: int, _frame: Any) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")


def _worker(modules: list[str], log: str) -> None:
    """In the child: log to a file of its own, then run a worker until killed."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    asyncio.run(worker_proc.main(modules))


def main(modules: list[str]) -> None:
    for m in ["tests.wfs", *modules]:
        importlib.import_module(m)
    # The backend's engine is imported when a client connects; import it before forking.
    importlib.import_module(f"backends.{load_settings().backend}._backend")
    signal.signal(signal.SIGCHLD, _reap)
    children: list[int] = []
    _say("ready")
    while line := sys.stdin.readline():
        pid = os.fork()
        if pid == 0:
            try:
                _worker(modules, line.strip())
            finally:
                os._exit(0)
        children.append(pid)
        _say(f"forked {pid}")
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
