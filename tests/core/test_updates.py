"""Updates: `ctx.set_update_handler(name, fn, validator=...)` and `client.update(id, name, ...)`.

The same scenarios on every backend. On Temporal an update is Temporal's own (a dynamic
update handler and validator of the workflow class, `execute_update` with the update id);
on sql and langgraph the request is stored beside the run's signals, and the worker
executing the run validates it at the run's next wait, journals an accepted one as an
`update` row and settles the row with the handler's outcome; a replay runs the handler again
at the same point. Activities note each execution in a ledger, so "applied once" is counted.

Workflows live at module level because Temporal's sandbox re-imports this module, and the
crash tests' worker processes import it (`tests.worker_proc tests.core.test_updates`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests import ledger
from tests.conftest import ROOT, Workers, settings_env, wait_for_status, wait_until


@bridge.activity(name="t_update_note")
async def note(ledger_path: str, what: str) -> str:
    ledger.record(ledger_path, what, "note")
    return what.upper()


@bridge.activity(name="t_update_gate")
async def gate(ledger_path: str, door: str) -> str:
    """Notes that it started, then holds its step open until the test creates `door`."""
    ledger.record(ledger_path, "gate", "gate")
    while not Path(door).exists():
        await asyncio.sleep(0.02)
    return "opened"


@bridge.workflow(name="u_cart")
async def cart(ctx: bridge.Context, ledger_path: str, door: str) -> dict[str, Any]:
    """A cart changed by updates until one checks it out."""
    state: dict[str, Any] = {"items": [], "total": 0, "done": False}

    def add(item: str, price: int) -> int:
        state["items"].append(item)
        state["total"] += price
        return int(state["total"])

    def check_add(item: str, price: int) -> None:
        if price <= 0:
            raise ValueError(f"price must be positive, got {price}")
        if state["done"]:
            raise RuntimeError("the cart is checked out")

    async def checkout(label: str) -> str:
        got = await ctx.run(note, ledger_path, label)
        state["done"] = True
        return got

    async def slow(label: str) -> str:
        opened = await ctx.run(gate, ledger_path, door)
        state["items"].append(label)
        return f"{label}:{opened}"

    def broken() -> None:
        raise KeyError("no such shelf")

    async def nap(seconds: float) -> str:
        await ctx.sleep(seconds)
        state["items"].append("nap")
        return "rested"

    ctx.set_update_handler("nap", nap)
    ctx.set_update_handler("add", add, validator=check_add)
    ctx.set_update_handler("checkout", checkout)
    ctx.set_update_handler("slow", slow)
    ctx.set_update_handler("broken", broken)
    ctx.set_query_handler("state", lambda: dict(state))
    await ctx.wait_condition(lambda: state["done"])
    return state


async def _start(client: bridge.Client, tmp_path: Path, id: str) -> bridge.WorkflowHandle:
    handle = await client.start(cart, str(tmp_path / "ledger.db"), str(tmp_path / "door"), id=id)
    await wait_for_status(client, id, bridge.Status.WAITING)
    return handle


class Language(enum.IntEnum):
    CHINESE = 2
    ENGLISH = 3


@dataclasses.dataclass
class LanguageChoice:
    language: Language


@bridge.workflow(name="u_greeter")
async def greeter(ctx: bridge.Context) -> str:
    """Temporal's message-passing sample, as its users write it: typed handlers."""
    state = {"language": Language.ENGLISH}

    def set_language(choice: LanguageChoice) -> Language:
        previous, state["language"] = state["language"], choice.language
        return previous

    def check_language(choice: LanguageChoice) -> None:
        if choice.language not in Language:
            raise ValueError(f"{choice.language} is not supported")

    def arg_type(value: LanguageChoice) -> str:
        return type(value).__name__

    ctx.set_update_handler("set_language", set_language, validator=check_language)
    ctx.set_query_handler("language", lambda: state["language"])
    ctx.set_query_handler("arg_type", arg_type)
    await ctx.wait_for_signal("approve")
    return state["language"].name


async def test_handlers_get_their_declared_types_and_the_client_its_result_type(
    client: bridge.Client,
) -> None:
    id = f"greeter-{client.backend_name}-{uuid.uuid4().hex[:6]}"
    async with client.worker([greeter]):
        handle = await client.start(greeter, id=id)
        choice = LanguageChoice(Language.CHINESE)
        assert await handle.query("arg_type", choice) == "LanguageChoice"
        previous = await handle.update("set_language", choice, result_type=Language)
        assert previous is Language.ENGLISH
        assert await handle.query("language", result_type=Language) is Language.CHINESE
        assert await handle.query("language") == 2  # without result_type: the JSON data
        with pytest.raises(bridge.UpdateRejectedError, match="language"):
            await handle.update("set_language", {"language": 7})
        await handle.signal("approve")
        assert await handle.result(timeout=30) == "CHINESE"


