"""The bridge conformance suite on the `thirdparty` backend."""

from bridge.testing.suite import *  # noqa: F403
