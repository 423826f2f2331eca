"""Two deliberately broken backends, to prove the conformance suite catches real bugs.

Both are the sql executor with one defect each, registered in code (importing this module
registers them, so a worker subprocess that imports it finds them too):

- `broken-rerun` forgets the newest completed step whenever it loads a run's journal, so a
  resumed run (after a signal, a timer or a crash) runs that step's side effect again;
- `broken-drop-signal` delivers a signal only to a run already waiting for it, and silently
  drops one sent earlier.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from backends.sql._backend import SqlBackend
from backends.sql._testing import fast_settings
from bridge.backend import Backend, Status
from bridge.config import Settings
from bridge.history import HistoryEvent
from bridge.journal.context import ACTIVITY, COMPLETED, StepRecord
from bridge.journal.history import build_history
from bridge.plugins import BackendRegistry, hookimpl, plugin_manager
from bridge.testing.hookspecs import TestEnvironment

RERUN, DROP_SIGNAL = "broken-rerun", "broken-drop-signal"


def _forget_newest_completed(steps: list[StepRecord]) -> list[StepRecord]:
    done = [s for s in steps if s.kind == ACTIVITY and s.status == COMPLETED]
    return [s for s in steps if s is not done[-1]] if done else steps


class RerunsCompletedStep(SqlBackend):
    name = RERUN

    def __init__(self, *, settings: Settings) -> None:
        super().__init__(settings=settings)
        # Only the worker's replay forgets; `history` reads the journal as it is, so the
        # defect shows as a repeated side effect, not as a missing event.
        self._load_steps = load = self.store.load_steps
        self.store.load_steps = lambda id: _forget_newest_completed(load(id))  # type: ignore[method-assign]

    async def history(self, id: str) -> list[HistoryEvent]:
        return build_history(self.store.get_run(id), self._load_steps(id))


class DropsEarlySignals(SqlBackend):
    name = DROP_SIGNAL

    async def signal(self, id: str, name: str, payload: Any) -> None:
        desc = await self.describe(id)
        if desc.status is Status.WAITING and desc.waiting_for == name:
            await super().signal(id, name, payload)


class BrokenTestEnvironment(TestEnvironment):
    worker_modules = (__name__,)

    def __init__(self, name: str) -> None:
        self.name = name

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"backend": self.name, "sql": fast_settings(f"sqlite:///{tmp_path}/bridge.db")}


def _factory(cls: type[SqlBackend]) -> Any:
    def create(settings: Settings) -> Backend:
        return cls(settings=settings)

    return create


@hookimpl
def bridge_register_backends(register: BackendRegistry) -> None:
    register.add(RERUN, _factory(RerunsCompletedStep))
    register.add(DROP_SIGNAL, _factory(DropsEarlySignals))


@hookimpl
def bridge_test_environment(name: str) -> TestEnvironment | None:
    return BrokenTestEnvironment(name) if name in (RERUN, DROP_SIGNAL) else None


if plugin_manager().get_plugin(__name__) is None:
    plugin_manager().register(sys.modules[__name__], name=__name__)
