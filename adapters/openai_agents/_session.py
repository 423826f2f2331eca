"""A session of the Agents SDK inside a workflow: each of its reads and writes a journaled step.

`Runner.run(agent, input, session=SQLiteSession(...))` reads the conversation so far from
the session before the first turn and appends what the run said after each turn. Run
unchanged inside a workflow, a replay would read the session again (seeing the turns its
first execution already added, so the model would be asked something new) and append them
once more. `durable_session` wraps the user's session so that `get_items`, `add_items`,
`pop_item` and `clear_session` are the steps `openai_agents.session_get_items`,
`openai_agents.session_add_items`, `openai_agents.session_pop_item` and
`openai_agents.session_clear`: a replay reads what the first execution read and writes
nothing twice.

The step's activity calls the user's session object, handed over by workflow code (by
workflow id and `session_id`) while the step runs, as plain function tools are: every
backend runs a run's activities in the process that runs its workflow code. The items
travel and are journaled as JSON, as the SDK's own sessions store them. On Temporal this
also moves the session's I/O (SQLiteSession uses a thread) out of the sandbox.

An in-memory session (`SQLiteSession` with its default `":memory:"`, created in workflow
code) lives in one worker's memory: after a crash the new worker's session is born empty,
and the journaled writes are answered from the journal without reaching it, so a later
read would miss them. For such a session the workflow keeps a copy of its items, rebuilt
from the journaled reads and writes on every execution (`_Mirror`), and the first step that
runs live after a replayed write first puts that copy into the live session.

Not wrapped, and refused by name: `OpenAIConversationsSession` and sessions that compact
themselves (`run_compaction`): the SDK treats them by their type and private hooks, which a
wrapper would hide, and compaction calls a model outside the journal.
"""

from __future__ import annotations

from typing import Any

from agents import Session, SQLiteSession, TResponseInputItem, UserError
from agents.memory import OpenAIConversationsSession
from agents.memory.session import is_openai_responses_compaction_aware_session

from adapters.openai_agents._context import HandOver, HandOverMissingError, workflow_context
from bridge import codec
from bridge.activity import ActivityDefinition, RetryPolicy, activity, activity_info
from bridge.workflow import Context

__all__ = [
    "SESSION_ADD_ITEMS",
    "SESSION_CLEAR",
    "SESSION_GET_ITEMS",
    "SESSION_POP_ITEM",
    "DurableSession",
    "durable_session",
]

SESSION_GET_ITEMS = "openai_agents.session_get_items"
SESSION_ADD_ITEMS = "openai_agents.session_add_items"
SESSION_POP_ITEM = "openai_agents.session_pop_item"
SESSION_CLEAR = "openai_agents.session_clear"

_live = HandOver()


class SessionUnavailableError(HandOverMissingError):
    """The step of a session call ran in a process without the workflow's session."""


async def _session(request: dict[str, Any]) -> Session:
    found = _live.get((activity_info().workflow_id, request["session"]))
    if found is None:
        raise SessionUnavailableError(
            f"the session {request['session']!r} of this step was not handed over by workflow "
            f"code in this process; an agent's session is called by the worker that runs its "
            f"workflow"
        )
    session, restore = found  # the DurableSession: outside workflow code, the user's own
    if restore is not None:  # an in-memory session that missed replayed writes (`_Mirror`)
        await session.clear_session()
        if restore:
            await session.add_items(restore)
    return session  # type: ignore[no-any-return]


# Reads and clearing may be tried again (a locked SQLite file, a dropped connection); a write
# or a pop is tried once, because one that failed after it took effect would take it twice.
@activity(name=SESSION_GET_ITEMS, retry=RetryPolicy(max_attempts=3, initial_interval=0.2))
async def session_get_items(request: dict[str, Any]) -> list[Any]:
    """The session's items (the latest `limit` of them), as the session returns them."""
    session = await _session(request)
    limit = request["limit"]
    # The SDK's own call shape: without a limit, no argument (a custom session may take none).
    items = await (session.get_items() if limit is None else session.get_items(limit))
    return _jsonable(items)


@activity(name=SESSION_ADD_ITEMS, retry=RetryPolicy(max_attempts=1))
async def session_add_items(request: dict[str, Any]) -> None:
    """Append the run's items to the session."""
    await (await _session(request)).add_items(request["items"])


@activity(name=SESSION_POP_ITEM, retry=RetryPolicy(max_attempts=1))
async def session_pop_item(request: dict[str, Any]) -> Any:
    """Remove and return the session's latest item."""
    return _jsonable(await (await _session(request)).pop_item())


@activity(name=SESSION_CLEAR, retry=RetryPolicy(max_attempts=3, initial_interval=0.2))
async def session_clear(request: dict[str, Any]) -> None:
    """Clear the session."""
    await (await _session(request)).clear_session()


def _jsonable(value: Any) -> Any:
    return codec.to_jsonable(value, where="session items")


