"""Typed records at the store boundary: what a read returns, its JSON columns decoded once.

Callers never see database rows (procrastinate's ``Job.from_row`` is the
model): a record is a frozen dataclass with the column values, statuses as
enums and JSON columns as Python values. Writes still take plain rows
(``WriteBatch``), built by the engine, which owns the values it writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.model.result import RunResult
from core.model.states import CallStatus, RunStatus, StepStatus


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def plan_data(text: str | None) -> Any:
    """A stored plan's text decoded; None where it is not JSON (a damaged database: a read never fails on it,
    a driver refuses it, ``core.model.plan.stored_plan``)."""
    try:
        return _json(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Lease:
    """Who drives a run: an owner token, where it runs, until when (wall clock) unless renewed."""

    owner: str
    host: str | None
    pid: int | None
    until: float | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    goal: str
    status: RunStatus
    reason: str | None
    token_budget: int | None
    prompt_tokens: int
    completion_tokens: int
    created_by: str | None
    created_at: float
    updated_at: float
    ended_at: float | None
    lease: Lease | None
    proposal: dict[str, Any] | None  # a replan an agent proposed, waiting for the operator
    plan: dict[str, Any] | None  # the stored plan (JSON); None when read without it
    hold: str | None = None  # why a live run launches nothing until an operator acts ("budget"), if it does
    result: RunResult | None = None  # once it ended (None for a run that ended before loopdeck recorded results)
    cost_usd: float | None = None  # dollars its priced spending cost (None: recorded before costs were)
    cost_budget_usd: float | None = None  # dollars it may spend (None: no limit)
    deadline: float | None = None  # when the review of its plan times out, while it waits
    profile: dict[str, Any] | None = None  # the harness profile it was created with (core.model.layers)
    parent: str | None = None  # the run whose sub_agent step this child run runs for (None: a top-level run)
    parent_step: str | None = None  # ... and that step's key

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRecord:
        lease = (
            Lease(row["lock_owner"], row["lock_host"], row["lock_pid"], row["locked_until"])
            if row["lock_owner"]
            else None
        )
        return cls(
            id=row["id"],
            goal=row["goal"],
            status=RunStatus(row["status"]),
            reason=row["reason"],
            token_budget=row["token_budget"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            ended_at=row["ended_at"],
            lease=lease,
            proposal=_json(row["proposal_json"]),
            plan=plan_data(row.get("plan_json")),
            hold=row.get("hold"),
            result=_result(row.get("result_json")),
            cost_usd=row.get("cost_usd"),
            cost_budget_usd=row.get("cost_budget_usd"),
            deadline=row.get("deadline"),
            profile=_json(row.get("profile_json")),
            parent=row.get("parent_run_id"),
            parent_step=row.get("parent_step"),
        )


@dataclass(frozen=True, slots=True)
class PlanOutline:
    """What a step's context needs of its run's plan: the policy, and each step's dependencies in plan
    order. A few megabytes less than the plan, and none of its tens of thousands of dicts and lists for
    the collector to walk: the store keeps it between reads (``Store.plan_outline``)."""

    policy: dict[str, Any]
    depends_on: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, plan: Any) -> PlanOutline:
        """The outline of a stored plan. A read never fails on it: what a damaged or hand-edited plan does not
        say right is left out (the driver refuses such a plan, saying what to do: ``RunController.load``)."""
        steps = plan.get("steps") if isinstance(plan, dict) else None
        depends_on: dict[str, tuple[str, ...]] = {}
        for step in steps if isinstance(steps, list) else ():
            if isinstance(step, dict) and isinstance(step.get("key"), str):
                deps = step.get("depends_on")
                depends_on[step["key"]] = tuple(d for d in deps if isinstance(d, str)) if isinstance(deps, list) else ()
        return cls(stored_policy(plan), depends_on)


def stored_policy(plan: Any) -> dict[str, Any]:
    """A stored plan's policy as written; ``{}`` where a damaged plan has none (a read never fails on it)."""
    policy = plan.get("policy") if isinstance(plan, dict) else None
    return policy if isinstance(policy, dict) else {}


