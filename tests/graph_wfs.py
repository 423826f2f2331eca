"""LangGraph graphs the adapter tests wrap, importable by worker subprocesses.

`pipeline` is the seeds' fetch/transform/report graph (shared/seeds, "Build a three-node
LangGraph workflow ... nodes fetch, transform, and report"), written as a plain StateGraph
with no bridge in it; `from_state_graph` makes it a workflow.
"""

from __future__ import annotations

import operator
import os
import time
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from adapters.langgraph import from_state_graph
from tests import ledger


class Pipeline(TypedDict, total=False):
    url: str
    ledger: str  # where nodes count their calls (test plumbing)
    gate: str  # `report` waits for this file when set (test plumbing)
    raw: str
    rows: list[dict[str, int]]
    report: str
    log: Annotated[list[str], operator.add]


def fetch(state: Pipeline) -> Pipeline:
    ledger.record(state["ledger"], "fetch")
    return {"raw": f"apples=3;pears=5;plums=2 from {state['url']}", "log": ["fetch"]}


def transform(state: Pipeline) -> Pipeline:
    ledger.record(state["ledger"], "transform")
    pairs = state["raw"].split(" from ")[0].split(";")
    rows = [{k: int(v)} for k, v in (p.split("=") for p in pairs)]
    return {"rows": rows, "log": ["transform"]}


def report(state: Pipeline) -> Pipeline:
    while state.get("gate") and not os.path.exists(state["gate"]):
        time.sleep(0.02)
    ledger.record(state["ledger"], "report")
    total = sum(v for row in state["rows"] for v in row.values())
    return {"report": f"{len(state['rows'])} rows, total {total}", "log": ["report"]}


builder = StateGraph(Pipeline)
builder.add_node("fetch", fetch)
builder.add_node("transform", transform)
builder.add_node("report", report)
builder.add_edge(START, "fetch")
builder.add_edge("fetch", "transform")
builder.add_edge("transform", "report")
builder.add_edge("report", END)

pipeline = from_state_graph(builder, name="pipeline")
