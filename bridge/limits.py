"""The largest workflow id and payload bridge accepts, checked before anything is written.

Each engine has its own ceilings and reports crossing them in its own words, late: a 10 KB
id passes SQLite, fails PostgreSQL with a driver error and Temporal with an RPCError; a
50 MB argument passes both SQL journals and fails Temporal. Bridge checks one set of limits,
the strictest of its engines', on every backend, so a run accepted on one engine can be
moved or shadowed to another (`bridge migrate`) and every caller gets the same clear error:

- an id: at most 255 characters, the journals' id columns (VARCHAR(255): PostgreSQL
  enforces it, SQLite stores anything), and at most 1000 UTF-8 bytes, Temporal's default
  `limit.maxIDLength` (the server compares Go's byte length);
- a payload (a start's arguments, a signal's payload, an activity's result) as compact JSON:
  at most 2 MiB, Temporal's default `limit.blobSize.error` per payload (it warns from
  512 KB); a gRPC message, several payloads together, may not pass 4 MB. The SQL journals
  would take up to 1 GB, but every replay reads each row again.
"""

from __future__ import annotations

from typing import Any

from bridge import codec
from bridge.errors import InvalidIdError, PayloadTooLargeError

__all__ = ["MAX_ID_BYTES", "MAX_ID_CHARS", "MAX_PAYLOAD_BYTES", "check_id", "check_payload"]

MAX_ID_CHARS = 255
MAX_ID_BYTES = 1000
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024


def check_id(id: str, *, parameter: str = "id") -> None:
    """Raise InvalidIdError unless `id` is a workflow id every engine stores as given."""
    if not id:
        raise InvalidIdError(
            f"{parameter} is empty; pass a non-empty workflow id, or leave {parameter} out "
            f"to get a new random one"
        )
    chars, size = len(id), len(id.encode("utf-8"))
    if chars > MAX_ID_CHARS or size > MAX_ID_BYTES:
        raise InvalidIdError(
            f"{parameter} is {chars} characters ({size} bytes in UTF-8), more than the limit "
            f"of {MAX_ID_CHARS} characters and {MAX_ID_BYTES} bytes (bridge.limits); use a "
            f"shorter id, such as a hash of a long natural key"
        )


def check_payload(data: Any, *, what: str) -> None:
    """Raise PayloadTooLargeError when JSON data `data` (already encoded by bridge.codec) is
    larger than every engine accepts; `what` names it in the error."""
    if data is None or isinstance(data, bool | int | float):
        return  # a scalar: most activity results, checked on every step
    if isinstance(data, str) and len(data) * 6 + 2 <= MAX_PAYLOAD_BYTES:
        return  # JSON spells a character in at most 6 bytes (\uXXXX)
    text = codec.dumps(data)
    # A character is at most 4 UTF-8 bytes: most payloads are decided without encoding.
    if len(text) * 4 <= MAX_PAYLOAD_BYTES:
        return
    size = len(text.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"{what} is {size:,} bytes as JSON, more than the limit of "
            f"{MAX_PAYLOAD_BYTES:,} bytes per payload (bridge.limits); nothing was written. "
            f"Pass a reference instead (a path, URL or key in your own store) and load the "
            f"data in an activity"
        )
