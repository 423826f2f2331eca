"""An SDK session, unchanged, inside a bridge workflow: its reads and writes are steps.

Two workflow runs share a `SQLiteSession` file: the second sees the first's conversation,
as in the SDK's session examples. A run that waits for a signal after its agent run is run
again from the top on sql and langgraph: the journal answers the session's read and its
writes, so the file holds each item once. Module-level agents and workflows: Temporal's
sandbox re-imports this module.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, set_tracing_disabled

import bridge
from adapters.openai_agents import Script, ScriptedModel
from tests.conftest import wait_for_status

set_tracing_disabled(True)  # offline: no trace export to OpenAI

MODEL_CALL = "openai_agents.model_call"
GET_ITEMS = "openai_agents.session_get_items"
ADD_ITEMS = "openai_agents.session_add_items"


def _answer(items: list[Any]) -> Any:
    """What a model with the conversation in front of it says: it remembers a name."""
    said = [i["content"] for i in items if i.get("role") == "user"]
    names = [s.removeprefix("My name is ").rstrip(".") for s in said if s.startswith("My name is")]
    if said[-1].startswith("My name is"):
        return Script.text(f"Nice to meet you, {names[-1]}.")
    return Script.text(f"Your name is {names[-1]}." if names else "I do not know your name.")


CHAT_MODEL = ScriptedModel([_answer] * 4, name="session-chat")
chat_agent = Agent(name="chat", instructions="Remember what you are told.", model=CHAT_MODEL)


@bridge.workflow(name="session_chat")
async def chat(ctx: bridge.Context, db: str, session_id: str, text: str, wait: bool) -> str:
    """SDK code: a run with a session; `wait` parks the run after it (a replay follows)."""
    session = SQLiteSession(session_id, db)
    result = await Runner.run(chat_agent, text, session=session)
    if wait:
        await ctx.wait_for_signal("go")
    return str(result.final_output)


async def stored(db: Path, session_id: str) -> list[str]:
    """The session's items as the file holds them, read outside any workflow."""
    items = await SQLiteSession(session_id, db).get_items()
    return [f"{i.get('role')}: {_text(i['content'])}" for i in items]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content)


@pytest.fixture
def session_db(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "conversations.db", f"user-{uuid.uuid4().hex[:8]}"


async def test_a_second_run_sees_the_first_runs_conversation(
    client: bridge.Client, session_db: tuple[Path, str]
) -> None:
    db, sid = session_db
    first, second = f"{sid}-{client.backend_name}-1", f"{sid}-{client.backend_name}-2"
    async with client.worker([chat]):
        said = await client.execute(chat, str(db), sid, "My name is Ada.", False, id=first)
        assert said == "Nice to meet you, Ada."
        said = await client.execute(chat, str(db), sid, "What is my name?", False, id=second)
        assert said == "Your name is Ada."
    assert await stored(db, sid) == [
        "user: My name is Ada.",
        "assistant: Nice to meet you, Ada.",
        "user: What is my name?",
        "assistant: Your name is Ada.",
    ]
    steps = bridge.history.step_sequence(await client.history(second))
    # The read of the conversation so far, then the model call and the writes of this turn.
    assert steps[0] == GET_ITEMS and steps.count(GET_ITEMS) == 1, steps
    assert steps.count(MODEL_CALL) == 1 and ADD_ITEMS in steps, steps
    # The model was shown the first run's conversation, read through the journaled step.
    shown = [c.input for c in CHAT_MODEL.calls if c.workflow_id == second][-1]
    assert [i.get("content") for i in shown if i.get("role") == "user"] == [
        "My name is Ada.",
        "What is my name?",
    ]


async def test_a_replayed_run_does_not_add_items_twice(
    client: bridge.Client, session_db: tuple[Path, str]
) -> None:
    db, sid = session_db
    id = f"{sid}-{client.backend_name}-replayed"
    async with client.worker([chat]):
        handle = await client.start(chat, str(db), sid, "My name is Grace.", True, id=id)
        await wait_for_status(client, id, bridge.Status.WAITING, timeout=60)
        writes = bridge.history.step_sequence(await client.history(id)).count(ADD_ITEMS)
        # Written while the run first executed, before the signal resumes (and on sql and
        # langgraph re-executes) it.
        assert await stored(db, sid) == [
            "user: My name is Grace.",
            "assistant: Nice to meet you, Grace.",
        ]
        await handle.signal("go", True)
        assert await handle.result(timeout=60) == "Nice to meet you, Grace."
    assert await stored(db, sid) == [
        "user: My name is Grace.",
        "assistant: Nice to meet you, Grace.",
    ]
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps.count(GET_ITEMS) == 1 and steps.count(ADD_ITEMS) == writes >= 1, steps
    assert CHAT_MODEL.invocations(id) == [0]


@bridge.workflow(name="session_chat_in_memory")
async def chat_in_memory(ctx: bridge.Context, session_id: str) -> list[str]:
    """The SDK's session example: one in-memory SQLiteSession for several runs, read directly
    at the end, and a wait between two runs (after which sql and langgraph execute the code
    again, with a new, empty in-memory session)."""
    session = SQLiteSession(session_id)
    first = await Runner.run(chat_agent, "My name is Ada.", session=session)
    await ctx.wait_for_signal("go")
    second = await Runner.run(chat_agent, "What is my name?", session=session)
    # As the SDK's example ends: the conversation read from the session directly.
    items = await session.get_items()
    return [str(first.final_output), str(second.final_output), f"{len(items)} items"]


async def test_an_in_memory_session_keeps_its_items_when_the_run_is_executed_again(
    client: bridge.Client,
) -> None:
    id = f"in-memory-{client.backend_name}-{uuid.uuid4().hex[:8]}"
    async with client.worker([chat_in_memory]):
        handle = await client.start(chat_in_memory, "conversation_123", id=id)
        await wait_for_status(client, id, bridge.Status.WAITING, timeout=60)
        await handle.signal("go", True)
        said = await handle.result(timeout=60)
    # The second run was shown the first run's turn, as in one process with the SDK alone.
    assert said == ["Nice to meet you, Ada.", "Your name is Ada.", "4 items"]
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps[-1] == GET_ITEMS  # the direct read is a step too (Temporal's sandbox too)
    shown = [c.input for c in CHAT_MODEL.calls if c.workflow_id == id][-1]
    assert [i.get("content") for i in shown if i.get("role") == "user"] == [
        "My name is Ada.",
        "What is my name?",
    ]


@bridge.workflow(name="session_chat_streamed")
async def chat_streamed(ctx: bridge.Context, db: str, session_id: str, text: str) -> str:
    """SDK code: a streamed run with a session."""
    result = Runner.run_streamed(chat_agent, text, session=SQLiteSession(session_id, db))
    async for _event in result.stream_events():
        pass
    return str(result.final_output)


async def test_a_streamed_run_reads_and_writes_its_session_through_steps(
    client: bridge.Client, session_db: tuple[Path, str]
) -> None:
    db, sid = session_db
    await SQLiteSession(sid, db).add_items([{"role": "user", "content": "My name is Alan."}])
    id = f"{sid}-{client.backend_name}-streamed"
    async with client.worker([chat_streamed]):
        said = await client.execute(chat_streamed, str(db), sid, "What is my name?", id=id)
    assert said == "Your name is Alan."
    assert await stored(db, sid) == [
        "user: My name is Alan.",
        "user: What is my name?",
        "assistant: Your name is Alan.",
    ]
    steps = bridge.history.step_sequence(await client.history(id))
    assert steps[0] == GET_ITEMS and ADD_ITEMS in steps and MODEL_CALL in steps, steps
