"""Unchanged SDK agent code survives a SIGKILL of its worker mid-run, on every backend.

Three agents (tests/adapters/crash_agents.py) written as for the plain SDK: a tool with a
side effect, an orchestrator calling a sub-agent through `as_tool()` (whose own tool has a
side effect), and `RunHooks` that write a ledger. Each runs once outside any workflow, then
as a workflow on a worker subprocess, against the same deterministic OpenAI-compatible
server (tests/fake_openai.py). The server holds one chosen request of the durable run
unanswered; while it hangs, the worker is killed with SIGKILL, and a new worker finishes the
run. Then:

- the output equals the plain run's;
- no request the server answered before the kill was sent again, and what was answered
  before plus what was asked after is, body for body, the plain run's requests (the
  request in flight at the kill was never answered, so asking it again is no repeat);
- the ledger of side-effecting tools and hooks holds the plain run's rows, each once.

The server runs in the test process and is imported inside its fixture: Temporal's sandbox,
which re-imports workflow modules, refuses http.server classes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.adapters import crash_agents
from tests.conftest import Workers

Body = dict[str, Any]
WORKER_MODULE = "tests.adapters.crash_agents"


def gated_server_class() -> type[Any]:
    """The fake server, plus a gate that holds one request and a record of what it answered.

    Made inside a function: the module-level import of the server would put http.server
    into modules Temporal's sandbox re-imports.
    """
    from tests.fake_openai import FakeOpenAI

    class GatedFakeOpenAI(FakeOpenAI):
        """`hold(n)`: the n-th request from now is recorded, then waits for `release()`
        before it is answered. `answered` holds the body of each request whose answer was
        written out, in order (one request per connection: the handler speaks HTTP/1.0)."""

        def __init__(self) -> None:
            super().__init__()
            self.answered: list[Body] = []
            self.held = threading.Event()  # set once the held request has arrived
            self._release = threading.Event()
            self._hold_at: int | None = None
            self._body = threading.local()

        def hold(self, n: int) -> None:
            self._hold_at = self.count + n
            self.held.clear()
            self._release.clear()

        def release(self) -> None:
            self._hold_at = None
            self._release.set()

        def record(self, path: str, body: Body) -> None:
            with self._lock:
                index = len(self.requests)
                self.requests.append((path, body))
            self._body.value = body
            if index == self._hold_at:
                self._body.value = None  # its answer reaches no one: not answered
                self.held.set()
                self._release.wait(timeout=120)

        def finish_request(self, request: Any, client_address: Any) -> None:
            self._body.value = None
            super().finish_request(request, client_address)
            if self._body.value is not None:
                with self._lock:
                    self.answered.append(self._body.value)

        def snapshot(self) -> tuple[list[Body], int]:
            """The bodies answered so far and how many requests came, read together."""
            with self._lock:
                return list(self.answered), len(self.requests)

        def handle_error(self, request: Any, client_address: Any) -> None:
            # The held answer is written to a killed worker's closed socket: expected, quiet.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    return GatedFakeOpenAI


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The gated fake endpoint, reached the way a user configures the SDK: OPENAI_BASE_URL
    (the worker subprocesses inherit the variables)."""
    server = gated_server_class()()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
    try:
        yield server
    finally:
        server.release()
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Case:
    body: Callable[[str, str], Awaitable[Any]]
    workflow: bridge.WorkflowDefinition[..., Any]
    text: str
    #: The request of the durable run (0-based) held while the worker is killed.
    kill_at: int
    #: How many requests one run makes, to check the plain run is the conversation meant.
    requests: int


CASES = {
    # model (calls send_note) -> send_note -> model (answers): killed on the second call.
    "tool_agent": Case(crash_agents.tool_agent, crash_agents.tool_agent_wf, "tell Ada hi", 1, 2),
    # orchestrator -> summarize: [summarizer -> file_summary -> summarizer] -> orchestrator:
    # killed inside the nested run, on the summarizer's second call.
    "agents_as_tools": Case(
        crash_agents.agents_as_tools, crash_agents.agents_as_tools_wf, "a long text", 2, 4
    ),
    # model (calls check_stock) -> check_stock -> model: killed on the second call, after
    # on_llm_end and on_tool_end ran for the first call and the tool.
    "run_hooks": Case(crash_agents.hooked_agent, crash_agents.hooked_agent_wf, "any lamps?", 1, 2),
}


