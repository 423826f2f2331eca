"""Payload encryption at rest: AES-256-GCM with named keys, on every backend.

Every stored argument, result, error, signal, update and event payload goes through one
keyring when `[encryption]` names keys:

- the journal's payload columns (`SealedText`, a SQLAlchemy type the journal schema uses for
  them; the sql backend's raw-DBAPI hot path seals its rows with `seal_row`),
- LangGraph's checkpoints and task writes (`checkpoint_cipher`, a cipher for LangGraph's
  `EncryptedSerializer`),
- Temporal payloads (`backends/temporal/_converter.py`: a `PayloadCodec` on this keyring),
- the bus outbox's event bodies.

A sealed text is self-describing: `bridge-enc:v1:<key id>:<base64(nonce + ciphertext)>`,
with a random 96-bit nonce and the key id as associated data. New payloads are sealed with
the `current` key; any configured key opens the payloads that name it, so rotation is: add
a new key, make it current, keep the old one for as long as payloads written with it exist.

Turning encryption on does not break an existing journal: a payload without the envelope
(written before) is read as the plaintext it is. A payload naming a key id that is not
configured, or a key that does not open it, raises `PayloadKeyError` naming the key id and
nothing is written: the read fails before any decision is taken from it.

The feature is an interceptor (`bridge.interceptors`, entry point `encryption`): its
`payload_codec()` hands the keyring to whatever stores payloads, so the core names no key.
Key material never appears in an error, a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError, EngineNotInstalledError, PayloadKeyError
from bridge.interceptors import Interceptor

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Dialect as SADialect

    from bridge.config import EncryptionSettings, Settings

__all__ = [
    "KEY_CHECK",
    "PREFIX",
    "EncryptionInterceptor",
    "Keyring",
    "SealedText",  # noqa: F822 - built on first use (module __getattr__)
    "attach",
    "check_keys",
    "checkpoint_cipher",
    "codec_for_url",
    "engine_codec",
    "generate_key",
    "interceptor",
    "is_sealed",
    "keyring_from_settings",
    "open_text",
    "process_codec",
    "seal_row",
]

#: The start of every sealed text. No JSON text starts with "b", so a sealed value can never
#: be mistaken for a plaintext one written before encryption was switched on.
PREFIX = "bridge-enc:v1:"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: The attribute of a SQLAlchemy dialect instance (one per engine) holding its keyring.
_DIALECT_ATTR = "bridge_payload_codec"
#: Step columns the raw-DBAPI upsert writes (`seal_row`).
_STEP_PAYLOADS = ("args", "output", "error", "attempts")


def generate_key() -> str:
    """A new random 256-bit key, base64, for `[encryption] keys`."""
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode()


def is_sealed(text: str | bytes | None) -> bool:
    """True for a value written by a keyring (an envelope), False for plaintext."""
    if isinstance(text, bytes):
        return text.startswith(PREFIX.encode())
    return isinstance(text, str) and text.startswith(PREFIX)


def _key_id_of(text: str) -> str:
    return text[len(PREFIX) :].split(":", 1)[0]


class Keyring:
    """AES-256-GCM keys by id; seals with the current one, opens with the one a payload
    names. See the module docstring."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise EngineNotInstalledError("payload encryption", "encryption") from None
        if current not in keys:
            raise ConfigError(
                f"[encryption] current = {current!r} names no key in [encryption] keys "
                f"(configured ids: {', '.join(sorted(keys)) or 'none'})"
            )
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise ConfigError(
                    f"[encryption] key id {key_id!r}: use 1-64 letters, digits, '_', '.' or '-'"
                )
            if len(key) != _KEY_BYTES:
                raise ConfigError(
                    f"[encryption] key {key_id!r} is {len(key)} bytes; AES-256-GCM needs "
                    f"{_KEY_BYTES} (make one with `python -c 'import bridge.encryption as e; "
                    f"print(e.generate_key())'`)"
                )
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    def __repr__(self) -> str:  # never the key material
        return f"Keyring(current={self.current!r}, ids={sorted(self._ciphers)!r})"

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    # -- bytes ------------------------------------------------------------------------
    def encrypt(self, data: bytes) -> tuple[str, bytes]:
        """`(key id, nonce + ciphertext)` of `data` under the current key."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, data, self.current.encode())
        return self.current, nonce + sealed

    def decrypt(self, key_id: str, blob: bytes, *, where: str = "a stored payload") -> bytes:
        """The plaintext of `blob` sealed under `key_id`, or `PayloadKeyError`."""
        from cryptography.exceptions import InvalidTag

        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                key_id,
                f"{where} is encrypted with key {key_id!r}, which is not configured (configured "
                f"ids: {', '.join(self.key_ids)}); nothing was changed. Add that key to "
                f"[encryption] keys (keep old keys after a rotation) and retry",
            )
        try:
            return cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):
            raise PayloadKeyError(
                key_id,
                f"{where} does not decrypt with the configured key {key_id!r}: the key under "
                f"that id is not the one it was written with, or the payload was altered; "
                f"nothing was changed. Configure the original key under {key_id!r}",
            ) from None

    # -- text (the journal's columns) --------------------------------------------------
    def seal(self, text: str) -> str:
        """`text` as an envelope under the current key (an envelope is left as it is)."""
        if text.startswith(PREFIX):
            return text
        return self.seal_with(self.current, text)

    def seal_with(self, key_id: str, text: str) -> str:
        """`text` as an envelope under key `key_id` (key checks are made with every key)."""
        nonce = os.urandom(_NONCE_BYTES)
        blob = nonce + self._ciphers[key_id].encrypt(nonce, text.encode(), key_id.encode())
        return f"{PREFIX}{key_id}:{base64.b64encode(blob).decode()}"

    def open(self, text: str, *, where: str = "a stored payload") -> str:
        """The plaintext of an envelope; a plaintext (pre-encryption) value as it is."""
        if not text.startswith(PREFIX):
            return text
        key_id, _, body = text[len(PREFIX) :].partition(":")
        try:
            blob = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise PayloadKeyError(
                key_id, f"{where} is an encrypted payload that is damaged (bad base64)"
            ) from None
        return self.decrypt(key_id, blob, where=where).decode()


#: What a key check seals: a constant each store keeps sealed under every key id it has
#: seen (the journal's meta table, the Temporal namespace's data), so a key that is not the
#: one a store knows under its id is refused before anything is written with it.
KEY_CHECK = '"durable-bridge key check"'


def check_keys(keyring: Keyring, recorded: Mapping[str, str], *, where: str) -> dict[str, str]:
    """Check the keyring against the key checks a store `recorded` (key id -> sealed
    `KEY_CHECK`); the checks to record for the key ids it has not seen yet. Raises
    PayloadKeyError naming the key id whose key is not the one the store knows."""
    for key_id, sealed in recorded.items():
        if key_id not in keyring.key_ids:
            continue  # a key this process does not hold: nothing it writes uses it
        what = f"the key check of key {key_id!r} in {where}"
        if keyring.open(sealed, where=what) != KEY_CHECK:
            raise PayloadKeyError(key_id, f"key {key_id!r} fails its key check in {where}")
    return {k: keyring.seal_with(k, KEY_CHECK) for k in keyring.key_ids if k not in recorded}


def open_text(codec: Keyring | None, text: Any, *, where: str = "a stored payload") -> Any:
    """`text` opened by `codec`; without one, plaintext passes and an envelope is refused
    with the error that says which key to configure."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        return text
    if codec is None:
        key_id = _key_id_of(text)
        raise PayloadKeyError(
            key_id,
            f"{where} is encrypted with key {key_id!r} but this process has no [encryption] "
            f"keys; nothing was changed. Configure [encryption] keys and current (or "
            f"BRIDGE_ENCRYPTION_KEYS / BRIDGE_ENCRYPTION_CURRENT) and retry",
        )
    return codec.open(text, where=where)


