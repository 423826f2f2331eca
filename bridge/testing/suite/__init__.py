"""The conformance suite: the scenarios every backend must pass, under the same test names.

Import it into one test module of your project and run pytest with the backends to check:

    # tests/testing/test_conformance.py
    from bridge.testing.suite import *  # noqa: F403

    pytest --bridge-backend sql --bridge-backend mybackend tests/testing/test_conformance.py

Each scenario runs once per backend (`test_signal[sql]`, `test_signal[mybackend]`); one
marked `requires(capability)` is skipped, and reported as skipped by capability, on a
backend whose `Backend.capabilities` does not list it. Failure messages start with the
scenario and say what differed.

Installed plugins add scenarios of their own through the `bridge_test_scenarios` hook (the
OpenAI Agents adapter adds `test_agent_loop_with_tools`); they run in the same way.
"""

from bridge.testing._plugins import contributed_scenarios
from bridge.testing.suite._children import test_child_parent_close_policy, test_child_workflow
from bridge.testing.suite._crash import test_crash_resume_at_every_step_boundary
from bridge.testing.suite._liveness import test_activity_cancellation, test_heartbeat_timeout
from bridge.testing.suite._messages import (
    test_continue_as_new,
    test_query,
    test_update,
    test_update_rejected_by_validator,
    test_update_same_id_twice,
    test_wait_condition,
    test_wait_for_signals,
)
from bridge.testing.suite._steps import (
    test_codec_round_trip,
    test_gather,
    test_idempotent_start,
    test_non_retryable_error,
    test_retry_with_backoff,
    test_saga_compensation,
    test_sequence,
    test_timeout,
)
from bridge.testing.suite._versions import (
    test_deprecate_patch,
    test_non_determinism_detection,
    test_patched,
)
from bridge.testing.suite._waits import (
    test_cancellation,
    test_durable_sleep_across_restart,
    test_execution_timeout,
    test_signal,
    test_signal_timeout,
)

__all__ = [
    "test_sequence",
    "test_retry_with_backoff",
    "test_non_retryable_error",
    "test_timeout",
    "test_signal",
    "test_signal_timeout",
    "test_durable_sleep_across_restart",
    "test_gather",
    "test_saga_compensation",
    "test_idempotent_start",
    "test_cancellation",
    "test_patched",
    "test_non_determinism_detection",
    "test_codec_round_trip",
    "test_crash_resume_at_every_step_boundary",
    "test_query",
    "test_update",
    "test_update_rejected_by_validator",
    "test_update_same_id_twice",
    "test_wait_for_signals",
    "test_wait_condition",
    "test_continue_as_new",
    "test_heartbeat_timeout",
    "test_activity_cancellation",
    "test_child_workflow",
    "test_child_parent_close_policy",
    "test_deprecate_patch",
    "test_execution_timeout",
]

# The plugins' scenarios and fixtures, so that `from bridge.testing.suite import *` runs them.
_contributed = contributed_scenarios(__all__)
globals().update(_contributed)
__all__ += list(_contributed)