def bodies(requests: list[tuple[str, Body]]) -> list[Body]:
    return [body for _path, body in requests]


@pytest.mark.parametrize("case_name", list(CASES))
async def test_sigkill_mid_run_repeats_no_answered_request_nor_effect(
    case_name: str,
    settings: dict[str, Any],
    tmp_path: Path,
    fake_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[case_name]
    plain_ledger = str(tmp_path / "plain.db")
    durable_ledger = str(tmp_path / "durable.db")

    plain = await case.body(case.text, plain_ledger)
    plain_requests = bodies(fake_server.requests)
    assert len(plain_requests) == case.requests
    plain_effects = [e.key for e in ledger.entries(plain_ledger)]
    assert plain_effects, "the plain run had no side effect to count"
    assert ledger.duplicates(plain_ledger) == {}  # so "as in the plain run" means "once"
    answered_from = len(fake_server.answered)

    monkeypatch.setenv(crash_agents.DIR_ENV, str(tmp_path))
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    id = f"{case_name}-{uuid.uuid4().hex[:8]}"
    try:
        fake_server.hold(case.kill_at)
        await client.start(case.workflow, case.text, durable_ledger, id=id)
        first = workers.start(WORKER_MODULE)
        held = await asyncio.to_thread(fake_server.held.wait, 90)
        assert held, f"request {case.kill_at} of the durable run never came"
        assert first.poll() is None, "the worker died on its own"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        answered, seen_before = fake_server.snapshot()
        answered_before = answered[answered_from:]
        effects_before = [e.key for e in ledger.entries(durable_ledger)]
        fake_server.release()  # its answer goes to the dead worker's closed socket

        workers.start(WORKER_MODULE)
        durable = await client.result(id, timeout=120)
    finally:
        workers.close()
        await client.close()
    asked_after = bodies(fake_server.requests[seen_before:])

    # The kill landed where meant: every request before the held one was answered, and the
    # side effects of the steps before it had happened.
    assert len(answered_before) == case.kill_at
    assert effects_before == plain_effects[: len(effects_before)] and effects_before

    assert durable == plain
    resent = [body for body in asked_after if body in answered_before]
    assert resent == [], "an answered model call was sent again after the crash"
    assert answered_before + asked_after == plain_requests

    durable_effects = [e.key for e in ledger.entries(durable_ledger)]
    assert durable_effects == plain_effects
    assert ledger.duplicates(durable_ledger) == {}


async def test_sigkill_inside_a_function_tool_runs_the_tool_again_and_finishes(
    settings: dict[str, Any], tmp_path: Path, fake_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies while a plain `@function_tool` runs (before its side effect): the
    next worker runs the tool again and the run ends as the plain run did, on every engine
    (on Temporal the retried attempt reaches a worker that has not replayed the workflow
    yet; the workflow asks for the call again once it has)."""
    plain_dir, durable_dir = tmp_path / "plain", tmp_path / "durable"
    plain_dir.mkdir()
    durable_dir.mkdir()
    (plain_dir / crash_agents.GATE).touch()
    plain = await crash_agents.courier("deliver to Ada", str(plain_dir / "ledger.db"))
    plain_effects = [e.key for e in ledger.entries(str(plain_dir / "ledger.db"))]
    assert plain_effects == ["deliver|recipient: deliver to Ada"]

    monkeypatch.setenv(crash_agents.DIR_ENV, str(tmp_path))
    durable_ledger = str(durable_dir / "ledger.db")
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    id = f"courier-{uuid.uuid4().hex[:8]}"
    try:
        await client.start(crash_agents.courier_wf, "deliver to Ada", durable_ledger, id=id)
        first = workers.start(WORKER_MODULE)
        started = durable_dir / "deliver.started"
        for _ in range(900):
            if started.exists():
                break
            await asyncio.sleep(0.1)
        assert started.exists(), "the tool never started"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        (durable_dir / crash_agents.GATE).touch()
        workers.start(WORKER_MODULE)
        durable = await client.result(id, timeout=120)
    finally:
        workers.close()
        await client.close()
    assert durable == plain
    assert [e.key for e in ledger.entries(durable_ledger)] == plain_effects
