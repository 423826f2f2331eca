"""examples/document_pipeline.py on every engine: the batch fans out, the progress query
drives a rich bar on the client side, and a worker killed mid-batch is followed by one that
redoes no finished document: every document is stored exactly once and every step ran once."""

from __future__ import annotations

import io
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

import bridge
from bridge.testing import ledger
from examples import document_pipeline as example
from tests.conftest import Workers, wait_until
from tests.journal.test_crash import wait_for_steps


def every_step(doc_ids: list[str]) -> Counter[str]:
    """The ledger of a batch in which each stage ran once on each document."""
    return Counter({f"{stage}:{d}": 1 for d in doc_ids for stage in example.STAGES})


async def test_batch_runs_in_parallel_waves_with_a_progress_bar(
    client: bridge.Client, ledger_path: str
) -> None:
    batch = example.sample_batch(6, parallelism=3).model_copy(update={"ledger": ledger_path})
    out = io.StringIO()
    async with client.worker([example.document_pipeline]):
        await client.start(example.document_pipeline, batch, id="docs-1")
        stored = await example.follow_progress(
            client, "docs-1", timeout=90, console=Console(file=out, width=100)
        )
        final = await client.query("docs-1", "progress")
    ids = [d.doc_id for d in batch.documents]
    assert [s.doc_id for s in stored] == ids
    assert [s.label for s in stored] == [
        "finance",
        "legal",
        "engineering",
        "general",
        "finance",
        "legal",
    ]
    assert final == {"total_docs": 6, "stored_docs": 6, "total_steps": 24, "done_steps": 24}
    assert "24/24" in out.getvalue() and "6/6 documents stored" in out.getvalue()
    assert ledger.counts(ledger_path) == every_step(ids)
    # Each wave is four gathers of three parallel steps, in document order.
    steps = bridge.history.step_sequence(await client.history("docs-1"))
    assert steps == [stage for _ in range(2) for stage in example.STAGES for _ in range(3)]


async def test_worker_killed_mid_batch_redoes_no_finished_document(
    settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    gate = tmp_path / "gate"
    batch = example.sample_batch(6, parallelism=2).model_copy(
        update={"ledger": ledger_path, "hold": "d003", "gate": str(gate)}
    )
    ids = [d.doc_id for d in batch.documents]
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await client.start(example.document_pipeline, batch, id="docs-2")
        first = workers.start("examples.document_pipeline")
        wait_until(Path(f"{gate}.reached").exists, timeout=60, what="the store of d003")
        # Wave 1 (8 steps) and wave 2 up to d002's store are journaled; d003's store hangs.
        await wait_for_steps(client, "docs-2", 15, timeout=60)
        before = ledger.counts(ledger_path)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        gate.touch()
        workers.start("examples.document_pipeline")
        result = await client.result("docs-2", timeout=90)
        final = await client.query("docs-2", "progress")
    finally:
        workers.close()
        await client.close()
    # The kill landed mid-batch: d000-d002 stored, d003 not, the last wave not begun.
    assert {f"store:{d}" for d in ids[:3]} <= set(before)
    assert "store:d003" not in before and "extract:d004" not in before
    stored = [s["doc_id"] if isinstance(s, dict) else s.doc_id for s in result]
    assert stored == ids
    assert final["stored_docs"] == 6 and final["done_steps"] == 24
    # Every document stored exactly once; no finished step ran again after the restart.
    assert ledger.counts(ledger_path) == every_step(ids)
