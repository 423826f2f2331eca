"""One limit check for ids and payloads, before anything is written (issue 13, defect 7)."""

from __future__ import annotations

import pytest

import bridge
from bridge.errors import InvalidIdError, PayloadTooLargeError, SerializationError
from bridge.limits import MAX_ID_BYTES, MAX_ID_CHARS, MAX_PAYLOAD_BYTES, check_id, check_payload
from bridge.testing import ledger
from tests.core.limits_wfs import returns_big
from tests.wfs import approval, five_steps

BIG_ID = "i" * 10_000
BIG_ARG = "a" * (50 * 1024 * 1024)


def test_id_limits_in_characters_and_bytes() -> None:
    check_id("x" * MAX_ID_CHARS)
    with pytest.raises(InvalidIdError, match=r"256 characters \(256 bytes"):
        check_id("x" * (MAX_ID_CHARS + 1))
    # Characters of 4 UTF-8 bytes: 251 suit the journal's column but not Temporal.
    check_id("\U0001f600" * (MAX_ID_BYTES // 4))
    with pytest.raises(InvalidIdError, match=r"251 characters \(1004 bytes in UTF-8\)"):
        check_id("\U0001f600" * (MAX_ID_BYTES // 4 + 1))


def test_payload_limit_in_utf8_bytes_of_json() -> None:
    # Compact JSON of a string: its characters and two quotes.
    check_payload("a" * (MAX_PAYLOAD_BYTES - 2), what="x")
    with pytest.raises(PayloadTooLargeError) as info:
        check_payload({"s": "a" * MAX_PAYLOAD_BYTES}, what="the arguments of workflow 'w'")
    message = str(info.value)
    assert "the arguments of workflow 'w'" in message
    assert f"{MAX_PAYLOAD_BYTES + 8:,} bytes" in message and f"{MAX_PAYLOAD_BYTES:,}" in message
    # Multi-byte characters are counted as bytes, not characters.
    with pytest.raises(PayloadTooLargeError):
        check_payload("é" * (MAX_PAYLOAD_BYTES // 2), what="x")
    assert issubclass(PayloadTooLargeError, SerializationError)


async def _absent(client: bridge.Client, id: str) -> bool:
    try:
        await client.describe(id)
    except bridge.WorkflowNotFoundError:
        return True
    return False


async def test_a_10_kb_id_fails_cleanly_and_writes_nothing(
    client: bridge.Client, ledger_path: str
) -> None:
    with pytest.raises(InvalidIdError, match="id is 10000 characters"):
        await client.start(five_steps, ledger_path, 0, "", id=BIG_ID)
    assert await _absent(client, BIG_ID[:MAX_ID_CHARS])


async def test_a_50_mb_argument_fails_cleanly_and_writes_nothing(
    client: bridge.Client, ledger_path: str
) -> None:
    with pytest.raises(PayloadTooLargeError, match="the arguments of workflow 'five_steps'"):
        await client.start(five_steps, ledger_path, 0, BIG_ARG, id="big-arg")
    assert await _absent(client, "big-arg")


async def test_a_signal_payload_over_the_limit_is_not_delivered(
    client: bridge.Client, ledger_path: str
) -> None:
    await client.start(approval, ledger_path, None, id="big-signal")
    with pytest.raises(PayloadTooLargeError, match="signal 'approve' to workflow 'big-signal'"):
        await client.signal("big-signal", "approve", BIG_ARG)
    events = await client.history("big-signal")
    assert not [e for e in events if e.type is bridge.EventType.SIGNAL_RECEIVED]


async def test_an_activity_result_over_the_limit_fails_its_step_without_retries(
    client: bridge.Client, ledger_path: str
) -> None:
    async with client.worker([returns_big]):
        outcome = await client.execute(
            returns_big, ledger_path, MAX_PAYLOAD_BYTES + 1, id="big-result", timeout=60
        )
    assert outcome.startswith("PayloadTooLargeError: the result of activity")
    # Not retried: a retry would repeat the side effect and fail the same way.
    assert len(ledger.entries(ledger_path)) == 1
