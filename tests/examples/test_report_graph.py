"""examples/report_graph.py on every engine (sql, langgraph, Temporal): the seeds'
fetch/transform/report graph gives LangGraph's own final state, and a worker killed right
after `transform` is followed by one that runs `report` alone."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import bridge
from bridge.testing import ledger
from examples import report_graph as example
from tests.conftest import Workers
from tests.journal.test_crash import wait_for_steps

STEPS = ["report_graph.fetch", "report_graph.transform", "report_graph.report"]


def plumbing(ledger_path: str, gate: str = "") -> dict[str, Any]:
    return {"url": "https://example.com/fruit.csv", "ledger": ledger_path, "gate": gate}


async def test_graph_gives_langgraphs_own_final_state(
    client: bridge.Client, tmp_path: Path, ledger_path: str
) -> None:
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
