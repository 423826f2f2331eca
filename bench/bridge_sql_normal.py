"""The SQL executor at `sql.durability = "NORMAL"`: survives a killed process, not a power cut.

Reported beside the FULL figures because the issue asks for both; the peers run at their
strongest setting, so compare them with `bridge_sql`, not with this one.

    python -m bench.bridge_sql_normal sequential|concurrent|resume [--quick] [--json]
"""

from __future__ import annotations

import dataclasses

from bench import bridge_sql
from bench._harness import child_main

bridge_sql.DURABILITY = "NORMAL"

ENGINE = dataclasses.replace(
    bridge_sql.ENGINE,
    name="bridge_sql_normal",
    durability="sql.durability=NORMAL (WAL, fsync at checkpoints only; group commit)",
)

if __name__ == "__main__":
    child_main(ENGINE)
