"""The live-migration runbook (migrations-guide/runbook.md) followed as written: its bash
blocks marked `<!-- runbook -->` run in order, as one shell session, in an empty directory:
a real Temporal dev server, a sql and a Temporal worker, five orders a second moved from sql
to Temporal and back, and the runbook's own check that no order was lost or doubled."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

RUNBOOK = ROOT / "migrations-guide" / "runbook.md"
_STEP = re.compile(r"<!-- runbook -->\n```bash\n(.*?)\n```", re.S)


def runbook_steps(text: str) -> list[str]:
    return _STEP.findall(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_runbook_has_its_steps() -> None:
    steps = runbook_steps(RUNBOOK.read_text())
    assert len(steps) >= 6, "the runbook lost its <!-- runbook --> blocks"
    assert any("wait-drained place_order sql" in s for s in steps)
    assert any("orders_load check" in s for s in steps)


def test_the_runbook_migrates_a_live_workload_to_temporal_and_back(tmp_path: Path) -> None:
    port = str(_free_port())
    # The runbook's Temporal port, swapped for a free one: another server may hold 7233.
    steps = [s.replace("7233", port) for s in runbook_steps(RUNBOOK.read_text())]
    script = tmp_path / "runbook.sh"
    script.write_text(
        "set -euo pipefail\n"
        # Whatever a failed step leaves running is stopped, as the reader would.
        "trap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT\n" + "\n".join(steps) + "\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-2000:]}"
        for p in sorted((tmp_path / ".bridge" / "runbook").glob("*.log"))
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}\n{logs}"
    check = re.search(r"(\d+) orders: (\d+) completed .*?; (\d+) problem", proc.stdout)
    assert check, proc.stdout
    total, completed, problems = map(int, check.groups())
    assert total >= 20 and completed == total and problems == 0, proc.stdout
    engines = re.search(r"by engine: (.*)", proc.stdout)
    assert engines and "sql" in engines.group(1) and "temporal" in engines.group(1), proc.stdout
    assert "sql is drained for place_order" in proc.stdout
    assert "temporal is drained for place_order" in proc.stdout
