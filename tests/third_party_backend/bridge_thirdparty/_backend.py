"""The backend: bridge's embedded SQL executor, with settings of its own and no cancel."""

from __future__ import annotations

from backends.sql import SqlBackend
from bridge.config import Settings, SqlSettings
from bridge.errors import ConfigError


class ThirdPartyBackend(SqlBackend):
    name = "thirdparty"
    # Everything the executor does except cancellation, which this backend leaves out.
    capabilities = SqlBackend.capabilities - {"cancellation"}

    def __init__(self, *, settings: Settings) -> None:
        # A third-party backend's settings arrive unvalidated in `backend_options`.
        own = SqlSettings(**settings.backend_options)
        super().__init__(settings=settings.model_copy(update={"sql": own}))

    async def cancel(self, id: str) -> None:
        raise ConfigError(f"the {self.name} backend cannot cancel runs (asked for {id!r})")
