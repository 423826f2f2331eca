"""examples/report_graph.py on every engine: the seeds' fetch/transform/report graph gives
LangGraph's own final state, and a worker killed right after `transform` is followed by one
that runs `report` alone. Temporal refuses graph workflows today (issue #16); its cases skip
with the backend's own refusal, and start failing the skip the day it accepts them."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

import bridge
from bridge.testing import ledger
from examples import report_graph as example
from tests.conftest import Workers
from tests.journal.test_crash import wait_for_steps

STEPS = ["report_graph.fetch", "report_graph.transform", "report_graph.report"]


async def skip_if_refused(client: bridge.Client) -> None:
    """Skip with the backend's exact reason when it will not serve the graph workflow."""
    try:
        async with client.worker([example.report_graph]):
            pass
    except bridge.ConfigError as exc:
        pytest.skip(f"{client.backend_name} refuses from_state_graph workflows (issue #16): {exc}")


def plumbing(ledger_path: str, gate: str = "") -> dict[str, Any]:
    return {"url": "https://example.com/fruit.csv", "ledger": ledger_path, "gate": gate}


async def test_graph_gives_langgraphs_own_final_state(
    client: bridge.Client, tmp_path: Path, ledger_path: str
) -> None:
    await skip_if_refused(client)
    plain = await example.builder.compile().ainvoke(plumbing(str(tmp_path / "plain.db")))
    async with client.worker([example.report_graph]):
        ours = await client.execute(
            example.report_graph, plumbing(ledger_path), id="report-1", timeout=60
        )
    drop = ("ledger", "gate")
    assert {k: v for k, v in ours.items() if k not in drop} == {
        k: v for k, v in plain.items() if k not in drop
    }
    assert ours["report"] == "3 rows, total 10"
    assert bridge.history.step_sequence(await client.history("report-1")) == STEPS
    assert ledger.counts(ledger_path) == {"fetch": 1, "transform": 1, "report": 1}


async def test_worker_killed_after_transform_resumes_with_report_only(
    settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    gate = tmp_path / "gate"
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await skip_if_refused(client)
        await client.start(example.report_graph, plumbing(ledger_path, str(gate)), id="report-2")
        first = workers.start("examples.report_graph")
        await wait_for_steps(client, "report-2", 2, timeout=60)  # fetch, transform journaled
        assert ledger.counts(ledger_path) == {"fetch": 1, "transform": 1}
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        gate.touch()
        workers.start("examples.report_graph")
        result = await client.result("report-2", timeout=90)
    finally:
        workers.close()
        await client.close()
    assert result["log"] == ["fetch", "transform", "report"]
    assert result["report"] == "3 rows, total 10"
    # fetch and transform ran once, before the kill; the new worker ran report alone.
    assert ledger.counts(ledger_path) == {"fetch": 1, "transform": 1, "report": 1}
