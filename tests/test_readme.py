"""The README's code blocks marked runnable run as written, so the docs cannot drift.

A block is runnable when the line before its opening fence is
`<!-- runnable: ... -->`. Each runs as a script in its own empty directory (so its SQLite
files and bridge.toml lookups start fresh), with this checkout importable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

_BLOCK = re.compile(r"<!-- runnable:[^>]*-->\n```python\n(.*?)\n```", re.S)


def runnable_blocks(text: str) -> list[str]:
    return _BLOCK.findall(text)


BLOCKS = runnable_blocks((ROOT / "README.md").read_text())


def test_the_readme_has_runnable_blocks() -> None:
    assert BLOCKS, "no block in README.md is marked <!-- runnable: ... -->"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip(), "the block printed nothing"