async def test_update_changes_the_run_and_answers(client: bridge.Client, tmp_path: Path) -> None:
    id = f"update-{client.backend_name}"
    path = str(tmp_path / "ledger.db")
    async with client.worker([cart]):
        handle = await _start(client, tmp_path, id)
        assert await handle.update("add", "apple", 3) == 3
        assert await client.update(id, "add", "pear", 4) == 7
        assert (await handle.query("state"))["items"] == ["apple", "pear"]
        assert await handle.update("checkout", "paid") == "PAID"
        result = await handle.result(timeout=30)
    assert result == {"items": ["apple", "pear"], "total": 7, "done": True}
    assert ledger.counts_by_activity(path)["note"] == 1
    events = await client.history(id)
    accepted = [e for e in events if e.type is bridge.EventType.UPDATE_ACCEPTED]
    completed = [e for e in events if e.type is bridge.EventType.UPDATE_COMPLETED]
    assert [e.name for e in accepted] == ["add", "add", "checkout"]
    assert [e.result for e in completed] == [3, 7, "PAID"]


async def test_an_update_sent_right_after_the_start_is_applied(
    client: bridge.Client, tmp_path: Path
) -> None:
    """As Temporal's hello_update does: the caller updates at once after starting. On
    Temporal the update can arrive with the start, before the workflow code has set its
    handlers; it waits for them instead of being refused as unknown."""
    id = f"update-early-{uuid.uuid4()}"
    async with client.worker([cart]):
        handle = await client.start(
            cart, str(tmp_path / "ledger.db"), str(tmp_path / "door"), id=id
        )
        assert await handle.update("add", "fig", 2) == 2
        with pytest.raises(bridge.UpdateNotFoundError):
            await handle.update("no-such-update")
        assert await handle.update("checkout", "paid") == "PAID"
        result = await handle.result(timeout=30)
    assert result == {"items": ["fig"], "total": 2, "done": True}


async def test_rejected_failed_and_unknown_updates(client: bridge.Client, tmp_path: Path) -> None:
    id = f"update-refused-{client.backend_name}"
    async with client.worker([cart]):
        handle = await _start(client, tmp_path, id)
        before = len(await client.history(id))
        with pytest.raises(bridge.UpdateRejectedError, match="price must be positive") as caught:
            await handle.update("add", "free lunch", 0)
        assert caught.value.error_type == "ValueError"
        # Nothing journaled for a rejected update, and the state is unchanged.
        assert len(await client.history(id)) == before
        assert (await handle.query("state"))["items"] == []
        with pytest.raises(bridge.UpdateNotFoundError) as unknown:
            await handle.update("remove", "apple")
        text = str(unknown.value)
        assert "'remove'" in text and "add, broken, checkout, nap, slow" in text
        with pytest.raises(bridge.UpdateFailedError, match="no such shelf") as failed:
            await handle.update("broken")
        assert failed.value.error_type == "KeyError"
        # The run goes on after a failed update.
        assert await handle.update("add", "fig", 2) == 2
        await handle.update("checkout", "done")
        assert (await handle.result(timeout=30))["items"] == ["fig"]
        with pytest.raises(bridge.WorkflowClosedError):
            await handle.update("add", "late", 1)


async def test_same_update_id_is_applied_once(client: bridge.Client, tmp_path: Path) -> None:
    id = f"update-once-{client.backend_name}"
    path = str(tmp_path / "ledger.db")
    async with client.worker([cart]):
        handle = await _start(client, tmp_path, id)
        assert await handle.update("add", "apple", 3, update_id="u-1") == 3
        # The same id again (a retry): the first answer, the handler not run again.
        assert await handle.update("add", "apple", 3, update_id="u-1") == 3
        assert await handle.update("add", "pear", 1, update_id="u-2") == 4
        assert await handle.update("checkout", "x", update_id="u-3") == "X"
        result = await handle.result(timeout=30)
        # After the run finished, a known id is still answered (the first result).
        assert await handle.update("checkout", "x", update_id="u-3") == "X"
    assert result["items"] == ["apple", "pear"] and result["total"] == 4
    assert ledger.counts_by_activity(path)["note"] == 1


async def test_update_with_a_step_in_its_handler_survives_a_worker_crash(
    client: bridge.Client, workers: Workers, tmp_path: Path
) -> None:
    """Killed after the update was accepted and before its result: the next worker replays
    the run, finishes the handler once, and the caller still waiting gets its answer."""
    id = f"update-crash-{client.backend_name}"
    path, door = str(tmp_path / "ledger.db"), tmp_path / "door"
    first = workers.start("tests.core.test_updates")
    await client.start(cart, path, str(door), id=id)
    await wait_for_status(client, id, bridge.Status.WAITING)
    waiting = asyncio.ensure_future(client.update(id, "slow", "box", update_id="s-1"))
    await asyncio.to_thread(
        wait_until, lambda: ledger.counts_by_activity(path).get("gate"), what="the gate step"
    )
    first.kill()
    first.wait()
    assert not waiting.done()
    workers.start("tests.core.test_updates")
    door.touch()
    assert await asyncio.wait_for(waiting, 120) == "box:opened"
    assert await client.update(id, "slow", "box", update_id="s-1") == "box:opened"
    assert await client.update(id, "checkout", "end", update_id="c-1") == "END"
    result = await client.result(id, timeout=60)
    # The handler's effect on the state happened once, whatever ran twice before the crash.
    assert result["items"] == ["box"]
    events = await client.history(id)
    assert [e.name for e in events if e.type is bridge.EventType.UPDATE_ACCEPTED] == [
        "slow",
        "checkout",
    ]


