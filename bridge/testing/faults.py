"""A fault plan: which attempt of which activity fails or hangs, kept in a JSON file.

The plan is a file, not module state, so an activity in a worker subprocess (or in Temporal's
activity worker) reads the same plan as the test that wrote it. An activity calls
`apply(plan_path, label)` first; the attempt number comes from `bridge.activity_info()`, so
the plan decides by attempt, never by a counter that a crash would reset.

    plan = FaultPlan(tmp_path / "faults.json")
    plan.fail("charge", attempts=[1, 2], error="ConnectionError")
    plan.hang("fetch", seconds=5, attempts=[1])
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bridge
from bridge.errors import ConfigError

__all__ = ["FaultPlan", "InjectedFault", "apply"]


class InjectedFault(Exception):
    """Raised by `apply` when the plan names an error type that is not a builtin exception."""


def _error_type(name: str) -> type[BaseException]:
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return type(name, (InjectedFault,), {})


class FaultPlan:
    """Faults keyed by activity label and attempt number (1 is the first attempt)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self._write({})

    def __str__(self) -> str:
        return str(self.path)

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        data: dict[str, dict[str, dict[str, Any]]] = json.loads(self.path.read_text())
        return data

    def _write(self, data: dict[str, dict[str, dict[str, Any]]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)  # atomic: a reader never sees half a plan

    def _add(self, label: str, attempts: Iterable[int], fault: dict[str, Any]) -> FaultPlan:
        data = self._read()
        for n in attempts:
            if n < 1:
                raise ConfigError(f"fault plan for {label!r}: attempts count from 1, got {n}")
            data.setdefault(label, {})[str(n)] = fault
        self._write(data)
        return self

    def fail(
        self, label: str, *, attempts: Iterable[int], error: str = "ConnectionError"
    ) -> FaultPlan:
        """Make these attempts of `label` raise `error` (a builtin exception's name, or any
        other name, raised as a subclass of InjectedFault with that name)."""
        return self._add(label, attempts, {"error": error})

    def hang(self, label: str, *, seconds: float, attempts: Iterable[int]) -> FaultPlan:
        """Make these attempts of `label` sleep `seconds` before doing their work."""
        return self._add(label, attempts, {"sleep": seconds})

    def fault(self, label: str, attempt: int) -> dict[str, Any] | None:
        return self._read().get(label, {}).get(str(attempt))


async def apply(plan_path: str, label: str) -> None:
    """Inside an activity: do what the plan says for this attempt of `label` (or nothing)."""
    if not plan_path:
        return
    attempt = bridge.activity_info().attempt
    fault = FaultPlan(plan_path).fault(label, attempt)
    if fault is None:
        return
    if "sleep" in fault:
        await asyncio.sleep(float(fault["sleep"]))
    if "error" in fault:
        raise _error_type(str(fault["error"]))(
            f"injected fault: attempt {attempt} of {label!r} fails"
        )
