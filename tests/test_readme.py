"""The README's and the migration guides' code blocks marked runnable run as written, so
the docs cannot drift.

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


DOCS = [ROOT / "README.md", *sorted((ROOT / "migrations-guide").glob("*.md"))]
BLOCKS = [
    (f"{doc.relative_to(ROOT)}#{i}", code)
    for doc in DOCS
    for i, code in enumerate(runnable_blocks(doc.read_text()))
]


def test_the_readme_and_each_guide_have_runnable_blocks() -> None:
    documented = {name.split("#")[0] for name, _ in BLOCKS}
    # The runbook's shell steps run as one session in tests/migrate/test_runbook.py.
    documented |= {
        str(doc.relative_to(ROOT)) for doc in DOCS if "<!-- runbook -->" in doc.read_text()
    }
    missing = [
        str(doc.relative_to(ROOT))
        for doc in DOCS
        if doc.name != "README.md" or doc.parent == ROOT
        if str(doc.relative_to(ROOT)) not in documented
    ]
    assert not missing, f"no block marked <!-- runnable: ... --> in {missing}"


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_readme_block_runs(name: str, code: str, tmp_path: Path) -> None:
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
    assert proc.returncode == 0, f"{name}:\n{proc.stdout}{proc.stderr}"
    assert proc.stdout.strip(), f"{name} printed nothing"
