"""The sub_agent step's executor: its plan runs as a child run, and the child's final output is the step's.

The engine knows nothing of orchestrators: the child run is created, driven
(or, after a crash, gone on with) and awaited through the ``ChildRuns`` port
the orchestrator gives the controller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from core.executors.base import AttemptFailed, ChildRuns, Result, StepCall


class ChildRunExecutor:
    interruptible = True

    def __init__(self, children: ChildRuns | None, plan: dict[str, Any], closing: Callable[[], bool]) -> None:
        self.children = children
        self.plan = plan
        self.closing = closing  # the driver is stopping (not the step): the child is left for the resume

    async def execute(self, call: StepCall) -> Result:
        if self.children is None:
            raise AttemptFailed(
                f'step "{call.key}" runs a child plan, which needs an orchestrator to drive it', retryable=False
            )
        try:
            return await self.children.run_child(call.run_id, call.key, self.plan)
        except asyncio.CancelledError:
            # canceled, timed out, or its run ended: its child run ends too. A driver that stops (ctrl-c,
            # a worker handing the run back) leaves it unfinished: the next driver goes on with it.
            if not self.closing():
                await asyncio.shield(self.children.cancel_child(call.run_id, call.key))
            raise
