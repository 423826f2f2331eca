"""The percentage ramp: which keys of a workflow type start on the new engine.

A key's bucket is a stable function of (workflow type, key) through SHA-256, the same in
every process and every Python version (never `hash()`, which is salted per process). A key
goes to the new engine when its bucket is below the ramp, so raising the ramp only moves keys
forward: a key on the new engine at ramp r is on it at every r' > r.
"""

from __future__ import annotations

import hashlib

__all__ = ["BUCKETS", "bucket", "on_new_engine"]

#: 10,000 buckets: a ramp can be set to a hundredth of a percent.
BUCKETS = 10_000


def bucket(workflow: str, key: str) -> int:
    """The key's bucket in [0, BUCKETS). The workflow type is hashed in so that two types
    ramping at once do not move the same keys (a debtor id used by both, say)."""
    digest = hashlib.sha256(f"{workflow}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def on_new_engine(workflow: str, key: str, ramp: float) -> bool:
    """True when `key` starts on the new engine at `ramp` percent (0 to 100)."""
    return bucket(workflow, key) < ramp * (BUCKETS / 100)
