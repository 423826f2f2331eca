"""The sql backend under the compatibility harness: a fresh SQLite journal per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.testing.hookspecs import TestEnvironment


def fast_settings(url: str) -> dict[str, Any]:
    """Quick polling and short leases, so crash tests recover in seconds, not half a minute."""
    return {"url": url, "poll_interval": 0.02, "lease_seconds": 3.0}


class SqlTestEnvironment(TestEnvironment):
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"backend": "sql", "sql": fast_settings(f"sqlite:///{tmp_path}/bridge.db")}
