"""Whether the code running now is workflow code, and so should journal what it calls."""

from __future__ import annotations

from bridge.activity import activity_info
from bridge.errors import OutsideWorkflowError
from bridge.workflow import Context, current_context


def workflow_context() -> Context | None:
    """The workflow Context of the code running now; None outside workflow code.

    An activity attempt is not workflow code even when a backend runs it in the workflow's
    own task (sql does; LangGraph runs it in the step's task): a tool called from inside an
    activity, or from a graph node (which is an activity), is called directly.
    """
    try:
        activity_info()
    except OutsideWorkflowError:
        return current_context()
    return None
