"""Fixtures of the langgraph backend (loaded by tests/conftest.py as a pytest plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def fast_langgraph(url: str) -> dict[str, Any]:
    """LangGraph settings tuned for tests: quick polling, short leases."""
    return {"url": url, "poll_interval": 0.02, "lease_seconds": 3.0}


@pytest.fixture
def langgraph_settings(tmp_path: Path) -> dict[str, Any]:
    """A fresh SqliteSaver database (plus the bridge's tables) per test."""
    return {"backend": "langgraph", "langgraph": fast_langgraph(f"sqlite:///{tmp_path}/lg.db")}
