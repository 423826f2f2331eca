"""The bridge's own tables, kept in the same database as LangGraph's checkpoints.

LangGraph stores what it knows (the thread's checkpoints, each finished step as a task
write, interrupts and their answers). The journal tables (`bridge.journal.schema`) hold
what LangGraph has no place for:

- `bridge_lg_runs`: one row per run, so a run that crashed before LangGraph saved its first
  checkpoint is still known (langchain-ai/langgraph#8764), plus the status, lease and result
  that `describe`, `wait` and `list` read without loading a checkpoint.
- `bridge_lg_steps`: journal rows LangGraph has no task for: waits (timers and signals), patch
  markers, and the attempt history of a step that is still retrying. A finished step's row
  is not here: it is the step task's own write in LangGraph's `writes` table.
- `bridge_lg_timers`: durable timers (LangGraph has none); the worker resumes a thread when
  one is due.
- `bridge_lg_signals`: signals delivered by `client.signal`, kept until the waiting thread
  is resumed with them.

The names carry `lg_` so the sql backend's tables can live in the same PostgreSQL database.
"""

from __future__ import annotations

from bridge.journal.schema import journal_schema

SCHEMA = journal_schema("bridge_lg_", "runs", version=1, migrations={})