async def test_update_answered_once_after_a_crash_past_its_result(
    client: bridge.Client, workers: Workers, tmp_path: Path
) -> None:
    """Killed after the update completed: a retry of the same update id is answered from
    the run's history by the next worker, and the handler's step is not run again."""
    id = f"update-crash-after-{client.backend_name}"
    path, door = str(tmp_path / "ledger.db"), tmp_path / "door"
    first = workers.start("tests.core.test_updates")
    await client.start(cart, path, str(door), id=id)
    await wait_for_status(client, id, bridge.Status.WAITING)
    assert await client.update(id, "add", "apple", 3, update_id="a-1", timeout=60) == 3
    first.kill()
    first.wait()
    workers.start("tests.core.test_updates")
    assert await client.update(id, "add", "apple", 3, update_id="a-1", timeout=60) == 3
    assert await client.update(id, "add", "kiwi", 2, update_id="a-2", timeout=60) == 5
    assert await client.update(id, "checkout", "end", update_id="c-1", timeout=60) == "END"
    result = await client.result(id, timeout=60)
    assert result == {"items": ["apple", "kiwi"], "total": 5, "done": True}
    assert ledger.counts_by_activity(path)["note"] == 1


async def test_update_handler_that_sleeps(client: bridge.Client, tmp_path: Path) -> None:
    """An async handler may wait durably (a timer): the caller gets its answer after it."""
    id = f"update-nap-{client.backend_name}"
    async with client.worker([cart]):
        handle = await _start(client, tmp_path, id)
        assert await handle.update("nap", 0.3, timeout=60) == "rested"
        assert await handle.update("add", "tea", 1, timeout=60) == 1
        await handle.update("checkout", "x", timeout=60)
        assert (await handle.result(timeout=30))["items"] == ["nap", "tea"]


async def test_update_sent_while_another_handler_waits(
    client: bridge.Client, tmp_path: Path
) -> None:
    """Temporal runs the second handler at once; the journal engines deliver it once the
    first handler's wait is over (no update is delivered at a wait inside a handler). Both
    callers get their answers either way, and the run does not spin meanwhile."""
    id = f"update-overlap-{client.backend_name}"
    async with client.worker([cart]):
        handle = await _start(client, tmp_path, id)
        napping = asyncio.ensure_future(handle.update("nap", 1.0, timeout=60))
        for _ in range(500):
            events = await client.history(id)
            if any(e.type is bridge.EventType.UPDATE_ACCEPTED for e in events):
                break
            await asyncio.sleep(0.02)
        assert await handle.update("add", "tea", 1, timeout=60) == 1
        assert await napping == "rested"
        await handle.update("checkout", "x", timeout=60)
        assert sorted((await handle.result(timeout=30))["items"]) == ["nap", "tea"]
        store = getattr(client.backend, "store", None)
        if store is not None:
            # Each claim of a journal run replays it: a run woken again and again by the
            # pending update while the handler slept would show hundreds.
            assert store.get_run(id).executions < 20


def test_cli_update_prints_the_result_as_json(sql_settings: dict[str, Any], tmp_path: Path) -> None:
    """`bridge update ID NAME [ARGS_JSON] [--update-id X]` in a process of its own, while a
    worker of this process serves the run."""
    path, door = str(tmp_path / "ledger.db"), str(tmp_path / "door")
    env = settings_env(sql_settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli", "update", "cli-u", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    async def main() -> None:
        async with await bridge.connect(sql_settings) as client, client.worker([cart]):
            await client.start(cart, path, door, id="cli-u")
            await wait_for_status(client, "cli-u", bridge.Status.WAITING)
            answered = await asyncio.to_thread(cli, "add", '["apple", 3]', "--update-id", "k")
            assert answered.returncode == 0, answered.stderr
            assert json.loads(answered.stdout) == 3
            again = await asyncio.to_thread(cli, "add", '["apple", 3]', "--update-id", "k")
            assert json.loads(again.stdout) == 3
            refused = await asyncio.to_thread(cli, "add", '["free", 0]')
            assert refused.returncode != 0 and "price must be positive" in refused.stderr
            assert (await client.query("cli-u", "state"))["total"] == 3

    asyncio.run(main())


def test_validators_must_be_plain_functions() -> None:
    class Probe(bridge.Context):
        workflow_id = "probe"  # type: ignore[assignment]
        attempt = 1  # type: ignore[assignment]
        run = sleep = wait_for_signal = now = uuid = random = patched = compensate = None  # type: ignore[assignment]

    async def validator() -> None:
        return None

    ctx = Probe()
    with pytest.raises(bridge.ConfigError, match="plain function"):
        ctx.set_update_handler("u", lambda: 1, validator=validator)
    ctx.set_update_handler("u", lambda: 1)
    assert list(ctx.update_handlers) == ["u"]
    ctx.set_update_handler("u", None)
    assert ctx.update_handlers == {}
