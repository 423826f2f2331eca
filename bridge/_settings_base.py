"""The base of every settings model, core and feature alike.

Apart from `bridge.config` so that a feature package (`bridge.migrate`) can declare its own
settings table on it without importing the config loader that looks the table up.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """Unknown keys are errors and values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
