"""Helpers for writing a conformance scenario: waiting with a timeout that names the scenario.

Shared by the suite's own scenarios and those a plugin adds (`bridge_test_scenarios`), so
a plugin's failure messages read like the suite's. Imports nothing of the suite, so a
plugin module can import it while the suite is collecting the plugins' scenarios.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import bridge
from bridge.errors import TimeoutWaitingError

#: Seconds a scenario waits for a run to finish before it fails, naming what it waited for.
RESULT_TIMEOUT = 30.0


async def result_of(
    client: bridge.Client, id: str, *, scenario: str, timeout: float = RESULT_TIMEOUT
) -> Any:
    """The run's result; a run still going after `timeout` fails the scenario with its state."""
    try:
        return await client.result(id, timeout=timeout)
    except TimeoutWaitingError:
        desc = await client.describe(id)
        waiting = f", waiting for {desc.waiting_for!r}" if desc.waiting_for else ""
        raise AssertionError(
            f"{scenario}: run {id!r} did not finish within {timeout}s "
            f"(still {desc.status.value}{waiting})"
        ) from None


async def wait_for_status(
    client: bridge.Client,
    id: str,
    status: bridge.Status,
    *,
    scenario: str,
    timeout: float = RESULT_TIMEOUT,
) -> bridge.WorkflowDescription:
    deadline = time.monotonic() + timeout
    last = "not started"
    while time.monotonic() < deadline:
        try:
            desc = await client.describe(id)
        except bridge.WorkflowNotFoundError:
            desc = None
        if desc is not None:
            if desc.status is status:
                return desc
            last = desc.status.value
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"{scenario}: run {id!r} did not reach {status.value} within {timeout}s (last: {last})"
    )


def times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def new_id(prefix: str) -> str:
    """A run id of this test's own: on a shared server (Temporal) ids outlive a test."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
