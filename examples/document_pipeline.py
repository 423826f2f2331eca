"""A batch document pipeline: extract, embed, classify and store each document, the
documents fanned out in parallel, with a progress bar and a resume that redoes nothing.

The seeds' "batch-processing-as-an-agent" pattern (each document a small DAG: extract,
embed, classify, store), written with the neutral API:

- The batch runs in waves of `parallelism` documents. Within a wave each stage is one
  `ctx.gather` of one journaled step per document, so the documents of a wave run in
  parallel and step indices follow document order, the same on every replay (indices are
  taken when `ctx.run` is called). Waves bound how many documents are in flight, the
  concurrency cap a model provider's rate limit asks for.
- Every finished step is journaled, so a worker killed mid-batch is followed by one that
  replays the finished documents (and the finished stages of the wave in flight) from the
  journal and runs only what had not finished. `store` takes a keyword-only
  `idempotency_key` (`"<workflow id>:<step>"`), the key a real vector store's upsert
  would take, so even a store interrupted after its write commits one row.
- Progress is a query: the workflow counts finished steps in its own state and publishes
  them with `ctx.set_query_handler("progress", ...)`. `follow_progress` polls
  `client.query(id, "progress")` and draws a rich progress bar on the client side; it
  works the same on every engine, from any process, without touching the worker.

Offline by default: the steps are deterministic stand-ins (a hash "embedding", a keyword
"classifier"), and each appends one row per real execution to a ledger file when the batch
names one (`bridge.testing.ledger`), which is how the tests prove no finished step ran
again. `hold`/`gate` are test plumbing: the store of document `hold` waits for the file
`gate`, so a worker can be killed mid-batch at a known point.

Run it with `bridge run examples.document_pipeline:document_pipeline
'{"batch_id": "b1", "documents": [{"doc_id": "d0", "text": "Invoice 42"}]}'`, or with the
progress bar: `python -c "import asyncio, examples.document_pipeline as d;
asyncio.run(d.demo())"`.

Nothing happens at import time: worker processes and Temporal's sandbox import this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

import bridge
from bridge.testing import ledger

__all__ = [
    "STAGES",
    "Batch",
    "Document",
    "Progress",
    "Stored",
    "classify",
    "demo",
    "document_pipeline",
    "embed",
    "extract",
    "follow_progress",
    "sample_batch",
    "store",
]

T = TypeVar("T")

#: The steps each document goes through, in order.
STAGES = ("extract", "embed", "classify", "store")

RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.1, backoff=2.0)

_LABELS = {
    "invoice": "finance",
    "payment": "finance",
    "contract": "legal",
    "agreement": "legal",
    "bug": "engineering",
    "deploy": "engineering",
}


class Document(BaseModel):
    doc_id: str
    text: str


class Batch(BaseModel):
    """A batch of documents. `ledger`, `hold` and `gate` are plumbing (see the module doc)."""

    batch_id: str
    documents: list[Document]
    #: Documents in flight at once (one wave).
    parallelism: int = 4
    ledger: str | None = None
    #: The id of the document whose `store` waits for the file `gate`.
    hold: str | None = None
    gate: str | None = None


class Stored(BaseModel):
    doc_id: str
    label: str
    row: str


class Progress(BaseModel):
    """The answer of the `progress` query: finished steps and stored documents."""

    total_docs: int
    stored_docs: int
    total_steps: int
    done_steps: int


def _count(batch_ledger: str | None, stage: str, doc_id: str) -> None:
    """One ledger row per real execution of `stage` on `doc_id`."""
    if batch_ledger:
        ledger.record(batch_ledger, f"{stage}:{doc_id}", stage)


@bridge.activity(retry=RETRY)
def extract(doc: Document, ledger_path: str | None) -> str:
    """Extract plain text (offline: normalise whitespace and case)."""
    _count(ledger_path, "extract", doc.doc_id)
    return " ".join(doc.text.split()).lower()


@bridge.activity(retry=RETRY)
def embed(doc_id: str, text: str, ledger_path: str | None) -> list[float]:
    """Embed the text (offline: 8 numbers from its SHA-256, stable across runs)."""
    _count(ledger_path, "embed", doc_id)
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255, 4) for b in digest[:8]]


@bridge.activity(retry=RETRY)
def classify(doc_id: str, text: str, ledger_path: str | None) -> str:
    """Classify the document (offline: the first known keyword decides)."""
    _count(ledger_path, "classify", doc_id)
    for word in text.replace(".", " ").split():
        if word in _LABELS:
            return _LABELS[word]
    return "general"


@bridge.activity(retry=RETRY)
def store(
    doc_id: str,
    label: str,
    vector: list[float],
    ledger_path: str | None,
    hold: str | None,
    gate: str | None,
    *,
    idempotency_key: str,
) -> str:
    """Upsert the document's vector and label, keyed by `idempotency_key` (offline: a
    ledger row). `hold`/`gate` park this call for the crash test."""
    if gate and hold == doc_id:
        Path(f"{gate}.reached").touch()
        while not Path(gate).exists():
            time.sleep(0.02)
    _count(ledger_path, "store", doc_id)
    return f"row:{idempotency_key}"


def _waves(docs: list[Document], size: int) -> Iterator[list[Document]]:
    for start in range(0, len(docs), max(size, 1)):
        yield docs[start : start + max(size, 1)]


@bridge.workflow
async def document_pipeline(ctx: bridge.Context, batch: Batch) -> list[Stored]:
    """Extract, embed, classify and store every document, a wave of them in parallel."""
    docs = batch.documents
    progress = Progress(
        total_docs=len(docs), stored_docs=0, total_steps=len(docs) * len(STAGES), done_steps=0
    )
    ctx.set_query_handler("progress", lambda: progress.model_dump())

    async def counted(step: Awaitable[T]) -> T:
        result = await step
        progress.done_steps += 1
        return result

    stored: list[Stored] = []
    for wave in _waves(docs, batch.parallelism):
        texts = await ctx.gather(counted(ctx.run(extract, d, batch.ledger)) for d in wave)
        vectors = await ctx.gather(
            counted(ctx.run(embed, d.doc_id, t, batch.ledger))
            for d, t in zip(wave, texts, strict=True)
        )
        labels = await ctx.gather(
            counted(ctx.run(classify, d.doc_id, t, batch.ledger))
            for d, t in zip(wave, texts, strict=True)
        )
        rows = await ctx.gather(
            counted(ctx.run(store, d.doc_id, lb, v, batch.ledger, batch.hold, batch.gate))
            for d, lb, v in zip(wave, labels, vectors, strict=True)
        )
        stored += [
            Stored(doc_id=d.doc_id, label=lb, row=r)
            for d, lb, r in zip(wave, labels, rows, strict=True)
        ]
        progress.stored_docs = len(stored)
    return stored


async def follow_progress(
    client: bridge.Client,
    id: str,
    *,
    timeout: float = 300.0,
    poll: float = 0.2,
    console: Any = None,
) -> list[Stored]:
    """Draw a rich progress bar for run `id` from its `progress` query until it ends, and
    return its result. Client-side only: any process with a client can follow any run.

    A query asked before the run has set its handler (or before it exists) is retried:
    the bar simply starts a moment later.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bar

    result = asyncio.ensure_future(client.result(id, timeout=timeout))
    with Bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[docs]}"),
        console=console,
    ) as bar:
        task = bar.add_task(id, total=None, docs="")
        while True:
            finished = result.done()
            try:
                now = Progress.model_validate(await client.query(id, "progress"))
            except (bridge.WorkflowNotFoundError, bridge.NotRegisteredError):
                now = None
            if now is not None:
                bar.update(
                    task,
                    total=now.total_steps,
                    completed=now.done_steps,
                    docs=f"{now.stored_docs}/{now.total_docs} documents stored",
                )
            if finished:
                break
            await asyncio.wait({result}, timeout=poll)
    return [Stored.model_validate(s) if isinstance(s, dict) else s for s in result.result()]


def sample_batch(n: int = 12, *, batch_id: str = "batch-1", parallelism: int = 4) -> Batch:
    """`n` small offline documents with a mix of labels."""
    topics = ["Invoice {i} is due", "Contract {i} renewal", "Bug {i} after deploy", "Note {i}"]
    docs = [
        Document(doc_id=f"d{i:03d}", text=topics[i % len(topics)].format(i=i)) for i in range(n)
    ]
    return Batch(batch_id=batch_id, documents=docs, parallelism=parallelism)


async def demo(n: int = 12) -> list[Stored]:
    """Run a sample batch on the configured engine (bridge.toml / BRIDGE_*), with the bar."""
    client = await bridge.connect()
    try:
        async with client.worker([document_pipeline]):
            batch = sample_batch(n)
            await client.start(document_pipeline, batch, id=f"docs/{batch.batch_id}")
            return await follow_progress(client, f"docs/{batch.batch_id}")
    finally:
        await client.close()
