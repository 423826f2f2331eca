"""Shadow mode of the migration router on real engines: the primary on sql, the candidate on
langgraph (and sql against itself, A/A). The candidate's changed code runs in a worker
subprocess, so its answers cross processes through the shadow store; a ledger proves that
only the primary's side effects ever ran."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bridge
from bridge.cli import app
from bridge.migrate import shadow
from bridge.migrate.compare import diff_values, strip
from tests import ledger
from tests.conftest import ROOT, Workers, fast_sql
from tests.shadow_wfs import FEE_CENTS, checkout, greet, send

pytestmark = pytest.mark.timeout(90)

IGNORE = ["sent_at", "finished_at"]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/shadow.db"


@pytest.fixture(autouse=True)
def checkout_config() -> Iterator[None]:
    shadow.configure(checkout, ignore=IGNORE)
    yield
    shadow.configure(checkout)


@pytest.fixture
async def primary(sql_settings: dict[str, Any]) -> AsyncIterator[bridge.Client]:
    client = await bridge.connect(sql_settings)
    async with client.worker([checkout]):
        yield client
    await client.close()


@pytest.fixture
async def candidate(langgraph_settings: dict[str, Any]) -> AsyncIterator[bridge.Client]:
    client = await bridge.connect(langgraph_settings)
    yield client
    await client.close()


async def run_primary(client: bridge.Client, ledger_path: str) -> tuple[str, dict[str, Any]]:
    """One checkout on the primary, approved by signal; its id and result."""
    order = uuid.uuid4().hex[:8]
    handle = await client.start(checkout, ledger_path, order, 3, 1000, id=f"order-{order}")
    await handle.signal("approve", {"by": "alice"})
    return handle.id, await handle.result(timeout=30)


def assert_only_primary_effects(ledger_path: str, primary_ids: list[str]) -> None:
    """Every side effect in the ledger belongs to a primary run; each step ran once (the
    coupon's three attempts are the primary's retries). `price`, declared side-effect free,
    is the one activity a shadow run executes."""
    keys = ledger.counts(ledger_path)
    assert keys, "the primary ran no side effect at all"
    effects = {k: n for k, n in keys.items() if not k.startswith("price|")}
    assert not [k for k in effects if "shadow:" in k], f"a shadow run executed: {keys}"
    for wid in primary_ids:
        assert effects[f"reserve|{wid}:0"] == 1
        assert effects[f"charge|{wid}:2"] == 1
        assert effects[f"apply_coupon|{wid}:3"] == 3
        assert effects[f"notify|{wid}:5"] == 1
        assert keys[f"price|{wid}:1"] == 1
    assert sum(effects.values()) == 6 * len(primary_ids)


async def test_identical_candidate_is_matched(
    primary: bridge.Client, candidate: bridge.Client, ledger_path: str, store_url: str
) -> None:
    wid, result = await run_primary(primary, ledger_path)
    assert result["coupon"].endswith(
        "failed after 3 attempt(s): ValueError: coupon 'SPRING' has expired"
    )

    async with candidate.worker([checkout]):
        outcome = await shadow.shadow(primary, candidate, wid, store=store_url, timeout=30)

    assert outcome is not None
    assert outcome.status == shadow.MATCHED, outcome.diff
    assert (outcome.primary_engine, outcome.candidate_engine) == ("sql", "langgraph")
    assert outcome.diff == "" and outcome.first_step is None
    # The shadow really ran on langgraph, step for step, with the primary's answers.
    desc = await candidate.describe(shadow.shadow_id(wid))
    assert desc.status is bridge.Status.COMPLETED
    assert strip(desc.result, IGNORE) == strip(result, IGNORE)
    assert bridge.history.step_sequence(await candidate.history(shadow.shadow_id(wid))) == [
        "shadow_reserve",
        "shadow_price",
        "shadow_charge",
        "shadow_notify",
    ]
    assert_only_primary_effects(ledger_path, [wid])
    # The side-effect-free activity ran for real in the shadow run, and only it.
    shadow_calls = [k for k in ledger.counts(ledger_path) if "shadow:" in k]
    assert shadow_calls == [f"price|{shadow.shadow_id(wid)}:1"]
    # Idempotent: asking again returns the stored outcome and starts nothing.
    again = await shadow.shadow(primary, candidate, wid, store=store_url, timeout=5)
    assert again == outcome


async def test_changed_candidate_in_another_process_is_mismatched_at_its_step(
    primary: bridge.Client,
    candidate: bridge.Client,
    langgraph_settings: dict[str, Any],
    ledger_path: str,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wid, _ = await run_primary(primary, ledger_path)
    # The candidate's worker is another process with changed code (a fee added to the
    # charge at step 2); it finds the answers through the shadow store ([router] url).
    monkeypatch.setenv("SHADOW_WFS_VARIANT", "changed_args")
    workers = Workers({**langgraph_settings, "router": {"url": store_url}}, tmp_path)
    try:
        workers.start("tests.shadow_wfs")
        outcome = await shadow.shadow(primary, candidate, wid, store=store_url, timeout=60)
    finally:
        workers.close()

    assert outcome is not None
    assert outcome.status == shadow.MISMATCHED
    assert outcome.first_step == 2
    assert "step 2 (activity 'shadow_charge'): arguments differ" in outcome.diff
    assert f"amount_cents: 3000 (primary) != {3000 + FEE_CENTS} (candidate)" in outcome.diff
    # The divergent step was refused, not executed, so the shadow run failed there.
    shadow_run = await candidate.describe(shadow.shadow_id(wid))
    assert shadow_run.status is bridge.Status.FAILED
    assert "ShadowDivergenceError" in json.dumps(
        [e.to_dict() for e in await candidate.history(shadow.shadow_id(wid))]
    )
    assert_only_primary_effects(ledger_path, [wid])


async def test_changed_output_is_mismatched_without_a_step(
    primary: bridge.Client,
    candidate: bridge.Client,
    langgraph_settings: dict[str, Any],
    ledger_path: str,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wid, _ = await run_primary(primary, ledger_path)
    monkeypatch.setenv("SHADOW_WFS_VARIANT", "changed_output")
    workers = Workers({**langgraph_settings, "router": {"url": store_url}}, tmp_path)
    try:
        workers.start("tests.shadow_wfs")
        outcome = await shadow.shadow(primary, candidate, wid, store=store_url, timeout=60)
    finally:
        workers.close()

    assert outcome is not None
    assert outcome.status == shadow.MISMATCHED
    assert outcome.first_step is None  # every step was answered: only the output differs
    assert outcome.diff.startswith("output differs")
    assert 'status: "charged" (primary) != "paid" (candidate)' in outcome.diff
    assert_only_primary_effects(ledger_path, [wid])


async def test_aa_on_sql_calibrates_ignore_and_the_report_shows_both(
    primary: bridge.Client, sql_url: str, ledger_path: str, store_url: str, tmp_path: Path
) -> None:
    """A/A: sql shadowed against sql (its own database). With the ignore paths the identical
    workflow matches; without them, A/A names exactly the field that needs ignoring."""
    other = await bridge.connect({"backend": "sql", "sql": {"url": f"sqlite:///{tmp_path}/aa.db"}})
    try:
        async with other.worker([checkout]):
            calibrated_id, _ = await run_primary(primary, ledger_path)
            calibrated = await shadow.shadow(
                primary, other, calibrated_id, store=store_url, timeout=30
            )
            shadow.configure(checkout)  # no ignore paths
            raw_id, _ = await run_primary(primary, ledger_path)
            raw = await shadow.shadow(primary, other, raw_id, store=store_url, timeout=30)
    finally:
        await other.close()

    assert calibrated is not None and calibrated.matched, calibrated
    assert calibrated.is_aa
    assert raw is not None and raw.status == shadow.MISMATCHED
    assert raw.first_step == 5
    assert "step 5 (activity 'shadow_notify'): arguments differ" in raw.diff
    assert "sent_at:" in raw.diff
    assert_only_primary_effects(ledger_path, [calibrated_id, raw_id])

    runner = CliRunner()
    table = runner.invoke(app, ["migrate", "report", "--store", store_url])
    assert table.exit_code == 0, table.output
    assert "2 shadow run(s): 1 matched, 1 mismatched" in table.output
    assert calibrated_id in table.output and raw_id in table.output
    assert "sql (A/A)" in table.output and "step 5" in table.output
    assert "step 5 (activity 'shadow_notify'): arguments differ" in table.output

    as_json = runner.invoke(app, ["migrate", "report", "--store", store_url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    rows = {r["workflow_id"]: r for r in json.loads(as_json.output)}
    assert rows[calibrated_id]["status"] == "matched"
    assert rows[raw_id]["status"] == "mismatched" and rows[raw_id]["first_step"] == 5

    only = runner.invoke(
        app, ["migrate", "report", "--store", store_url, "--json", "--status", "matched"]
    )
    assert [r["workflow_id"] for r in json.loads(only.output)] == [calibrated_id]


async def test_sampling_at_zero_runs_no_shadow(
    primary: bridge.Client, candidate: bridge.Client, ledger_path: str, store_url: str
) -> None:
    wid, _ = await run_primary(primary, ledger_path)
    outcome = await shadow.shadow(
        primary, candidate, wid, store=store_url, sample_percent=0, timeout=5
    )
    assert outcome is None
    assert await candidate.list() == []
    store = shadow.ShadowStore(store_url)
    try:
        assert store.records() == []
    finally:
        store.close()


def test_sample_decision_is_stable_and_only_grows() -> None:
    ids = [f"debtor/{n}" for n in range(2000)]
    at = {p: {i for i in ids if shadow.sampled(i, p)} for p in (0, 10, 30, 100)}
    assert at[0] == set() and at[100] == set(ids)
    assert at[10] <= at[30]  # raising the percentage only adds runs
    assert 0.25 < len(at[30]) / len(ids) < 0.35
    # The same answer in another interpreter (no per-process hash seed).
    code = (
        "from bridge.migrate.shadow import sampled;"
        f"print(','.join(i for i in {ids[:200]!r} if sampled(i, 30)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip().split(",") == [i for i in ids[:200] if i in at[30]]
    with pytest.raises(bridge.ConfigError, match=r"within 0\.\.100"):
        shadow.sampled("x", 101)


async def test_a_worker_without_the_answers_executes_nothing(
    candidate: bridge.Client,
    langgraph_settings: dict[str, Any],
    ledger_path: str,
    tmp_path: Path,
) -> None:
    """A shadow run whose answers this worker cannot find fails with a clear error, and its
    activities still do not run."""
    shadow.use_store(f"sqlite:///{tmp_path}/empty.db")
    try:
        async with candidate.worker([checkout]):
            handle = await candidate.start(
                checkout, ledger_path, "o1", 1, 100, id=shadow.shadow_id("never-recorded")
            )
            with pytest.raises(bridge.WorkflowFailedError) as failure:
                await asyncio.wait_for(handle.result(), 30)
    finally:
        shadow.use_store(None)
    assert "has no recorded answers" in str(failure.value)
    assert ledger.counts(ledger_path) == {}


async def test_router_shadows_a_rule_with_shadow_true(
    sql_settings: dict[str, Any],
    langgraph_settings: dict[str, Any],
    ledger_path: str,
    store_url: str,
    tmp_path: Path,
) -> None:
    """`[migrate.checkout] from = "sql", to = "langgraph", shadow = true`: callers get the
    primary's result through the router; the router's hook shadows the run on langgraph."""
    from bridge.migrate.router import Router

    config = {
        **sql_settings,
        "langgraph": langgraph_settings["langgraph"],
        "router": {"url": store_url},
        "migrate": {"checkout": {"from": "sql", "to": "langgraph", "shadow": True}},
    }
    router = await Router.connect(config, cwd=tmp_path)
    try:
        sql, lg = await router.client("sql"), await router.client("langgraph")
        async with sql.worker([checkout]), lg.worker([checkout]):
            handle = await router.start(checkout, ledger_path, "r1", 2, 500, id="order-r1")
            await router.signal("order-r1", "approve", {"by": "bob"})
            result = await router.result("order-r1", timeout=30)
            outcomes = await shadow.drain(timeout=30)
        assert router.engine_of("order-r1") == "sql"
    finally:
        await router.close()

    assert handle.created and result["total"] == 1000 and result["approved_by"] == "bob"
    assert [(o.workflow_id, o.status) for o in outcomes] == [("order-r1", shadow.MATCHED)]
    assert (outcomes[0].primary_engine, outcomes[0].candidate_engine) == ("sql", "langgraph")
    assert_only_primary_effects(ledger_path, ["order-r1"])


@pytest.mark.postgres
async def test_the_shadow_store_on_postgresql_answers_a_worker_in_another_process(
    primary: bridge.Client, pg_database: str, ledger_path: str, tmp_path: Path
) -> None:
    """A/A with the shadow store on PostgreSQL (the router's database across hosts): the
    candidate's worker process reads its answers from there."""
    aa_settings = {"backend": "sql", "sql": fast_sql(f"sqlite:///{tmp_path}/aa.db")}
    other = await bridge.connect(aa_settings)
    workers = Workers({**aa_settings, "router": {"url": pg_database}}, tmp_path)
    try:
        wid, _ = await run_primary(primary, ledger_path)
        workers.start("tests.shadow_wfs")
        outcome = await shadow.shadow(primary, other, wid, store=pg_database, timeout=60)
    finally:
        workers.close()
        await other.close()
    assert outcome is not None and outcome.matched, outcome
    assert outcome.is_aa
    assert_only_primary_effects(ledger_path, [wid])


async def test_identical_candidate_on_temporal_is_matched(
    primary: bridge.Client, temporal_settings: dict[str, Any], ledger_path: str, store_url: str
) -> None:
    """The Temporal activity shim answers from the store too: a Temporal candidate matches
    and executes nothing."""
    candidate = await bridge.connect(temporal_settings)
    try:
        wid, _ = await run_primary(primary, ledger_path)
        async with candidate.worker([checkout]):
            outcome = await shadow.shadow(primary, candidate, wid, store=store_url, timeout=60)
    finally:
        await candidate.close()
    assert outcome is not None
    assert outcome.status == shadow.MATCHED, outcome.diff
    assert outcome.candidate_engine == "temporal"
    assert_only_primary_effects(ledger_path, [wid])


@pytest.mark.parametrize(
    ("value", "paths", "expected"),
    [
        ({"a": 1, "at": 2}, ["at"], {"a": 1}),
        (
            {"lines": [{"ts": 1, "x": 2}, {"ts": 3, "x": 4}]},
            ["lines.*.ts"],
            {"lines": [{"x": 2}, {"x": 4}]},
        ),
        ({"lines": [1, 2, 3]}, ["lines.1"], {"lines": [1, 3]}),
        ({"a": {"b": 1, "c": 2}}, ["*.c"], {"a": {"b": 1}}),
        ("plain", ["at"], "plain"),
    ],
)
def test_ignore_paths(value: Any, paths: list[str], expected: Any) -> None:
    assert strip(value, paths) == expected


def test_a_diff_names_each_differing_leaf() -> None:
    lines = diff_values({"a": 1, "b": [1, 2], "c": "x"}, {"a": 1, "b": [1, 3], "d": True})
    assert lines == [
        "b[1]: 2 (primary) != 3 (candidate)",
        'c: "x" (primary) != missing (candidate)',
        "d: missing (primary) != true (candidate)",
    ]
    with pytest.raises(bridge.ConfigError, match=r"ignore=\['at'\]"):
        shadow.configure(checkout, ignore="at")


async def test_a_worker_without_migrate_rules_answers_a_shadow_run(
    sql_settings: dict[str, Any], ledger_path: str, store_url: str, tmp_path: Path
) -> None:
    """A worker process whose settings have no [migrate] rules, running code that never
    imports bridge.migrate, still answers a shadow run from the store: the shadow
    interceptor is an entry point of every worker, and side effects never run."""
    from bridge.migrate._shadow_store import Plan
    from bridge.migrate.compare import Step

    sid = shadow.shadow_id("greet-1")
    args = send.shape.encode_args((ledger_path, "ann"), {})
    store = shadow.ShadowStore(store_url)
    try:
        store.begin(
            Plan(sid, "greet-1", greet.name, (), {0: Step(0, "activity", send.name, args, "ok")}),
            primary_engine="sql",
            candidate_engine="sql",
        )
    finally:
        store.close()
    worker_settings = {**sql_settings, "router": {"url": store_url}}
    assert "migrate" not in worker_settings
    workers = Workers(worker_settings, tmp_path)
    try:
        workers.start("tests.shadow_wfs")
        async with await bridge.connect(sql_settings) as client:
            handle = await client.start(greet, ledger_path, "ann", id=sid)
            assert await handle.result(timeout=30) == "ok"  # the recorded answer
    finally:
        workers.close()
    assert ledger.counts(ledger_path) == {}  # `send` never ran
