"""A run as one process holds it: its plan, its steps, the index, and the mode it is in.

``RunState`` is what the deciders (``actions.py``) and the transitions
(``transitions.py``) read and change. The live controller keeps one for the
run it drives; an action on a run nobody drives builds one from the store
(``from_records``), decides on it, and commits what the decision wrote. The
same code decides both, so a live and an offline run answer alike.

The run's mode is one explicit state (``RunMode``), with the moves allowed
between modes in one table, instead of flags read all over the controller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.engine.budget import CostBudget, TokenBudget
from core.engine.call_state import CallState
from core.engine.scheduler import Scheduler
from core.errors import CallNotFound, StepNotFound
from core.model.plan import Plan, StepSpec
from core.model.result import RunResult
from core.model.states import RunStatus, StepStatus
from core.store.records import RunRecord, StepRecord, ToolCallRecord
from core.values import dumps


class RunMode(StrEnum):
    """What the run does with a step whose dependencies are met."""

    ACTIVE = "active"  # launch it, as a slot frees
    PAUSED = "paused"  # nothing: the token budget is spent, the operator raises it (on_budget_exhausted: pause)
    REVIEWING = "reviewing"  # nothing: a replan an agent proposed waits for the operator's decision
    DRAINING = "draining"  # nothing: shutting down; the run is handed back once no attempt runs
    ENDING = "ending"  # nothing ever again: the run's verdict is written


MODE_MOVES: dict[RunMode, frozenset[RunMode]] = {
    RunMode.ACTIVE: frozenset({RunMode.PAUSED, RunMode.REVIEWING, RunMode.DRAINING, RunMode.ENDING}),
    RunMode.PAUSED: frozenset({RunMode.ACTIVE, RunMode.DRAINING, RunMode.ENDING}),
    RunMode.REVIEWING: frozenset({RunMode.ACTIVE, RunMode.DRAINING, RunMode.ENDING}),
    RunMode.DRAINING: frozenset({RunMode.ENDING}),
    RunMode.ENDING: frozenset(),
}
HOLD_BUDGET = "budget"  # runs.hold of a run paused on its budget: remembered for whoever acts on it next


@dataclass
class StepState:
    """A step as a process holds it: the spec plus its mutable row."""

    spec: StepSpec
    idx: int
    agent: str
    status: StepStatus
    attempts: int = 0
    input: Any = None
    output: Any = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    not_before: float | None = None
    approved_by: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    cost_usd: float | None = 0.0  # None once it spent tokens whose price is not known
    deadline: float | None = None  # when its approval gate times out, while it waits

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def input_json(self) -> str:
        """The input encoded once (it changes only when an operator edits it)."""
        cached = self.__dict__.get("_input_json")
        if cached is None or cached[0] is not self.input:
            cached = (self.input, json.dumps(self.input))
            self.__dict__["_input_json"] = cached
        return cached[1]

    def row(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "status": self.status.value,
            "attempts": self.attempts,
            "input_json": self.input_json,
            "output_json": None if self.output is None else dumps(self.output),
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "not_before": self.not_before,
            "approved_by": self.approved_by,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "cost_usd": self.cost_usd,
            "deadline": self.deadline,
        }

    @classmethod
    def from_record(cls, spec: StepSpec, record: StepRecord) -> StepState:
        return cls(
            spec=spec,
            idx=record.idx,
            agent=record.agent,
            status=record.status,
            attempts=record.attempts,
            input=record.input,
            output=record.output,
            error=record.error,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            not_before=record.not_before,
            approved_by=record.approved_by,
            started_at=record.started_at,
            ended_at=record.ended_at,
            cost_usd=record.cost_usd,
            deadline=record.deadline,
        )


def new_step_row(run_id: str, idx: int, spec: StepSpec, agent: str) -> dict[str, Any]:
    """The stored row of a step that has not started yet."""
    return {
        "run_id": run_id,
        "key": spec.key,
        "idx": idx,
        "title": spec.display_title,
        "type": spec.type,
        "agent": agent,
        "status": StepStatus.PENDING.value,
        "attempts": 0,
        "input_json": json.dumps(spec.input),
        "output_json": None,
        "error": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "not_before": None,
        "approved_by": None,
        "started_at": None,
        "ended_at": None,
        "cost_usd": 0.0,
        "deadline": None,
    }


@dataclass
class RunState:
    """One run: what the engine decides on. Changed only by transitions and deciders, synchronously."""

    run_id: str
    plan: Plan
    status: RunStatus
    reason: str | None
    budget: TokenBudget
    prompt_tokens: int
    completion_tokens: int
    updated_at: float
    ended_at: float | None
    proposal: dict[str, Any] | None  # a replan an agent proposed, waiting for the operator
    steps: dict[str, StepState]
    index: Scheduler
    mode: RunMode = RunMode.ACTIVE
    waiting: set[str] = field(default_factory=set)  # steps waiting at their approval gate
    launches: int = 0  # attempts started, for max_iterations
    result: RunResult | None = None  # once it ended
    calls: dict[str, CallState] = field(default_factory=dict)  # every tool call of the run, by loopdeck's id
    cost_usd: float = 0.0  # dollars its priced spending cost (the unpriced steps say so themselves)
    dollars: CostBudget = field(default_factory=lambda: CostBudget(None))  # policy.cost_budget_usd
    deadline: float | None = None  # when the review of a proposed plan times out, while it waits

    @property
    def policy(self):
        return self.plan.policy

    @property
    def live(self) -> bool:
        """Whether the run can still change (it has not ended, nor begun to)."""
        return not self.status.terminal and self.mode != RunMode.ENDING

    def set_mode(self, mode: RunMode) -> None:
        if mode == self.mode:
            return
        if mode not in MODE_MOVES[self.mode]:
            raise RuntimeError(f"run {self.run_id} is {self.mode.value}; it cannot become {mode.value}")
        self.mode = mode

    def run_row(self, now: float) -> dict[str, Any]:
        """The run's mutable columns as written (``WriteBatch.run``)."""
        self.updated_at = now
        return {
            "status": self.status.value,
            "reason": self.reason,
            "token_budget": self.budget.limit,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "updated_at": now,
            "ended_at": self.ended_at,
            "proposal_json": None if self.proposal is None else json.dumps(self.proposal),
            "hold": HOLD_BUDGET if self.mode == RunMode.PAUSED else None,
            "result_json": None if self.result is None else dumps(self.result.to_json()),
            "cost_usd": self.cost_usd,
            "cost_budget_usd": self.dollars.limit,
            "deadline": self.deadline,
        }

    def call(self, call_id: str) -> CallState:
        found = self.calls.get(call_id)
        if found is None:
            raise CallNotFound(self.run_id, call_id, list(self.calls))
        return found

    def step(self, key: str) -> StepState:
        try:
            return self.steps[key]
        except KeyError:
            raise StepNotFound(self.run_id, key, list(self.steps)) from None

    def max_attempts(self, step: StepState) -> int:
        return step.spec.max_attempts or self.policy.max_step_attempts

    def index_step(self, step: StepState) -> None:
        self.index.add(
            step.key, step.idx, step.agent, step.spec.depends_on, step.spec.dependency_policy == "allow_skipped"
        )

    @classmethod
    def from_records(
        cls,
        run: RunRecord,
        plan: Plan,
        steps: list[StepRecord],
        agent_limits: bool = True,
        calls: list[ToolCallRecord] | None = None,
    ) -> RunState:
        """A run as the store has it, with its index built and every finished step settled in it."""
        specs = {spec.key: spec for spec in plan.steps}
        states = {r.key: StepState.from_record(specs[r.key], r) for r in steps if r.key in specs}
        index = Scheduler(
            plan.policy.max_concurrency,
            {name: cfg.max_concurrency for name, cfg in plan.agents.items()} if agent_limits else None,
            critical_path=plan.policy.start_order == "critical_path",
        )
        state = cls(
            run_id=run.id,
            plan=plan,
            status=run.status,
            reason=run.reason,
            budget=TokenBudget(run.token_budget, run.tokens),
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            cost_usd=run.cost_usd or 0.0,
            dollars=CostBudget(run.cost_budget_usd, run.cost_usd or 0.0),
            deadline=run.deadline,
            updated_at=run.updated_at,
            ended_at=run.ended_at,
            proposal=run.proposal,
            steps=states,
            index=index,
            mode=RunMode.REVIEWING
            if run.proposal is not None
            else RunMode.PAUSED
            if run.hold == HOLD_BUDGET
            else RunMode.ACTIVE,
            waiting={k for k, s in states.items() if s.status == StepStatus.WAITING_USER},
            launches=sum(s.attempts for s in states.values()),
            result=run.result,
            calls={c.id: CallState.from_record(c) for c in calls or ()},
        )
        for step in sorted(states.values(), key=lambda s: s.idx):
            state.index_step(step)
        index.link()
        for step in states.values():
            if step.status.terminal:
                index.settle(step.key, step.status.value)
        return state
