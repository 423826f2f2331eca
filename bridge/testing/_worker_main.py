"""The worker process crash injection kills: `python -m bridge.testing._worker_main MODULE ...`.

It imports the modules, runs a worker for every workflow they register, with settings from
the BRIDGE_* variables (like `bridge worker`). SIGTERM stops it gracefully; SIGKILL is the
crash. When BRIDGE_TEST_CRASH_PLAN holds a plan (JSON, written by `bridge.testing.crash`),
every registered activity is wrapped by a probe that, for the planned run only, parks the
attempt where the kill must land and appends a line to the plan's marker file, so the parent
kills at a known point instead of after a guessed sleep. A worker started without a plan
(the one that resumes the run) is an ordinary worker.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.activity import _REGISTRY as ACTIVITIES
from bridge.activity import activity_info
from bridge.client import connect_engine

PLAN_ENV = "BRIDGE_TEST_CRASH_PLAN"
READY = "worker ready"


@dataclass(frozen=True)
class Plan:
    """Where to park the run `workflow_id`'s activity attempts: `during_step` parks step
    `step` when it starts, `after_effect` once its function has returned (its result not
    yet recorded), and `after_step` parks every later step, so nothing runs past it."""

    workflow_id: str
    kind: str
    step: int
    marker: str

    def parks_before(self, workflow_id: str, step: int) -> bool:
        if workflow_id != self.workflow_id:
            return False
        if self.kind == "during_step":
            return step == self.step
        return self.kind == "after_step" and step > self.step

    def parks_after(self, workflow_id: str, step: int) -> bool:
        return workflow_id == self.workflow_id and self.kind == "after_effect" and step == self.step

    def mark(self, event: str, step: int, activity: str) -> None:
        line = json.dumps({"event": event, "step": step, "activity": activity})
        with open(self.marker, "a") as f:
            f.write(line + "\n")


def _probe(plan: Plan, name: str, fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """`fn`, parked forever (until the SIGKILL) where the plan says."""
    if is_async:

        @functools.wraps(fn)
        async def probe_async(*args: Any, **kwargs: Any) -> Any:
            info = activity_info()
            if plan.parks_before(info.workflow_id, info.step):
                plan.mark("entered", info.step, name)
                await asyncio.Event().wait()
            result = await fn(*args, **kwargs)
            if plan.parks_after(info.workflow_id, info.step):
                plan.mark("returned", info.step, name)
                await asyncio.Event().wait()
            return result

        return probe_async

    @functools.wraps(fn)
    def probe_sync(*args: Any, **kwargs: Any) -> Any:
        info = activity_info()  # a sync activity runs in a thread with the caller's context
        if plan.parks_before(info.workflow_id, info.step):
            plan.mark("entered", info.step, name)
            threading.Event().wait()
        result = fn(*args, **kwargs)
        if plan.parks_after(info.workflow_id, info.step):
            plan.mark("returned", info.step, name)
            threading.Event().wait()
        return result

    return probe_sync


def install(plan: Plan) -> None:
    """Wrap every registered activity with the probe (the definitions are shared with the
    workflow code and the engines' activity workers, so every backend calls the probe)."""
    for defn in ACTIVITIES.values():
        defn.fn = _probe(plan, defn.name, defn.fn, defn.is_async)  # type: ignore[method-assign]


async def main(modules: list[str]) -> None:
    for m in modules:
        importlib.import_module(m)
    raw = os.environ.get(PLAN_ENV)
    if raw:
        install(Plan(**json.loads(raw)))
    # A worker of the one engine under test (its settings come from the environment).
    client = await connect_engine()
    worker = client.worker()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    print(READY, flush=True)
    try:
        await worker.run()
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
