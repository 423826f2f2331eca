"""Secrets out of text before it leaves the process: the password of a database URL.

Settings carry URLs such as `postgresql+psycopg://app:S3cret@db/prod`, and errors name the
database they could not use, so a password would reach a terminal, a log or an HTTP reply.
`mask` replaces it with `***`, as SQLAlchemy's own `URL.__str__` does. `BridgeError` masks
its message when it is made, so every error durable-bridge raises is already clean.
"""

from __future__ import annotations

import re

__all__ = ["mask"]

# scheme://user:PASSWORD@ (a password holds no "@" unencoded, as in SQLAlchemy's URL rule)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)[^\s@'\"]*@")
# password=... in a query string or a libpq key/value connection string
_PASSWORD_PARAM = re.compile(r"(\b(?:password|passwd|pwd)\s*=\s*)[^\s&;'\"]+", re.IGNORECASE)


def mask(text: str) -> str:
    """`text` with every database password in it replaced by `***`."""
    if "=" not in text and "@" not in text:  # the common case: nothing to look for
        return text
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)
