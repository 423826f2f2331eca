"""Fixtures of the `bridge ui` tests: a `bridge ui` process, Debian's chromium, artefacts.

The server is the real command (`python -m bridge.cli ui`) started in a folder holding the
test's bridge.toml; the browser is the system's chromium driven headless by Playwright
(never a browser Playwright downloads). Screenshots go to tests/ui/artefacts/ (ignored by
git).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parent / "artefacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_toml(folder: Path, settings: dict[str, Any]) -> None:
    """`settings` (as for bridge.connect) as the bridge.toml of `folder`."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict))
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for key, value in settings.items():
        if isinstance(value, dict):
            table(key, value)
    (folder / "bridge.toml").write_text("\n".join(lines) + "\n")


class UiServer:
    """A `bridge ui` process and its address; stopped at teardown whatever happened."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(
        self, *, host: str = "127.0.0.1", token: str | None = None, wait: bool = True
    ) -> subprocess.Popen[str]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env["PYTHONPATH"] = str(ROOT)
        if token is not None:
            env["BRIDGE_UI_TOKEN"] = token
        self.log = self.folder / f"ui-{port}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge.cli", "ui", "--host", host, "--port", str(port)],
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.url = f"http://127.0.0.1:{port}"
        if wait:
            self._wait(token)
        return self.proc

    def _wait(self, token: str | None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge ui exited: {self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/config", headers=headers).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"bridge ui did not answer: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[UiServer]:
    server = UiServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian chromium; the test is skipped where it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: `make` installs Debian's chromium where apt-get works "
            "(apt-get install -y chromium)"
        )
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="playwright is not installed (the dev extra)"
    )
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def artefacts() -> Path:
    ARTEFACTS.mkdir(exist_ok=True)
    return ARTEFACTS


def copy_for_docs(shot: Path, name: str) -> None:
    """With BRIDGE_TEST_UI_DOCS_IMAGES=1, the screenshot also becomes the README's docs/img/NAME."""
    if os.environ.get("BRIDGE_TEST_UI_DOCS_IMAGES") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "img" / name)
