"""The errors the OpenAI Agents adapter raises, each naming what to do."""

from __future__ import annotations

from bridge.errors import BridgeError, NonRetryableError

__all__ = [
    "BlobMissingError",
    "ModelNotFoundError",
    "NonRetryableModelError",
    "ScriptError",
]


class ModelNotFoundError(BridgeError, NonRetryableError):
    """The worker has no model for the name an agent asked for; retrying cannot help."""


class BlobMissingError(BridgeError, NonRetryableError):
    """A model call refers to a conversation blob its worker's blob store does not hold."""


class ScriptError(BridgeError, NonRetryableError):
    """A ScriptedModel was asked for a turn its script does not have, or a step is malformed."""


class NonRetryableModelError(BridgeError, NonRetryableError):
    """The model API refused the request for good (a 4xx other than 408/409/429)."""
