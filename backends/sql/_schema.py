"""The sql backend's journal tables (`bridge.journal.schema`) under their on-disk names.

`bridge_meta`, `bridge_workflows`, `bridge_steps`, `bridge_timers`, `bridge_signals`.
"""

from __future__ import annotations

from bridge.journal.schema import journal_schema

# Migrations from version N to N+1 (`SCHEMA.migrations`), run in order inside one
# transaction when a database with an older schema is opened. Version 1 is the first
# schema, so there are none yet; tests register a fake one to prove the path works.
SCHEMA = journal_schema("bridge_", "workflows", version=1, migrations={})
