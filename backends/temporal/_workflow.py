"""The module Temporal's sandbox imports afresh for every run: the home of `BridgeWorkflow`.

The class itself is defined once a process in `_workflow_class.py` (passed through); this
module only gives it to the sandbox, and on that import, inside the sandbox, imports the
modules of the workflows this process serves, so their code is loaded (and checked) by the
sandbox too, before the run starts and outside its runtime restrictions.
"""

from temporalio import workflow

from backends.temporal import _registry
from backends.temporal._workflow_class import BridgeWorkflow

__all__ = ["BridgeWorkflow"]

if workflow.unsafe.in_sandbox():
    _registry.import_served_modules()
