"""An agent loop killed with SIGKILL after its second model call resumes without repeating.

The model's invocation counter and the tools' ledger live in files, so they count across the
killed process: each model turn is asked for exactly once, and each tool ran once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.agents_wfs import CRASH_MODEL, TEST_DIR_ENV, crash_research
from tests.conftest import Workers

MODEL_CALL = "openai_agents.model_call"


async def completed(client: bridge.Client, id: str) -> list[str]:
    try:
        history = await client.history(id)
    except bridge.WorkflowNotFoundError:
        return []
    return bridge.history.step_sequence(history)


async def test_sigkill_after_second_model_call_repeats_nothing(
    settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the scripted model, never the API
    monkeypatch.setattr(CRASH_MODEL, "counter_path", str(tmp_path / "model_calls.db"))
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await client.start(crash_research, "what are durable agents?", id="agent-crash-1")
        first = workers.start("tests.agents_wfs")
        # model call, search, model call: the third step journaled is the second model call;
        # the next tool (read_page) waits for the gate, so the kill lands before it acts.
        deadline = time.monotonic() + 60
        while (await completed(client, "agent-crash-1")).count(MODEL_CALL) < 2:
            assert time.monotonic() < deadline, "the second model call was not journaled"
            assert first.poll() is None, "the worker died on its own"
            await asyncio.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert CRASH_MODEL.invocations() == [0, 1]
        (tmp_path / "gate").touch()
        workers.start("tests.agents_wfs")
        result = await client.result("agent-crash-1", timeout=60)
        steps = await completed(client, "agent-crash-1")
    finally:
        workers.close()
        await client.close()
    assert result == "Durable agents resume where they stopped."
    assert steps == [MODEL_CALL, "find_pages", MODEL_CALL, "read_page", MODEL_CALL]
    # Each model turn was asked for once, in order, across both processes.
    assert CRASH_MODEL.invocations() == [0, 1, 2]
    calls = ledger.counts(tmp_path / "ledger.db")
    assert sorted(calls) == ["fetch|agent-crash-1:3", "search|agent-crash-1:1"]
    assert set(calls.values()) == {1}, calls
