"""The built-in tools carried out: ``delegate`` (a sub_agent step added to the live run, its output the
answer) and ``propose_steps`` (a replan proposed from inside an attempt).

Both go through ``actions.propose``, the way a step's ``replan`` output does:
refused when ``allow_replan`` is false or the steps are invalid (the model is
told why), applied at once, or held for the operator's review under
``plan_approval: required``. A delegated step is named after the call
(``tools.builtin.delegated_key``), so a call asked again after a crash waits
on the step it added instead of adding another. While it waits, the leader's
attempt holds its slot: delegation needs room for one more step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from core.engine import actions
from core.engine.call_state import CallState
from core.engine.run_state import RunState, StepState
from core.engine.transitions import Effects
from core.model.events import EventType
from core.model.states import StepStatus
from core.tools import ToolError
from core.tools.builtin import delegated_key

POLL_S = 0.1  # how often a delegate call looks at its step (in memory: the controller keeps the run's state)


class Delegation:
    def __init__(self, run: RunState, follow: Callable[[Effects], asyncio.Future[Any]], clock: Callable[[], float]):
        self.run, self.follow, self.clock = run, follow, clock

    async def call(self, step: StepState, call: CallState) -> Any:
        """Carry out a built-in call; ``ToolError`` (the model is told) when it cannot be."""
        arguments = call.arguments if isinstance(call.arguments, dict) else {}
        if call.tool == "propose_steps":
            return await self._propose(step, {"mode": arguments.get("mode", "append"), "steps": arguments["steps"]})
        return await self._delegate(step, call, arguments)

    async def _propose(self, step: StepState, proposal: dict[str, Any]) -> str:
        effects = actions.propose(self.run, step, proposal, self.clock())
        await self.follow(effects)
        for event in effects.batch.events:
            if event["type"] == EventType.REPLAN_REFUSED:
                raise ToolError(f"the replan was refused: {_payload(effects, event)['error']}")
        if self.run.proposal is not None and self.run.proposal.get("by") == step.key:
            return "proposed: the operator reviews it before it applies"
        return "applied: the plan now has these steps"

    async def _delegate(self, step: StepState, call: CallState, arguments: dict[str, Any]) -> Any:
        key = delegated_key(call.id)
        proposed = self.run.proposal or {}
        waiting = proposed.get("by") == step.key and any(s.get("key") == key for s in proposed.get("steps", []))
        if key not in self.run.steps and not waiting:  # (asked again after a crash: it may already wait for review)
            self._check_room(step, arguments["agent"])
            task = arguments["task"]
            delegated = {
                "key": key,
                "type": "sub_agent",
                "agent": arguments["agent"],  # its slot and budget are the agent's it hands the task to
                "title": task[:200],
                "plan": {
                    "goal": task,
                    "steps": [
                        {
                            "key": "task",
                            "agent": arguments["agent"],
                            "title": task[:200],
                            "input": arguments.get("input", {}),
                        }
                    ],
                },
            }
            await self._propose(step, {"mode": "append", "steps": [delegated]})
        while True:
            found = self.run.steps.get(key)
            if found is None and (self.run.proposal is None or self.run.proposal.get("by") != step.key):
                raise ToolError("the operator rejected the delegation (the replan that adds its step)")
            if found is not None and found.status.terminal:
                break
            await asyncio.sleep(POLL_S)
        if found.status == StepStatus.SUCCEEDED:
            return found.output
        raise ToolError(
            f'the delegated step "{key}" ended {found.status.value}' + (f": {found.error}" if found.error else "")
        )

    def _check_room(self, step: StepState, agent: str) -> None:
        plan = self.run.plan
        if agent not in plan.agents:
            raise ToolError(f'no agent "{agent}" in this run; its agents: {", ".join(plan.agents)}')
        if self.run.policy.max_concurrency < 2:
            raise ToolError(
                "delegation needs policy.max_concurrency of 2 or more: this step holds a slot while it waits"
            )
        limit = plan.agents[agent].max_concurrency
        if agent == step.agent and limit is not None and limit < 2:
            raise ToolError(f'agent "{agent}" runs one step at a time, and this step is it: delegate to another agent')


def _payload(effects: Effects, event: dict[str, Any]) -> dict[str, Any]:
    return effects.batch.payloads[effects.batch.events.index(event)]
