"""`bridge compat`: the research agent example, 20 scripted inputs, sql against the others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bridge
from adapters.openai_agents import run_agent
from examples.research_agent import ResearchResult, research_agent, search_web
from tests.conftest import ROOT, settings_env

BRIDGE = str(Path(sys.executable).parent / "bridge")  # the console script
INPUTS = ROOT / "tests" / "compat_inputs" / "research.jsonl"


@bridge.workflow
async def research_prechecked(ctx: bridge.Context, topic: str) -> ResearchResult:
    """The example's workflow, changed: it searches once itself before the agent runs."""
    await ctx.run(search_web, topic, 1)
    return (await run_agent(research_agent(), topic, max_turns=10)).final_output


def _compat(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**env, "COLUMNS": "200"}
    env.pop("OPENAI_API_KEY", None)  # the example's offline model
    return subprocess.run(
        [BRIDGE, "compat", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_research_agent_has_the_same_trajectory_on_every_backend(
    temporal_settings: dict[str, Any], tmp_path: Path
) -> None:
    # Engine settings come from the environment, as a CI job would pass them; sql and
    # langgraph keep their journals under tmp_path/.bridge (the working directory).
    env = settings_env(temporal_settings)
    done = _compat(
        [
            "examples.research_agent:research",
            "--from", "sql", "--to", "temporal", "--to", "langgraph",
            "--inputs", str(INPUTS), "--json",
        ],
        env,
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["ok"] is True
    for name in ("temporal", "langgraph"):
        result = report["candidates"][name]
        assert (result["same"], result["inputs"]) == (20, 20), name
        statuses = {c["candidate"]["status"] for c in result["comparisons"]}
        assert statuses == {"COMPLETED"}, name
    # The inputs were really varied: approvals and refusals, each on its own topic.
    labels = [c["label"] for c in report["candidates"]["temporal"]["comparisons"]]
    assert len(set(labels)) == 20 and sum("refused" in label for label in labels) == 4


@pytest.mark.slow
def test_a_changed_workflow_is_reported_at_its_first_differing_step(
    langgraph_settings: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("\n".join(INPUTS.read_text().splitlines()[:2]) + "\n")
    env = settings_env(langgraph_settings)
    done = _compat(
        [
            "examples.research_agent:research",
            "--to", "langgraph",
            "--candidate", "tests.cli.test_compat:research_prechecked",
            "--inputs", str(inputs),
        ],
        env,
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr + done.stdout
    assert "sql -> langgraph: DIFFERENT trajectories for 0 of 2 inputs" in done.stdout
    assert (
        "first difference at input #0: at position 0: sql has step 0 (activity "
        "'openai_agents.model_call'), langgraph has step 0 (activity 'search_web')"
    ) in done.stdout


def test_bad_inputs_are_refused_with_the_line(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('["ok"]\n{"args": [], "signal": {}}\n')
    done = _compat(
        ["examples.research_agent:research", "--to", "langgraph", "--inputs", str(inputs)],
        settings_env({"backend": "sql"}),
        tmp_path,
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.replace("│", " ").split())
    assert f"Invalid value for --inputs: {inputs}:2: not an input" in message
    assert "unknown keys ['signal']" in message


@pytest.mark.slow
def test_crash_checks_kill_a_candidate_worker_and_compare_with_the_reference(
    langgraph_settings: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(INPUTS.read_text().splitlines()[0] + "\n")
    done = _compat(
        [
            "examples.research_agent:research",
            "--to", "langgraph",
            "--inputs", str(inputs),
            "--crash", "--crash-at", "signal:approval:save_report",
            "--json",
        ],
        settings_env(langgraph_settings),
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["crash"] == [
        {
            "backend": "langgraph",
            "kill_at": "while waiting for signal 'approval:save_report'",
            "status": "COMPLETED",
            "ok": True,
            "problems": [],
        }
    ]
