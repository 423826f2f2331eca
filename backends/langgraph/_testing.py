"""The langgraph backend under the compatibility harness: a fresh SqliteSaver per test."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from bridge.testing.hookspecs import TestEnvironment


def fast_settings(url: str) -> dict[str, Any]:
    """Quick polling and short leases, so crash tests recover in seconds, not half a minute."""
    return {"url": url, "poll_interval": 0.02, "lease_seconds": 3.0}


class LangGraphTestEnvironment(TestEnvironment):
    def missing(self) -> str | None:
        if importlib.util.find_spec("langgraph") is None:
            return 'LangGraph is not installed (pip install "durable-bridge[langgraph]")'
        return None

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"backend": "langgraph", "langgraph": fast_settings(f"sqlite:///{tmp_path}/lg.db")}
