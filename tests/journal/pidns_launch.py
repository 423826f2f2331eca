"""PID 1 of a fresh PID namespace: `python -m tests.journal.pidns_launch FLOOR CMD...`.

Run under `unshare --pid --fork --kill-child --mount-proc`. It makes the namespace's next pid
FLOOR + 1 (`/proc/sys/kernel/ns_last_pid`, root only), so workers in two namespaces get
different pids, as containers on one host usually do, then runs CMD and exits with its code.
Killing `unshare` kills this process, and with it every process in the namespace.
"""

from __future__ import annotations

import subprocess
import sys


def main(floor: str, command: list[str]) -> int:
    with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
        fh.write(floor)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
