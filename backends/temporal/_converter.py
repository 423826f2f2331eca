"""The data converter: Temporal payloads carry `bridge.codec` JSON, nothing else.

Every value the bridge hands to Temporal (workflow input, activity arguments and results,
signal payloads, memo entries, failure details) is already JSON-compatible data produced by
`bridge.codec` with the declared types (`bridge._signature.CallShape`); the workflow and
activity shims decode it back into those types. So the one job left here is to write that
data as JSON text exactly as the sql backend stores it: key order kept (Temporal's default
JSON converter sorts keys), NaN and infinities kept, and no fallback that pickles or guesses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    BinaryNullPayloadConverter,
    BinaryPlainPayloadConverter,
    BinaryProtoPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    EncodingPayloadConverter,
    JSONProtoPayloadConverter,
    PayloadConverter,
)

from bridge import codec

__all__ = ["BridgeJSONConverter", "BridgePayloadConverter", "data_converter", "decode_payload"]

_ENCODING = "json/plain"
_ENCODING_BYTES = _ENCODING.encode()


class BridgeJSONConverter(EncodingPayloadConverter):
    """JSON-compatible data as `bridge.codec` JSON text (Temporal's `json/plain` encoding)."""

    @property
    def encoding(self) -> str:
        return _ENCODING

    def to_payload(self, value: Any) -> Payload | None:
        try:
            text = codec.dumps(value)
        except (TypeError, ValueError) as exc:
            # Only JSON data reaches Temporal: the shims encode with the declared types first.
            raise TypeError(
                f"a value of type {type(value).__qualname__} reached Temporal without being "
                f"encoded by bridge.codec: {exc}"
            ) from None
        return Payload(metadata={"encoding": _ENCODING.encode()}, data=text.encode())

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return codec.loads(payload.data)


class BridgePayloadConverter(CompositePayloadConverter):
    """Temporal's default converters with the JSON one replaced by `BridgeJSONConverter`.

    The binary and protobuf converters stay for Temporal's own payloads (None, bytes, and the
    protobuf answers of built-in queries such as the Web UI's stack trace).
    """

    def __init__(self) -> None:
        super().__init__(
            BinaryNullPayloadConverter(),
            BinaryPlainPayloadConverter(),
            JSONProtoPayloadConverter(),
            BinaryProtoPayloadConverter(),
            BridgeJSONConverter(),
        )


def data_converter() -> DataConverter:
    """The converter both the client and the workers must use."""
    return DataConverter(payload_converter_class=BridgePayloadConverter)


def decode_payload(payload: Payload, converter: Callable[[], PayloadConverter]) -> Any:
    """The value of one payload the shims receive as a RawValue: bridge's own JSON is read
    directly, anything else by `converter()` (the worker's payload converter). The same
    result as `converter().from_payload(payload)`, without the composite converter's
    dispatch, which cost more than the JSON itself on every activity attempt (profiled)."""
    if payload.metadata.get("encoding") == _ENCODING_BYTES:
        return codec.loads(payload.data)
    return converter().from_payload(payload)
