"""The seeds' three-node LangGraph graph (fetch, transform, report), run durably.

The graph is a plain `StateGraph` with no bridge in it: `builder.compile().invoke(...)` runs
it as LangGraph always does. `adapters.langgraph.from_state_graph` turns the same graph into
the bridge workflow `report_graph`, whose every node is a journaled step, so a process killed
right after `transform` resumes on a new worker with `report` alone: `fetch` and `transform`
are answered from the journal, not run again (the seed's "inject sys.exit(1) after the
transform node ... the graph should execute only the report node").

Which engine runs it is configuration: sql, langgraph and Temporal (whose sandbox finds the
workflow by the module-level name it is bound to, `report_graph` here). LangGraph's own
Pregel loop decides what runs next; each node is one journaled step.

The `ledger` and `gate` state keys are plumbing for the offline demo and the tests: each
node appends one row to the ledger file per real execution (`bridge.testing.ledger`), and
`report` waits for the gate file when one is named, so a worker can be killed between
`transform` and `report` at a known point.

Run it with `bridge run examples.report_graph:report_graph '{"url": "https://example.com/fruit.csv"}'`.

Nothing happens at import time beyond building the graph object (no I/O, no connection):
worker processes import this module.
"""

from __future__ import annotations

import operator
import time
from pathlib import Path
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from adapters.langgraph import from_state_graph
from bridge.testing import ledger

__all__ = ["Report", "build", "builder", "fetch", "report", "report_graph", "transform"]


class Report(TypedDict, total=False):
    """The graph's state; `log` shows the nodes that ran, merged by `operator.add`."""

    url: str
    ledger: str  # where nodes count their executions (plumbing)
    gate: str  # `report` waits for this file when set (plumbing)
    raw: str
    rows: list[dict[str, int]]
    report: str
    log: Annotated[list[str], operator.add]


def _count(state: Report, node: str) -> None:
    if state.get("ledger"):
        ledger.record(state["ledger"], node, node)


def fetch(state: Report) -> Report:
    """Fetch the source (offline: a fixed CSV-like line)."""
    _count(state, "fetch")
    return {"raw": f"apples=3;pears=5;plums=2 from {state['url']}", "log": ["fetch"]}


def transform(state: Report) -> Report:
    """Parse the fetched text into rows."""
    _count(state, "transform")
    pairs = state["raw"].split(" from ")[0].split(";")
    return {"rows": [{k: int(v)} for k, v in (p.split("=") for p in pairs)], "log": ["transform"]}


def report(state: Report) -> Report:
    """Summarize the rows."""
    gate = state.get("gate")
    while gate and not Path(gate).exists():
        time.sleep(0.02)
    _count(state, "report")
    total = sum(v for row in state["rows"] for v in row.values())
    return {"report": f"{len(state['rows'])} rows, total {total}", "log": ["report"]}


def build() -> StateGraph[Any]:
    """The seed's graph: START -> fetch -> transform -> report -> END."""
    graph = StateGraph(Report)
    graph.add_node("fetch", fetch)
    graph.add_node("transform", transform)
    graph.add_node("report", report)
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", "transform")
    graph.add_edge("transform", "report")
    graph.add_edge("report", END)
    return graph


#: The graph as LangGraph users have it (compile it with any checkpointer, as usual).
builder = build()
#: The same graph as a durable bridge workflow; its steps are "report_graph.<node>".
report_graph = from_state_graph(builder, name="report_graph")
