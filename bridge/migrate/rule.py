"""`[migrate.WORKFLOW]`: the migration router's rule for one workflow type.

Declared here, by the feature that reads it, and found by `bridge.config` through the
`bridge.settings` entry point, so the settings loader validates it with every other key.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from bridge._settings_base import Section

__all__ = ["MigrationRule"]


class MigrationRule(Section):
    """`[migrate.WORKFLOW]`: how new runs of WORKFLOW are split between two engines.

    `ramp` is the percentage of new runs that start on `to`, bucketed by SHA-256 of the
    run's key, so raising it only moves keys from `from` to `to` (0: all on `from`, 100: all
    on `to`). `shadow = true` keeps `from` as the primary for every new run and replays it
    on `to` for comparison, for the `sample` percentage of runs (chosen by SHA-256 of the
    run id). Runs already started stay on the engine they started on.

    `paused = true` stops the migration without forgetting how far it got: every new run
    starts on `from` and none is shadowed, while `ramp` keeps its value, so unpausing
    (`bridge migrate set WORKFLOW --resume`) moves exactly the keys that moved before. It
    is the brake for an incident on the new engine: runs already there drain.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, populate_by_name=True
    )

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    ramp: float = Field(0.0, ge=0, le=100)
    shadow: bool = False
    sample: float = Field(100.0, ge=0, le=100)
    paused: bool = False

    @model_validator(mode="after")
    def _two_engines(self) -> MigrationRule:
        if self.from_ == self.to and not self.shadow:
            raise ValueError(
                f"`from` and `to` are both {self.to!r}; name two engines, or set shadow = true "
                "to shadow an engine against itself (A/A)"
            )
        return self
