"""Each test leaves no keyring behind: `bridge.encryption.process_codec()` (the keyring of
the settings this process loaded last) and `codec_for_url` (the keyring of the journal opened
last on a url, e.g. the session's PostgreSQL database) must not leak into other tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import bridge.encryption


@pytest.fixture(autouse=True)
def _forget_the_process_keyring() -> Iterator[None]:
    yield
    bridge.encryption._last_loaded = None
    bridge.encryption._BY_URL.clear()
