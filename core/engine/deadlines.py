"""Approval deadlines: a gate nobody answers in time is answered by its ``on_approval_timeout``.

A step's or tool call's deadline is stored when its gate opens (``transitions.gate``,
``tool_calls``), so it survives restarts: whichever process drives the run arms a
timer for every waiting gate that has one (``sync``, after every change), and a
deadline that passed while nobody drove the run is applied as soon as one does.
The answer goes through the same deciders as an operator's, by the user
``timeout``: ``reject`` (the model hears why, for a call), ``approve``, or ``fail``
(the run ends failed), with an ``approval_timed_out`` event first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from core.engine import actions, transitions
from core.engine.run_state import RunState
from core.engine.transitions import Effects
from core.model import commands
from core.model.events import EventType, iso
from core.model.states import RunStatus
from core.model.tools import CallStatus, OnTimeout, approval_timeout

TIMEOUT_USER = "timeout"  # who answers a gate whose deadline passed


class Deadlines:
    def __init__(
        self,
        run: RunState,
        clock: Callable[[], float],
        schedule: Callable[..., asyncio.TimerHandle],
        apply: Callable[..., Any],
    ) -> None:
        self.run, self.clock, self.schedule, self.apply = run, clock, schedule, apply
        self._armed: dict[str, tuple[float, asyncio.TimerHandle]] = {}  # "step:KEY" / "call:ID" -> deadline, timer

    def sync(self) -> None:
        """Arm a timer for every waiting gate with a deadline; drop those of gates answered meanwhile."""
        due = self._due()
        for gate, (at, handle) in list(self._armed.items()):
            if due.get(gate) != at:
                handle.cancel()
                del self._armed[gate]
        for gate, at in due.items():
            if gate not in self._armed:
                delay = max(0.0, at - self.clock())
                self._armed[gate] = (at, self.schedule(delay, f"the approval deadline of {gate}", self._passed, gate))

    def cancel_all(self) -> None:
        for _, handle in self._armed.values():
            handle.cancel()
        self._armed.clear()

    def _due(self) -> dict[str, float]:
        run = self.run
        due = {f"step:{k}": run.steps[k].deadline for k in run.waiting if run.steps[k].deadline is not None}
        for call in run.calls.values():
            if call.deadline is not None and call.status == CallStatus.WAITING_USER:
                due[f"call:{call.id}"] = call.deadline
        if run.proposal is not None and run.deadline is not None:  # a replan an agent proposed, under review
            due["plan:proposed"] = run.deadline
        return due  # type: ignore[return-value]

    def _passed(self, gate: str) -> None:
        self._armed.pop(gate, None)
        if not self.run.live or gate not in self._due():  # answered, or the run ends, meanwhile
            return
        kind, name = gate.split(":", 1)
        now = self.clock()
        if kind == "plan":
            policy = self.run.policy
            action, seconds = policy.on_approval_timeout, policy.approval_timeout_s or 0.0
            reason = f"the review of the proposed replan timed out after {seconds:g}s"
            command: commands.Command = commands.DecidePlan(approve=action == "approve", reason=reason)
            subject = {"gate": "plan", "step": (self.run.proposal or {}).get("by"), "deadline": iso(self.run.deadline)}
        elif kind == "step":
            step = self.run.steps[name]
            action, seconds = self._step_action(name)
            reason = f"approval timed out after {seconds:g}s"
            command = commands.Approve(name, reason) if action == "approve" else commands.Reject(name, reason)
            subject = {"gate": "step", "step": name, "deadline": iso(step.deadline)}
        else:
            call = self.run.call(name)
            action, seconds = self._call_action(call.rule)
            reason = f"approval timed out after {seconds:g}s"
            command = commands.DecideCall(name, approve=action == "approve", reason=reason)
            subject = {"gate": "call", "step": call.step, "call": name, "deadline": iso(call.deadline)}
        effects = Effects()
        effects.batch.event(
            self.run.run_id, EventType.APPROVAL_TIMED_OUT, subject["step"], {**subject, "action": action}, now
        )
        if action == "fail":
            transitions.end_run(self.run, RunStatus.FAILED, f"{gate.replace(':', ' ')}: {reason}", effects, now)
            self.apply(effects)
        else:
            self.apply(effects, actions.decide(self.run, command, TIMEOUT_USER, now))

    def _step_action(self, key: str) -> tuple[OnTimeout, float]:
        due = transitions.step_timeout(self.run, self.run.steps[key])
        return (due[1], due[0]) if due is not None else (self.run.policy.on_approval_timeout, 0.0)

    def _call_action(self, rule: str | None) -> tuple[OnTimeout, float]:
        """The action of the rule that asked (found by what the call records of it, without its number: a
        rule added to the live run since moves the others down), else the policy's."""
        policy = self.run.policy
        said = rule.split(" ", 2)[-1] if rule else None
        for index, candidate in enumerate(self.run.plan.approval_rules):
            if said is not None and candidate.describe(index).split(" ", 2)[-1] == said:
                due = approval_timeout(
                    None, None, candidate.decision(index), policy.approval_timeout_s, policy.on_approval_timeout
                )
                if due is not None:
                    return due[1], due[0]
        return policy.on_approval_timeout, policy.approval_timeout_s or 0.0
