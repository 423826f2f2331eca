"""Conversation payloads by reference: what keeps a long agent's journal linear.

The Agents SDK hands the model the *whole* conversation on every turn. Journaled as is, turn
n would copy n items into its step record and a 200-turn run would grow its journal
quadratically (Temporal's integration does exactly that: sdk-python#1890 measured model
inputs at 99.8% of history). Here the conversation is a chain of content-addressed segments,
each `{"prev": <key of the conversation so far>, "items": [<new items>]}` keyed by the
sha256 of its canonical JSON:

- workflow side (`ConversationChain`): pure computation, no I/O (Temporal's sandbox allows
  none). A model call's step carries the new items once and the previous conversation by key;
  an agent's instructions, tool schemas and settings go the same way (sent once per run, then
  by key).
- worker side (`BlobStore`): the model-call activity writes the segment it carries (an
  idempotent insert, so retries and replays are harmless) and rebuilds the conversation by
  walking the `prev` keys. Every worker that runs model calls must share the store; by
  default it is a table next to the journal, so that holds on one machine and on PostgreSQL.

Each item is therefore journaled once (in the step of the turn that added it) and stored
once: both grow linearly with the number of turns.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from adapters.openai_agents._errors import BlobMissingError
from bridge.errors import StorageError

__all__ = ["BlobStore", "ConversationChain", "blob_key", "canonical", "open_blob_store"]

_metadata = MetaData()

blobs = Table(
    "bridge_agent_blobs",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Conversations rebuilt recently, by head key: the next turn's `prev` is almost always the
# head the same worker rebuilt one turn ago, so a turn costs one blob read, not n.
_CACHE_SIZE = 256


def canonical(data: Any) -> str:
    """The one text a JSON value hashes as (sorted keys, no spaces), on both sides."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def blob_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ConversationChain:
    """The workflow side: turns values into references, remembering what this run sent.

    Deterministic by construction (it sees the same values in the same order on a replay),
    so the step arguments it produces are identical on every replay.
    """

    def __init__(self) -> None:
        self._sent: set[str] = set()
        # (item digests of a conversation this run has stored, its head key), oldest first.
        self._heads: list[tuple[tuple[str, ...], str]] = []

    def ref(self, value: Any) -> dict[str, Any]:
        """`{"key", "value"}` the first time this run sends `value`, `{"key"}` after that."""
        key = blob_key(canonical(value))
        if key in self._sent:
            return {"key": key}
        self._sent.add(key)
        return {"key": key, "value": value}

    def conversation(self, items: list[Any]) -> dict[str, Any]:
        """The conversation `items` (JSON data) as the newest segment on the longest stored
        prefix: `{"key", "prev", "items"}`, or `{"key"}` when exactly this was sent."""
        digests = tuple(blob_key(canonical(item)) for item in items)
        prefix, prev = 0, None
        for stored, key in reversed(self._heads):  # the newest head is nearly always it
            if len(stored) <= len(digests) and digests[: len(stored)] == stored:
                prefix, prev = len(stored), key
                break
        if prev is not None and prefix == len(digests):
            return {"key": prev}
        segment = {"prev": prev, "items": items[prefix:]}
        key = blob_key(canonical(segment))
        self._heads.append((digests, key))
        if key in self._sent:
            return {"key": key}
        self._sent.add(key)
        return {"key": key, **segment}


class BlobStore:
    """Content-addressed JSON blobs in one table, on any SQLAlchemy URL (SQLite, PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _engine(url)
        self._conversations: OrderedDict[str, list[Any]] = OrderedDict()
        try:
            _metadata.create_all(self._engine, checkfirst=True)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StorageError(f"cannot open the agent blob store at {url}: {exc}") from None

    def close(self) -> None:
        self._engine.dispose()

    def put(self, key: str, text: str) -> None:
        """Store `text` under `key` unless it is there already (same key, same text)."""
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(blobs.c.key).where(blobs.c.key == key)).first():
                    return
                conn.execute(insert(blobs).values(key=key, data=text, created_at=time.time()))
        except IntegrityError:
            return  # another worker stored the same content between our read and insert
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot write to the agent blob store at {self.url}: {exc}"
            ) from None

    def get(self, key: str) -> str:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(select(blobs.c.data).where(blobs.c.key == key)).first()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read the agent blob store at {self.url}: {exc}") from None
        if row is None:
            raise BlobMissingError(
                f"blob {key[:16]}... is not in the agent blob store at {self.url}; every worker "
                f"that runs openai_agents.model_call must share one store (set blob_url in "
                f"adapters.openai_agents.AgentSettings to the same database on all of them)"
            )
        return str(row[0])

    def stats(self) -> tuple[int, int]:
        """(number of blobs, total characters): how big the store has grown."""
        with self._engine.connect() as conn:
            count, size = conn.execute(
                select(func.count(), func.coalesce(func.sum(func.length(blobs.c.data)), 0))
            ).one()
        return int(count), int(size)

    # -- the worker side of ConversationChain -------------------------------------------
    def resolve_ref(self, ref: dict[str, Any]) -> Any:
        """The value of a `ConversationChain.ref`, storing it first when it is carried."""
        key = ref["key"]
        if "value" in ref:
            self._put_checked(key, canonical(ref["value"]))
            return ref["value"]
        return json.loads(self.get(key))

    def resolve_conversation(self, ref: dict[str, Any]) -> list[Any]:
        """The items of a `ConversationChain.conversation`, storing its segment first."""
        key = ref["key"]
        items = self._conversations.get(key)
        if items is None and "items" in ref:
            self._put_checked(key, canonical({"prev": ref["prev"], "items": ref["items"]}))
            prev = ref["prev"]
            items = (self._conversation(prev) if prev is not None else []) + ref["items"]
            self._remember(key, items)
        elif items is None:
            items = self._conversation(key)
        return list(items)

    def _conversation(self, key: str) -> list[Any]:
        """The conversation whose head is `key`: cached, or walked back to a cached head."""
        items = self._conversations.get(key)
        if items is not None:
            self._conversations.move_to_end(key)
            return items
        segments: list[list[Any]] = []
        head: str | None = key
        items = []
        while head is not None:
            known = self._conversations.get(head)
            if known is not None:
                items = list(known)
                break
            segment = json.loads(self.get(head))
            segments.append(segment["items"])
            head = segment["prev"]
        for new in reversed(segments):
            items.extend(new)
        self._remember(key, items)
        return items

    def _remember(self, key: str, items: list[Any]) -> None:
        self._conversations[key] = items
        if len(self._conversations) > _CACHE_SIZE:
            self._conversations.popitem(last=False)

    def _put_checked(self, key: str, text: str) -> None:
        if blob_key(text) != key:
            raise BlobMissingError(
                f"blob key {key[:16]}... does not match its content; the workflow and the "
                f"worker hash differently (mismatched adapters.openai_agents versions?)"
            )
        self.put(key, text)


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: several worker processes write blobs while others read the journal.
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a blob must be on disk before the step that refers to it is journaled,
            # even across a power cut (the journal itself may live in another file).
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


_STORES: dict[str, BlobStore] = {}


def open_blob_store(url: str) -> BlobStore:
    """The process's store for `url`, opened once and shared by every model call."""
    store = _STORES.get(url)
    if store is None:
        store = BlobStore(url)
        _STORES[url] = store
    return store


def close_blob_stores() -> None:
    """Close every store this process opened (configure() does this when the URL changes)."""
    for store in _STORES.values():
        store.close()
    _STORES.clear()
