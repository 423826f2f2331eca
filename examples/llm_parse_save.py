"""The seed lab "call an LLM, parse the result, save to a database", offline.

Three activities run in sequence; `parse_json` fails on its first attempt (the lab's injected
failure), so the history shows the LLM call once, the parse step retried, and the save once:
the retry re-runs only the failing step, never the finished LLM call before it.

Run it with `bridge run examples.llm_parse_save:analyze '"some text"'`.

Nothing happens at import time (no connection, no file): Temporal's sandbox re-imports this
module to validate the workflow, and a module that does work on import fails there.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

import bridge

__all__ = ["Analysis", "AnalysisResult", "analyze", "call_llm", "parse_json", "save_to_db"]

#: Where `save_to_db` writes, relative to the working directory (next to the journal).
DEMO_DB = Path(".bridge") / "demo.db"

# The lab's policy (3 attempts, backoff 2.0) with a short first delay so the demo is quick.
RETRY = bridge.RetryPolicy(max_attempts=3, initial_interval=0.2, backoff=2.0)

_POSITIVE = {"good", "great", "fast", "love", "reliable", "excellent", "happy", "easy"}
_NEGATIVE = {"bad", "slow", "broken", "hate", "crash", "crashes", "bug", "awful", "hard"}


class Analysis(BaseModel):
    """What the "LLM" is asked to produce, validated the way the lab's Pydantic step does."""

    sentiment: Literal["positive", "negative", "neutral"]
    score: float = Field(ge=-1.0, le=1.0)
    keywords: list[str]
    summary: str


class AnalysisResult(BaseModel):
    row_id: int
    analysis: Analysis


@bridge.activity(retry=RETRY)
async def call_llm(prompt: str) -> str:
    """An offline, deterministic stand-in for a chat-completion call returning JSON text."""
    words = [w.strip(".,!?;:\"'()").lower() for w in prompt.split()]
    pos = sum(w in _POSITIVE for w in words)
    neg = sum(w in _NEGATIVE for w in words)
    total = pos + neg
    score = 0.0 if total == 0 else round((pos - neg) / total, 2)
    sentiment = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    keywords = sorted({w for w in words if w in _POSITIVE | _NEGATIVE})
    summary = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    # Models like to wrap JSON in a code fence; the parse step has to cope with it.
    body = json.dumps(
        {"sentiment": sentiment, "score": score, "keywords": keywords, "summary": summary}
    )
    return f"```json\n{body}\n```"


@bridge.activity(retry=RETRY)
async def parse_json(text: str) -> Analysis:
    """Extract and validate the JSON object in the model's answer."""
    if bridge.activity_info().attempt == 1:
        # The lab's injected failure: the first attempt always fails, the retry succeeds.
        raise RuntimeError("injected failure: parse_json fails on its first attempt")
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no JSON object in the model's answer: {text[:80]!r}")
    return Analysis.model_validate_json(text[start : end + 1])


@bridge.activity(retry=RETRY)
def save_to_db(analysis: Analysis, *, idempotency_key: str) -> int:
    """Insert the analysis once per idempotency key and return its row id.

    A retry or a replay after a crash passes the same key, so `INSERT OR IGNORE` turns an
    at-least-once step into an exactly-once row. A plain `def`: blocking I/O runs in a thread.
    """
    DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(DEMO_DB) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS analyses ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " idempotency_key TEXT NOT NULL UNIQUE,"
            " sentiment TEXT NOT NULL,"
            " score REAL NOT NULL,"
            " data TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT OR IGNORE INTO analyses (idempotency_key, sentiment, score, data)"
            " VALUES (?, ?, ?, ?)",
            (idempotency_key, analysis.sentiment, analysis.score, analysis.model_dump_json()),
        )
        row = conn.execute(
            "SELECT id FROM analyses WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
    conn.close()
    return int(row[0])


@bridge.workflow
async def analyze(ctx: bridge.Context, prompt: str) -> AnalysisResult:
    """LLM -> parse -> save, each a journaled step with its own retries."""
    text = await ctx.run(call_llm, prompt)
    analysis = await ctx.run(parse_json, text)
    row_id = await ctx.run(save_to_db, analysis)
    return AnalysisResult(row_id=row_id, analysis=analysis)