class DurableSession:
    """The user's session seen from workflow code: every call a journaled step.

    Outside workflow code (called from inside an activity, say) it is the user's session.
    The run context `wrapper` that a custom session may opt into is not passed on: it is a
    live object of workflow code, and the step's answer must not depend on it.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        # The session's own methods, taken before `durable_session` points the object's
        # attributes at this wrapper: what a call outside workflow code runs.
        self._own = {name: getattr(session, name) for name in _METHODS}
        self._mirror = _Mirror.of(session)
        self.session_id = session.session_id
        self.session_settings = getattr(session, "session_settings", None)
        # How the SDK matches items it already saved (ids ignored or not) follows the session.
        self._ignore_ids_for_matching = getattr(session, "_ignore_ids_for_matching", False)

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        ctx = workflow_context()
        if ctx is None:
            own = self._own["get_items"]
            return await (own() if limit is None else own(limit))  # type: ignore[no-any-return]
        request = {"session": self.session_id, "limit": limit}
        items = await self._step(ctx, session_get_items, request)
        if self._mirror is not None and limit is None:
            self._mirror.items = list(items)
        return items  # type: ignore[no-any-return]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        ctx = workflow_context()
        if ctx is None:
            return await self._own["add_items"](items)  # type: ignore[no-any-return]
        request = {"session": self.session_id, "items": _jsonable(items)}
        await self._step(ctx, session_add_items, request, writes=True)
        if self._mirror is not None and self._mirror.items is not None:
            self._mirror.items.extend(request["items"])

    async def pop_item(self) -> TResponseInputItem | None:
        ctx = workflow_context()
        if ctx is None:
            return await self._own["pop_item"]()  # type: ignore[no-any-return]
        request = {"session": self.session_id}
        item = await self._step(ctx, session_pop_item, request, writes=True)
        if self._mirror is not None and self._mirror.items:
            self._mirror.items.pop()
        return item  # type: ignore[no-any-return]

    async def clear_session(self) -> None:
        ctx = workflow_context()
        if ctx is None:
            return await self._own["clear_session"]()  # type: ignore[no-any-return]
        await self._step(ctx, session_clear, {"session": self.session_id}, writes=True)
        if self._mirror is not None:
            self._mirror.items = []

    async def _step(
        self,
        ctx: Context,
        step: ActivityDefinition[..., Any],
        request: dict[str, Any],
        *,
        writes: bool = False,
    ) -> Any:
        key = (ctx.workflow_id, self.session_id)
        mirror = self._mirror
        restore = mirror.items if mirror is not None and mirror.stale else None
        out = await _live.run(ctx, key, (self, restore), step, request)
        if mirror is not None:
            if not ctx.last_step_replayed():
                mirror.stale = False  # ran live: the session holds the copy (and this step)
            elif writes:
                mirror.stale = True  # a write the live session never received
        return out


class _Mirror:
    """The items of an in-memory session as the journal says they are (see the module's
    docstring), kept on the user's session object for the workflow code's execution: a
    new execution makes a new session object, and the copy is rebuilt from the journal."""

    _ATTR = "__bridge_session_mirror__"

    def __init__(self) -> None:
        #: The items, once a full read gave them (None: not known yet).
        self.items: list[Any] | None = None
        #: True when a journaled write was answered without reaching the live session.
        self.stale = False

    @classmethod
    def of(cls, session: Session) -> _Mirror | None:
        """The session's copy when it is an in-memory SQLiteSession, else None."""
        if not isinstance(session, SQLiteSession) or str(session.db_path) != ":memory:":
            return None
        found = getattr(session, cls._ATTR, None)
        if found is None:
            found = cls()
            setattr(session, cls._ATTR, found)
        return found  # type: ignore[no-any-return]


#: The session methods that are journaled steps in workflow code.
_METHODS = ("get_items", "add_items", "pop_item", "clear_session")
#: The attribute of a user's session object holding its DurableSession.
_DURABLE = "__bridge_durable_session__"


def durable_session(session: Session | None, *, agent: str) -> Session | None:
    """`session` with its calls journaled, for the run of agent `agent` in workflow code.

    The user's object itself is pointed at the wrapper too (its four methods, as instance
    attributes), so the workflow code's own calls between runs (`await
    session.get_items()`, as the SDK's session example reads the conversation) are steps as
    well: answered from the journal on a replay, and made outside Temporal's sandbox, whose
    workflow code may not start SQLiteSession's thread. A session whose attributes cannot be
    set (`__slots__`) keeps its own methods for those calls."""
    if session is None or isinstance(session, DurableSession):
        return session
    known = getattr(session, _DURABLE, None)
    if isinstance(known, DurableSession):
        return known
    if isinstance(session, OpenAIConversationsSession) or (
        is_openai_responses_compaction_aware_session(session)
    ):
        raise UserError(
            f"the session {type(session).__name__} passed to the run of agent {agent!r} in a "
            f"bridge workflow cannot be journaled (the SDK treats it by its type and compacts "
            f"it with model calls of its own); pass a plain session such as SQLiteSession, or "
            f"the previous result's to_input_list() as input"
        )
    durable = DurableSession(session)
    try:
        for name in _METHODS:
            setattr(session, name, getattr(durable, name))
        setattr(session, _DURABLE, durable)
    except AttributeError:
        pass
    return durable
