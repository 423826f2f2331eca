"""The data converter: Temporal payloads carry `bridge.codec` JSON, nothing else.

Every value the bridge hands to Temporal (workflow input, activity arguments and results,
signal payloads, memo entries, failure details) is already JSON-compatible data produced by
`bridge.codec` with the declared types (`bridge._signature.CallShape`); the workflow and
activity shims decode it back into those types. So the one job left here is to write that
data as JSON text exactly as the sql backend stores it: key order kept (Temporal's default
JSON converter sorts keys), NaN and infinities kept, and no fallback that pickles or guesses.

With `[encryption]` keys (`bridge.encryption`), the converter also carries a `PayloadCodec`
on the bridge's keyring: every payload leaving the process (inputs, results, signals,
updates, query answers, memo, failure details) is the whole serialized payload sealed with
AES-GCM, `encoding: binary/encrypted` and the key id in its metadata, so Temporal's history
holds no plaintext; failure messages and stack traces are moved into encoded attributes
(`SealingFailureConverter`) and sealed too, but for a query's failure, which no history
keeps. The payload converter also reads sealed payloads itself, and `open_failures` puts
messages back, for the code that builds the bridge's history from raw history events
(`_history.py`), which the codec never sees. A payload that is not sealed (written before
encryption was on) is read as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    BinaryNullPayloadConverter,
    BinaryPlainPayloadConverter,
    BinaryProtoPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    EncodingPayloadConverter,
    JSONProtoPayloadConverter,
    PayloadCodec,
    PayloadConverter,
)

from bridge import codec, interceptors
from bridge.errors import PayloadKeyError

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.encryption import Keyring

__all__ = [
    "BridgeJSONConverter",
    "BridgePayloadCodec",
    "BridgePayloadConverter",
    "SealingFailureConverter",
    "data_converter",
    "decode_payload",
    "open_failures",
]

_ENCODING = "json/plain"
_ENCODING_BYTES = _ENCODING.encode()
_SEALED = b"binary/encrypted"
_KEY_ID = "encryption-key-id"


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


class BridgePayloadCodec(PayloadCodec):
    """Seals every payload with the bridge's keyring (see the module docstring)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == _SEALED:
            return payload
        key_id, blob = self.keyring.encrypt(payload.SerializeToString())
        return Payload(metadata={"encoding": _SEALED, _KEY_ID: key_id.encode()}, data=blob)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != _SEALED:
            return payload  # written before encryption was on
        key_id = payload.metadata.get(_KEY_ID, b"").decode()
        plain = self.keyring.decrypt(key_id, payload.data, where="a Temporal payload")
        return Payload.FromString(plain)


class _SealedReader(EncodingPayloadConverter):
    """Reads `binary/encrypted` payloads (never writes them: the codec does), for history
    events the codec does not see."""

    def __init__(self, codec: BridgePayloadCodec, inner: PayloadConverter) -> None:
        self._codec = codec
        self._inner = inner

    @property
    def encoding(self) -> str:
        return _SEALED.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return self._inner.from_payload(self._codec.open(payload), type_hint)


def _sealing_converter_class(codec: BridgePayloadCodec) -> type[BridgePayloadConverter]:
    """`BridgePayloadConverter` that also reads sealed payloads with `codec` (temporalio
    builds payload converters from a class with no arguments)."""

    class SealingPayloadConverter(BridgePayloadConverter):
        def __init__(self) -> None:
            super().__init__()
            reader = _SealedReader(codec, BridgePayloadConverter())
            self.converters = {**self.converters, _SEALED: reader}

    return SealingPayloadConverter


#: The workflow class's query handler (`_workflow_class.py`): see `SealingFailureConverter`.
_QUERY_HANDLER = "_on_query"


def _from_query(exception: BaseException) -> bool:
    tb = exception.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == _QUERY_HANDLER:
            return True
        tb = tb.tb_next
    return False


class SealingFailureConverter(DefaultFailureConverter):
    """Failure messages and stack traces moved into the (sealed) encoded attributes, except
    a query's failure: Temporal stores no query in the history and hands the caller only
    the failure's message, which the client reads (`TemporalBackend.query`), so sealing it
    would lose it and protect nothing at rest."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)
        self._plain = DefaultFailureConverter()

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Any
    ) -> None:
        if _from_query(exception):
            self._plain.to_failure(exception, payload_converter, failure)
        else:
            super().to_failure(exception, payload_converter, failure)


def open_failures(events: list[Any], converter: PayloadConverter) -> list[Any]:
    """`events` (history protos, changed in place) with every failure's message and stack
    trace moved back out of its encoded attributes, as temporalio's failure converter does
    when it decodes a failure: the bridge reads failures straight from history events
    (`_history.py`), which would otherwise show "Encoded failure". `converter` is the
    client's payload converter, which opens sealed payloads itself."""
    for event in events:
        _open_failures_in(event, converter)
    return events


def _open_failures_in(message: Any, converter: PayloadConverter) -> None:
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        # `is_repeated` on protobuf 6+, `label` before (maps iterate keys: no failures there).
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for item in values:
            if not hasattr(item, "ListFields"):
                continue  # a map's scalar values
            if field.message_type.full_name == "temporal.api.failure.v1.Failure":
                _open_failure(item, converter)
            _open_failures_in(item, converter)


def _open_failure(failure: Any, converter: PayloadConverter) -> None:
    if not failure.HasField("encoded_attributes"):
        return
    try:
        attributes = converter.from_payload(failure.encoded_attributes)
    except PayloadKeyError as exc:
        # A failure sealed with another key, e.g. the workflow task failure of a worker with
        # a wrong key: shown as such instead of making the whole history unreadable.
        failure.message = f"{failure.message} ({exc})"
        return
    if isinstance(attributes, dict):
        failure.message = str(attributes.get("message", failure.message))
        failure.stack_trace = str(attributes.get("stack_trace", failure.stack_trace))
        failure.ClearField("encoded_attributes")


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The converter both the client and the workers must use; sealed when `settings`
    configure payload encryption (found through the interceptor chain)."""
    keyring = None if settings is None else interceptors.payload_codec(interceptors.load(settings))
    if keyring is None:
        return DataConverter(payload_converter_class=BridgePayloadConverter)
    payload_codec = BridgePayloadCodec(keyring)
    return DataConverter(
        payload_converter_class=_sealing_converter_class(payload_codec),
        payload_codec=payload_codec,
        failure_converter_class=SealingFailureConverter,
    )


def decode_payload(payload: Payload, converter: Callable[[], PayloadConverter]) -> Any:
    """The value of one payload the shims receive as a RawValue: bridge's own JSON is read
    directly, anything else by `converter()` (the worker's payload converter). The same
    result as `converter().from_payload(payload)`, without the composite converter's
    dispatch, which cost more than the JSON itself on every activity attempt (profiled)."""
    if payload.metadata.get("encoding") == _ENCODING_BYTES:
        return codec.loads(payload.data)
    return converter().from_payload(payload)
