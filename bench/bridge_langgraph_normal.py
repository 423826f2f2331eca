"""The LangGraph backend at `langgraph.durability = "NORMAL"`: survives a killed process, not
a power cut (SQLite fsyncs the WAL at checkpoints only).

Reported beside the FULL figures: a step is still committed before the workflow sees it,
so a killed worker never repeats a finished step, but the commit costs no fsync. Raw
LangGraph runs at SqliteSaver's default (FULL) without waiting for its commits.

    python -m bench.bridge_langgraph_normal sequential|concurrent|resume [--quick] [--json]
"""

from __future__ import annotations

import dataclasses

from bench import bridge_langgraph
from bench._harness import child_main

bridge_langgraph.DURABILITY = "NORMAL"

ENGINE = dataclasses.replace(
    bridge_langgraph.ENGINE,
    name="bridge_langgraph_normal",
    durability="langgraph.durability=NORMAL (WAL, fsync at checkpoints; commit before return)",
)

if __name__ == "__main__":
    child_main(ENGINE)
