"""An example third-party backend: the embedded executor under another name, configured
through `backend_options`, that cannot cancel runs (and says so in its capabilities)."""

from bridge_thirdparty._backend import ThirdPartyBackend

__all__ = ["ThirdPartyBackend"]