@dataclass(frozen=True, slots=True)
class StepRecord:
    run_id: str
    key: str
    idx: int
    title: str
    type: str
    agent: str
    status: StepStatus
    attempts: int
    input: Any
    output: Any
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    not_before: float | None
    approved_by: str | None
    started_at: float | None
    ended_at: float | None
    cost_usd: float | None = 0.0  # dollars; None: it spent tokens whose price is not known
    deadline: float | None = None  # when its approval gate times out, while it waits

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_values(cls, v: Sequence[Any]) -> StepRecord:
        """From a row of ``STEP_COLUMNS``, by position: a 10,000-step read spent as long in a row mapping's
        lookups by name as in the rest of its decoding (the dashboard, ``show`` and a driver read every step)."""
        return cls(
            v[0], v[1], v[2], v[3], v[4], v[5], _STEP_STATUS.get(v[6]) or StepStatus(v[6]), v[7],
            _json(v[8]), _json(v[9]), v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17], v[18],
        )  # fmt: skip


STEP_COLUMNS = (  # the steps table's columns in ``StepRecord``'s field order (``input_json``: ``input``, ...)
    "run_id", "key", "idx", "title", "type", "agent", "status", "attempts", "input_json", "output_json", "error",
    "prompt_tokens", "completion_tokens", "not_before", "approved_by", "started_at", "ended_at", "cost_usd",
    "deadline",
)  # fmt: skip
_STEP_STATUS = {status.value: status for status in StepStatus}


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call an agent asked for, as the store has it (``model.tools`` has its state machine)."""

    run_id: str
    id: str
    step_key: str
    attempt: int
    turn: int
    idx: int
    tool: str
    server: str | None
    model_call_id: str | None
    text: str | None
    arguments: Any
    status: CallStatus
    result: Any
    error: str | None
    decided_by: str | None
    rule: str | None
    reason: str | None
    created_at: float
    updated_at: float
    deadline: float | None = None  # when its approval times out, while it waits

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ToolCallRecord:
        return cls(
            row["run_id"],
            row["id"],
            row["step_key"],
            row["attempt"],
            row["turn"],
            row["idx"],
            row["tool"],
            row["server"],
            row["model_call_id"],
            row["text"],
            _json(row["arguments_json"]),
            CallStatus(row["status"]),
            _json(row["result_json"]),
            row["error"],
            row["decided_by"],
            row["rule"],
            row["reason"],
            row["created_at"],
            row["updated_at"],
            row["deadline"],
        )


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One attempt of a step (``kind`` attempt), or a chat turn or tool call inside one: when, on which agent,
    how it ended, what it spent."""

    run_id: str
    step_key: str
    attempt: int
    agent: str
    status: str
    started_at: float
    ended_at: float
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    kind: str = "attempt"  # attempt | chat | tool
    name: str | None = None  # chat: the model asked; tool: the tool
    turn: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> SpanRecord:
        return cls(
            row["run_id"],
            row["step_key"],
            row["attempt"],
            row["agent"],
            row["status"],
            row["started_at"],
            row["ended_at"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["error"],
            row["kind"],
            row["name"],
            row["turn"],
            json.loads(row["attributes_json"]) if row["attributes_json"] else {},
            row["cost_usd"],
        )


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    run_id: str
    step_key: str
    agent: str
    rating: str
    comment: str | None
    category: str | None
    created_by: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> FeedbackRecord:
        return cls(
            row["run_id"],
            row["step_key"],
            row["agent"],
            row["rating"],
            row["comment"],
            row["category"],
            row["created_by"],
            row["created_at"],
        )


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """An action queued for the process that drives a run, and its answer once it has one."""

    id: int
    run_id: str
    kind: str
    payload: dict[str, Any]
    created_by: str | None
    created_at: float
    state: str  # queued, applied, refused
    result: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> CommandRecord:
        try:
            payload = json.loads(row["payload_json"] or "{}")
        except ValueError:
            payload = {"malformed": row["payload_json"]}  # refused when applied, never a crash here
        return cls(
            row["id"],
            row["run_id"],
            row["kind"],
            payload if isinstance(payload, dict) else {},
            row["created_by"],
            row["created_at"],
            row["state"],
            row["result"],
        )


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    owner: str
    name: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    runs_claimed: int

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WorkerRecord:
        return cls(
            row["owner"],
            row["name"],
            row["host"],
            row["pid"],
            row["started_at"],
            row["heartbeat_at"],
            row["stopped_at"],
            row["runs_claimed"],
        )


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A breaker's state as a process saved it, for the others to adopt."""

    target: str
    state: str
    failures: int
    opened_at: float | None
    updated_at: float

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> BreakerRecord:
        return cls(row["target"], row["state"], row["failures"], row["opened_at"], row["updated_at"])


def _result(text: str | None) -> RunResult | None:
    data = _json(text)
    return RunResult.from_json(data) if isinstance(data, dict) else None
