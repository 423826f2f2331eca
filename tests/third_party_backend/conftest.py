"""Run the bridge conformance suite on this package's backend by default."""

import pytest


def pytest_bridge_default_backends(config: pytest.Config) -> list[str]:
    return ["thirdparty"]