# -- settings and the interceptor ----------------------------------------------------------
def _key_bytes(key_id: str, raw: str) -> bytes:
    if raw.startswith("env:"):
        name = raw[4:]
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(
                f"[encryption] key {key_id!r} names the environment variable {name}, "
                f"which is not set"
            )
        raw = value
    raw = raw.removeprefix("base64:")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"[encryption] key {key_id!r} is not base64 (the value is not shown)"
        ) from None


def keyring_from_settings(settings: EncryptionSettings) -> Keyring | None:
    """The keyring `[encryption]` configures, or None when it names no keys."""
    if not settings.keys:
        if settings.current is not None:
            raise ConfigError(
                f"[encryption] current = {settings.current!r} but [encryption] keys is empty"
            )
        return None
    keys = {k: _key_bytes(k, v.get_secret_value()) for k, v in settings.keys.items()}
    if settings.current is None:
        raise ConfigError(
            "[encryption] keys is set but current is not: name the key id new payloads are "
            f"encrypted with (one of {', '.join(sorted(keys))})"
        )
    return Keyring(keys, settings.current)


class EncryptionInterceptor(Interceptor):
    """Hands the keyring to everything that stores payloads (`payload_codec`)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def payload_codec(self) -> Keyring:
        return self.keyring


#: The keyring of the settings this process loaded last (`interceptor`); see `process_codec`.
_last_loaded: Keyring | None = None


def interceptor(settings: Settings) -> EncryptionInterceptor | None:
    """The `bridge.interceptors` factory: on when `[encryption] keys` is set."""
    global _last_loaded
    keyring = _last_loaded = keyring_from_settings(settings.encryption)
    return None if keyring is None else EncryptionInterceptor(keyring)


def process_codec() -> Keyring | None:
    """The keyring of the settings this process's clients and workers were made with last.

    For what is opened without settings (the migration router's shadow store, a NATS
    transport): every process of one deployment runs with one `[encryption]` table, so its
    keyring is the one they must use. Pass the keyring explicitly where that does not hold.
    """
    return _last_loaded


# -- SQL columns ---------------------------------------------------------------------------
#: The codec the journal store at a url attached last (`attach`), for what the store opens
#: beside its engine without being handed the codec: an outbox (see `codec_for_url`).
#: Weak: a keyring is remembered while a store (its interceptor chain) still holds it.
_BY_URL: weakref.WeakValueDictionary[str, Keyring] = weakref.WeakValueDictionary()


def attach(engine: Engine, codec: Keyring | None, *, url: str | None = None) -> None:
    """Make `engine` seal and open its `SealedText` columns with `codec`. Each engine has
    its own dialect instance, so two journals in one process keep their own keys. `url`
    (the store's setting) remembers the codec for `codec_for_url`."""
    setattr(engine.dialect, _DIALECT_ATTR, codec)
    if url is not None:
        if codec is None:
            _BY_URL.pop(url, None)
        else:
            _BY_URL[url] = codec


def codec_for_url(url: str) -> Keyring | None:
    """The codec of the journal store opened last at `url` in this process.

    For what is opened beside a journal without being handed its keyring (an outbox on
    the journal's url): two stores on one url with different keys, opened at the same
    moment in one process, could swap codecs, so pass the keyring where it is known.
    """
    return _BY_URL.get(url)


def engine_codec(engine: Engine) -> Keyring | None:
    """The keyring attached to `engine`, or None."""
    return getattr(engine.dialect, _DIALECT_ATTR, None)


def _sealed_text_class() -> type:
    """`SealedText`, built on first use: the interceptor factory is loaded by every process
    (a Temporal client too), and only the SQL stores need SQLAlchemy."""
    from sqlalchemy import Text
    from sqlalchemy.types import TypeDecorator

    class SealedText(TypeDecorator[str]):
        """TEXT on disk (the same DDL as `Text`), sealed on write and opened on read by the
        keyring attached to the engine (`attach`); with none attached, plaintext passes and
        a sealed value read raises `PayloadKeyError`."""

        impl = Text
        cache_ok = True

        def process_bind_param(self, value: str | None, dialect: SADialect) -> str | None:
            codec: Keyring | None = getattr(dialect, _DIALECT_ATTR, None)
            if value is None or codec is None:
                return value
            return codec.seal(value)

        def process_result_value(self, value: str | None, dialect: SADialect) -> str | None:
            if value is None or not value.startswith(PREFIX):
                return value
            return open_text(getattr(dialect, _DIALECT_ATTR, None), value)

    SealedText.__module__ = __name__
    SealedText.__qualname__ = "SealedText"
    return SealedText


def __getattr__(name: str) -> Any:
    # PEP 562: `from bridge.encryption import SealedText` builds the class once.
    if name == "SealedText":
        cls = globals()["SealedText"] = _sealed_text_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def seal_row(codec: Keyring | None, row: dict[str, Any]) -> dict[str, Any]:
    """A step row's payload columns sealed, for statements that bypass `SealedText` (the
    sql backend's raw-DBAPI upsert)."""
    if codec is None:
        return row
    out = dict(row)
    for column in _STEP_PAYLOADS:
        value = out.get(column)
        if isinstance(value, str):
            out[column] = codec.seal(value)
    return out


# -- LangGraph -----------------------------------------------------------------------------
_LG_CIPHER = "bridge-aesgcm"


class _CheckpointCipher:
    """LangGraph's `CipherProtocol` on a keyring: the cipher name carries the key id
    (`bridge-aesgcm:<key id>`), so a checkpoint says which key opens it."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        key_id, blob = self._keyring.encrypt(plaintext)
        return f"{_LG_CIPHER}:{key_id}", blob

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        name, _, key_id = ciphername.partition(":")
        if name != _LG_CIPHER:
            raise PayloadKeyError(
                None, f"a LangGraph checkpoint is encrypted with an unknown cipher {name!r}"
            )
        return self._keyring.decrypt(key_id, ciphertext, where="a LangGraph checkpoint")


def checkpoint_cipher(keyring: Keyring) -> Any:
    """A LangGraph `CipherProtocol` sealing checkpoints with `keyring`."""
    return _CheckpointCipher(keyring)
