"""`bridge bus serve`: the trigger front door as a process. A real `bridge` subprocess
imports a module's `bridge.on(...)` triggers, consumes the SQL outbox and starts runs through
the migration router (on the engine the rule names), and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import bridge
from bridge.backend import Status
from bridge.bus.envelope import Event
from bridge.bus.outbox import SqlOutbox
from bridge.config import RouterSettings
from bridge.migrate._routing_table import RoutingTable

ROOT = Path(__file__).resolve().parents[2]

TRIGGERS = """
import bridge

@bridge.activity
async def shout(name: str) -> str:
    return name.upper()

@bridge.workflow
async def ingest(ctx: bridge.Context, doc: dict) -> str:
    return await ctx.run(shout, doc["name"])

bridge.on("doc.uploaded", ingest, id_from=lambda e: f"ingest/{e.data['name']}")
"""


def _project(tmp_path: Path) -> None:
    (tmp_path / "serve_triggers.py").write_text(TRIGGERS)
    (tmp_path / "bridge.toml").write_text(
        textwrap.dedent(
            f"""
            [sql]
            url = "sqlite:///{tmp_path}/journal.db"
            [router]
            url = "sqlite:///{tmp_path}/routes.db"
            [engines.sql2]
            backend = "sql"
            sql = {{ url = "sqlite:///{tmp_path}/journal2.db" }}
            [migrate.ingest]
            from = "sql"
            to = "sql2"
            ramp = 100
            """
        )
    )


def _lines(stream: object) -> queue.Queue[str]:
    """The lines of a pipe, read by a thread, so a test can wait for one with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        if text in seen[-1]:
            return
    raise AssertionError(f"no {text!r} from `bridge bus serve` in {timeout} s: {seen}")


async def test_serve_starts_runs_through_the_router_until_sigterm(tmp_path: Path) -> None:
    _project(tmp_path)
    outbox_url = f"sqlite:///{tmp_path}/outbox.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    with subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "bus", "serve", "-m", "serve_triggers",
         "--url", outbox_url, "--poll", "0.02"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    ) as proc:  # fmt: skip
        await _serve_and_stop(proc, tmp_path, outbox_url)


async def _serve_and_stop(proc: subprocess.Popen[str], tmp_path: Path, outbox_url: str) -> None:
    seen: list[str] = []
    try:
        lines = _lines(proc.stderr)
        _wait_for(lines, "SIGTERM or Ctrl-C to stop", seen, timeout=60)
        assert "1 trigger(s) on doc.uploaded" in seen[-1]

        outbox = SqlOutbox(url=outbox_url)
        try:
            for n in range(3):
                await outbox.publish(
                    Event(id=f"up-{n}", source="test", type="doc.uploaded", data={"name": f"d{n}"})
                )
            # A re-publish of the same upload under a new event id: same workflow id.
            await outbox.publish(
                Event(id="up-0-again", source="test", type="doc.uploaded", data={"name": "d0"})
            )
            deadline = time.monotonic() + 60
            while await outbox.backlog("bridge.triggers") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert await outbox.backlog("bridge.triggers") == 0
            assert await outbox.dead_letters() == []
        finally:
            await outbox.close()

        # Routed by the rule (ramp 100: the new engine), started there and nowhere else.
        table = RoutingTable(RouterSettings(url=f"sqlite:///{tmp_path}/routes.db"))
        try:
            assert {r.workflow_id: r.engine for r in table.list_routes()} == {
                f"ingest/d{n}": "sql2" for n in range(3)
            }
        finally:
            table.close()
        async with await bridge.connect({"sql": {"url": f"sqlite:///{tmp_path}/journal2.db"}}) as c:
            runs = await c.list(limit=10)
        assert sorted(r.id for r in runs) == [f"ingest/d{n}" for n in range(3)]
        assert all(r.status is not Status.FAILED for r in runs)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(seen) + proc.stderr.read()  # type: ignore[union-attr]
        _wait_for(lines, "stopped:", seen, timeout=10)
        # Four events handled; the re-published upload started nothing new (same workflow id).
        assert "handled=4" in seen[-1] and "failed=0" in seen[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_without_triggers_says_what_to_pass(tmp_path: Path) -> None:
    # A subprocess: this test session's registry holds other tests' triggers.
    (tmp_path / "no_triggers.py").write_text("X = 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="300")
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "bus", "serve", "-m", "no_triggers"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no triggers; pass --module MODULE for a module that calls bridge.on" in done.stderr
