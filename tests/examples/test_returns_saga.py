"""examples/returns_saga.py on every engine: the happy path, a refund that fails for good
(the label is voided, the run ends `refund_failed`), a lost carrier answer retried, and a
worker killed after the label was created: no side effect is ever committed twice."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import bridge
from bridge.history import EventType
from bridge.testing import ledger
from examples import returns_saga as example
from tests.conftest import Workers, wait_until

EFFECTS = ("create_label", "issue_refund", "send_confirmation", "void_label")


def request(return_id: str, ledger_path: str, **plumbing: Any) -> example.ReturnRequest:
    return example.ReturnRequest(
        return_id=return_id,
        order_id=f"o-{return_id}",
        sku="SKU-MUG",
        quantity=2,
        amount_cents=2598,
        email="ann@example.com",
        ledger=ledger_path,
        **plumbing,
    )


def effects(ledger_path: str) -> dict[str, list[str]]:
    """The committed side effects (not the call counts) by activity, as idempotency keys."""
    out: dict[str, list[str]] = {}
    for entry in ledger.entries(ledger_path):
        if entry.activity in EFFECTS:
            out.setdefault(entry.activity, []).append(entry.key)
    return out


async def test_happy_path_refunds_once_with_keys_from_the_return_id(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = example.run_id("r-1")
    async with client.worker([example.returns_saga]):
        outcome = await client.execute(
            example.returns_saga, request("r-1", ledger_path), id=rid, timeout=60
        )
    assert outcome.status == "refunded"
    assert outcome.label == "LBL-r-1" and outcome.refund == "RF-r-1-2598"
    assert not outcome.label_voided
    # Each side effect once, under "<workflow id>:<step>" (the id is the return's).
    assert effects(ledger_path) == {
        "create_label": [f"{rid}:2"],
        "issue_refund": [f"{rid}:3"],
        "send_confirmation": [f"{rid}:4"],
    }
    steps = bridge.history.step_sequence(await client.history(rid))
    assert steps == [
        "validate_return",
        "check_inventory",
        "create_label",
        "issue_refund",
        "send_confirmation",
    ]


async def test_refund_failing_for_good_voids_the_label(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = example.run_id("r-2")
    failing = request("r-2", ledger_path, refund_failures=example.REFUND_RETRY.max_attempts)
    async with client.worker([example.returns_saga]):
        outcome = await client.execute(example.returns_saga, failing, id=rid, timeout=60)
    assert outcome.status == "refund_failed"
    assert outcome.label_voided and outcome.refund is None and outcome.email is None
    assert "declined" in outcome.reason and "4 attempts" in outcome.reason
    done = effects(ledger_path)
    # The label was created once and voided once; no money moved, no email went out.
    assert sorted(done) == ["create_label", "void_label"]
    assert done["create_label"] == [f"{rid}:2"] and len(done["void_label"]) == 1
    types = [e.type for e in await client.history(rid)]
    assert types.count(EventType.COMPENSATION_COMPLETED) == 1


async def test_refund_declined_then_accepted_needs_no_compensation(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = example.run_id("r-3")
    flaky = request("r-3", ledger_path, refund_failures=2)
    async with client.worker([example.returns_saga]):
        outcome = await client.execute(example.returns_saga, flaky, id=rid, timeout=60)
    assert outcome.status == "refunded" and not outcome.label_voided
    assert "void_label" not in effects(ledger_path)
    assert ledger.counts(ledger_path)[f"{rid}:3"] == 1


async def test_rejected_return_creates_nothing(client: bridge.Client, ledger_path: str) -> None:
    rid = example.run_id("r-4")
    unknown = request("r-4", ledger_path).model_copy(update={"sku": "SKU-PIANO"})
    async with client.worker([example.returns_saga]):
        outcome = await client.execute(example.returns_saga, unknown, id=rid, timeout=60)
    assert outcome.status == "rejected"
    assert outcome.reason == "SKU-PIANO is not a returnable item"
    assert ledger.entries(ledger_path) == []


async def test_lost_label_answer_is_retried_without_a_second_label(
    client: bridge.Client, ledger_path: str
) -> None:
    rid = example.run_id("r-5")
    lossy = request("r-5", ledger_path, lose_label_response=True)
    async with client.worker([example.returns_saga]):
        outcome = await client.execute(example.returns_saga, lossy, id=rid, timeout=60)
    assert outcome.status == "refunded"
    counts = ledger.counts(ledger_path)
    assert counts[f"call:{rid}:2"] == 2, "the label step ran twice (its first answer was lost)"
    assert counts[f"{rid}:2"] == 1, "and the carrier created one label"
    assert ledger.duplicates(ledger_path) == {f"call:{rid}:2": 2}


async def test_worker_killed_after_the_label_doubles_no_side_effect(
    settings: dict[str, Any], tmp_path: Path, ledger_path: str
) -> None:
    """SIGKILL while the label step has created its label but not answered: the next worker
    runs the step again with the same key, and the carrier creates no second label."""
    rid = example.run_id("r-6")
    gate = tmp_path / "label-gate"
    workers = Workers(settings, tmp_path)
    client = await bridge.connect(settings)
    try:
        await client.start(
            example.returns_saga, request("r-6", ledger_path, hold_label=str(gate)), id=rid
        )
        first = workers.start("examples.returns_saga")
        wait_until(Path(f"{gate}.reached").exists, timeout=60, what="the label to be created")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        gate.touch()
        workers.start("examples.returns_saga")
        outcome = await client.result(rid, timeout=90)
    finally:
        workers.close()
        await client.close()
    status = outcome["status"] if isinstance(outcome, dict) else outcome.status
    assert status == "refunded"
    counts = ledger.counts(ledger_path)
    assert counts[f"call:{rid}:2"] == 2, "the killed label step ran again"
    for key in (f"{rid}:2", f"{rid}:3", f"{rid}:4"):
        assert counts[key] == 1, f"side effect {key} committed {counts[key]} times"
    assert effects(ledger_path) == {
        "create_label": [f"{rid}:2"],
        "issue_refund": [f"{rid}:3"],
        "send_confirmation": [f"{rid}:4"],
    }
