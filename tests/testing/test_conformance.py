"""The conformance suite (`bridge.testing.suite`) on this repository's backends.

`pytest --bridge-backend NAME ... tests/testing/test_conformance.py` picks the backends; without the
option, tests/conftest.py names every backend whose engine is installed here.
"""

from bridge.testing.suite import *  # noqa: F403
