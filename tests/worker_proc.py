"""A worker process for crash tests: `python -m tests.worker_proc [MODULE ...]`.

Settings come from BRIDGE_* variables; SIGTERM stops it gracefully, SIGKILL is the crash.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys

import bridge


async def main(modules: list[str]) -> None:
    for m in ["tests.wfs", *modules]:
        importlib.import_module(m)
    client = await bridge.connect()
    worker = client.worker()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    print("worker ready", flush=True)
    await worker.run()
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
