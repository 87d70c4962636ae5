"""The sub_agent step's executor: its plan runs as a child run, and the child's final output is the step's.

The engine knows nothing of orchestrators: the child run is created, driven
(or, after a crash, gone on with) and awaited through the ``ChildRuns`` port
the orchestrator gives the controller.
"""

from __future__ import annotations

from typing import Any

from core.executors.base import AttemptFailed, ChildRuns, Result, StepCall


class ChildRunExecutor:
    interruptible = True  # canceled, the port cancels the child run

    def __init__(self, children: ChildRuns | None, plan: dict[str, Any]) -> None:
        self.children = children
        self.plan = plan

    async def execute(self, call: StepCall) -> Result:
        if self.children is None:
            raise AttemptFailed(
                f'step "{call.key}" runs a child plan, which needs an orchestrator to drive it', retryable=False
            )
        return await self.children.run_child(call.run_id, call.key, self.plan)
