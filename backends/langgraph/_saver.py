"""LangGraph's own checkpointers, made to commit before LangGraph moves on.

LangGraph hands every task write (`put_writes`) and checkpoint (`put`) to a background
executor and resolves the task's future without waiting for it, so a process killed just
after a step returns can run that step again (langchain-ai/langgraph#8039, measured in
`shared/research/anchors-langgraph-dbos.md` §1.3). The savers here are SqliteSaver and
PostgresSaver with one change: their async methods do the write *in the call*, on the
event loop's thread. LangGraph calls `aput_writes` from the task's done-callback, which runs
before the callback that resolves the future the workflow awaits, so a step's result is
committed before the workflow sees it. One synchronous commit per step is also what the
sql backend does; a thread hop per write (AsyncSqliteSaver) costs more than the commit.

They also:
- never store an `__error__` write. The bridge's entrypoint and step tasks never fail
  on purpose (a failed activity is a *returned* failure record), so such a write only
  means an execution was abandoned: cancelled on shutdown, a lost lease, a storage error.
  Kept, LangGraph would replay it as the step's outcome; dropped, the step runs again as
  after a crash, and no exception object is ever serialized.
- translate driver errors into `bridge.StorageError` naming the database and what to do,
  and remember a failed write per thread, so the workflow stops at its next step instead of
  going on past a result that is not on disk (`raise_failure`).
- use JsonPlusSerializer with `pickle_fallback=False` and the strict msgpack allow-list:
  every value the bridge stores is JSON data, and nothing is ever pickled.
- with `[encryption]` keys, wrap it in LangGraph's `EncryptedSerializer` on the bridge's
  keyring (`bridge.encryption.checkpoint_cipher`): checkpoints and task writes are sealed
  with AES-GCM, the key id in the stored type (`msgpack+bridge-aesgcm:<key id>`), and
  checkpoints written before encryption was on still load. LangGraph's checkpoint
  *metadata* column stays JSON text: it holds step numbers and sources, not payloads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from typing import Any

from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from bridge.encryption import Keyring, checkpoint_cipher
from bridge.errors import StorageError

# LangGraph's channel for a failed task (langgraph/_internal/_constants.py; private there,
# but part of the stored checkpoint format).
ERROR_CHANNEL = "__error__"


def strict_serializer() -> JsonPlusSerializer:
    """msgpack only: no pickle fallback, and only LangGraph's safe types are revived."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


def checkpoint_serializer(codec: Keyring | None) -> SerializerProtocol:
    """The strict serializer, sealed by `codec` when payload encryption is on."""
    if codec is None:
        return strict_serializer()
    return EncryptedSerializer(checkpoint_cipher(codec), strict_serializer())


async def _resolved(value: Any) -> Any:
    return value


async def _raising(exc: BaseException) -> Any:
    raise exc


class DurableSaverMixin:
    """Synchronous commits behind LangGraph's async saver API; see the module docstring."""

    def __init__(self, conn: Any, *, location: str, codec: Keyring | None = None) -> None:
        super().__init__(conn, serde=checkpoint_serializer(codec))  # type: ignore[call-arg]
        self.location = location
        self._failures: dict[str, StorageError] = {}

    # -- error translation --------------------------------------------------------------
    def describe_error(self, exc: Exception, action: str) -> str:
        return f"the LangGraph checkpoint database {self.location}: {action} failed: {exc}"

    @contextlib.contextmanager
    def translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            if not self._is_driver_error(exc):
                raise
            raise StorageError(self.describe_error(exc, action)) from None

    def _is_driver_error(self, exc: Exception) -> bool:
        """True for the database driver's own errors (the dialect module says which)."""
        raise NotImplementedError

    def raise_failure(self, thread_id: str) -> None:
        """Raise the StorageError of a write for `thread_id` that failed in the background."""
        exc = self._failures.pop(thread_id, None)
        if exc is not None:
            raise exc

    def _remember(self, config: Any, exc: StorageError) -> None:
        self._failures[str(config["configurable"]["thread_id"])] = exc

    # -- sync API (what LangGraph's async API below calls) ------------------------------
    def put(
        self,
        config: Any,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Any:
        with self.translating("saving a checkpoint"):
            return super().put(config, checkpoint, metadata, new_versions)  # type: ignore[misc]

    def put_writes(
        self,
        config: Any,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        kept = [w for w in writes if w[0] != ERROR_CHANNEL]
        if kept:
            with self.translating("saving a step result"):
                super().put_writes(config, kept, task_id, task_path)  # type: ignore[misc]

    def get_tuple(self, config: Any) -> CheckpointTuple | None:
        with self.translating("loading a checkpoint"):
            return super().get_tuple(config)  # type: ignore[misc,no-any-return]

    def list(self, config: Any, **kwargs: Any) -> Iterator[CheckpointTuple]:
        with self.translating("listing checkpoints"):
            yield from super().list(config, **kwargs)  # type: ignore[misc]

    # -- async API: the same work, done before returning --------------------------------
    def aput(  # type: ignore[override]
        self,
        config: Any,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Awaitable[Any]:
        try:
            return _resolved(self.put(config, checkpoint, metadata, new_versions))
        except StorageError as exc:
            self._remember(config, exc)
            return _raising(exc)

    def aput_writes(  # type: ignore[override]
        self,
        config: Any,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> Awaitable[None]:
        try:
            self.put_writes(config, writes, task_id, task_path)
        except StorageError as exc:
            self._remember(config, exc)
            return _raising(exc)
        return _resolved(None)

    async def aget_tuple(self, config: Any) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, **kwargs):
            yield item
