"""A taken id: the same arguments attach, other arguments are a conflict (issue 13, defect 4).

The comparison is the client's, one for every backend, so each test runs on sql, langgraph
and temporal. No worker runs: a start is decided before any worker sees the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bridge
from bridge.errors import InvalidIdError, WorkflowIdConflictError
from tests.conftest import ROOT
from tests.wfs import five_steps, nap


async def test_same_arguments_attach_to_the_existing_run(
    client: bridge.Client, ledger_path: str
) -> None:
    first = await client.start(five_steps, ledger_path, 0, "", id="same-args")
    again = await client.start(five_steps, ledger_path, 0, "", id="same-args")
    assert (first.created, again.created) == (True, False)
    assert again.id == "same-args"


async def test_other_arguments_are_a_conflict_naming_the_id(
    client: bridge.Client, ledger_path: str
) -> None:
    await client.start(five_steps, ledger_path, 0, "", id="other-args")
    with pytest.raises(WorkflowIdConflictError, match=r"'other-args'.*gate_at differ"):
        await client.start(five_steps, ledger_path, 3, "", id="other-args")
    # The existing run keeps its own arguments: nothing was written by the refused start.
    started = (await client.history("other-args"))[0]
    assert started.type is bridge.EventType.WORKFLOW_STARTED
    assert started.args == {"ledger_path": ledger_path, "gate_at": 0, "gate": ""}


async def test_use_existing_attaches_whatever_the_arguments(
    client: bridge.Client, ledger_path: str
) -> None:
    await client.start(five_steps, ledger_path, 0, "", id="use-existing")
    handle = await client.start(
        five_steps, ledger_path, 3, "", id="use-existing", if_exists="use_existing"
    )
    assert (handle.id, handle.created) == ("use-existing", False)
    started = (await client.history("use-existing"))[0]
    assert started.args["gate_at"] == 0


async def test_another_workflow_is_a_conflict_even_with_use_existing(
    client: bridge.Client, ledger_path: str
) -> None:
    await client.start(five_steps, ledger_path, 0, "", id="other-workflow")
    with pytest.raises(WorkflowIdConflictError, match="other-workflow"):
        await client.start(nap, ledger_path, 1.0, id="other-workflow", if_exists="use_existing")


async def test_an_empty_id_is_refused_before_anything_is_written(
    client: bridge.Client, ledger_path: str
) -> None:
    with pytest.raises(InvalidIdError, match="id is empty"):
        await client.start(five_steps, ledger_path, 0, "", id="")
    assert all(d.id for d in await client.list(limit=1000))


async def test_an_unknown_if_exists_is_refused(client: bridge.Client, ledger_path: str) -> None:
    with pytest.raises(ValueError, match="if_exists"):
        await client.start(five_steps, ledger_path, 0, "", id="x", if_exists="replace")  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["start", "run"])
def test_cli_refuses_an_empty_id(command: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", command, "tests.wfs:nap", '["x", 0]', "--id", ""],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "BRIDGE_SQL_URL": f"sqlite:///{tmp_path}/j.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "error: --id is empty" in done.stderr
    assert not (tmp_path / "j.db").exists()
