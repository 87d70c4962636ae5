"""Replanning a live run: append steps, or replace the steps that have not started.

The changed plan is validated exactly like a new one (keys, dependencies,
cycles through the existing steps, references, agents), and problems in the
new steps are reported at their place in the replan (``replan.steps[1]...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import PlanError, PlanIssue, TransitionError
from core.model.plan import Plan, StepSpec, validate_plan

Mode = Literal["append", "replace_pending"]
MODES = ("append", "replace_pending")
_STEP_LOC = re.compile(r"^steps\[(\d+)\]")


@dataclass(frozen=True)
class PlanChange:
    plan: Plan  # the whole new plan
    added: list[StepSpec]
    removed: list[str]


def prepare_replan(plan: Plan, run_id: str, statuses: dict[str, tuple[str, int]], steps: Any, mode: str) -> PlanChange:
    """Validate a replan against the current plan and step states ``{key: (status, attempts)}``."""
    if mode not in MODES:
        raise PlanError([PlanIssue("mode", f"unknown mode {mode!r}; use append or replace_pending")])
    if not plan.policy.allow_replan:
        raise TransitionError(f"run {run_id} has allow_replan: false; its plan cannot change")
    if isinstance(steps, dict) and "steps" in steps:
        steps = steps["steps"]
    if not isinstance(steps, list) or not steps:
        raise PlanError([PlanIssue("replan", "give a non-empty list of steps (or a mapping with `steps:`)")])
    removed = [
        key
        for key, (status, attempts) in statuses.items()
        if mode == "replace_pending" and status == "pending" and attempts == 0
    ]
    data = plan.model_dump(mode="json")
    kept = [spec for spec in data["steps"] if spec["key"] not in removed]
    data["steps"] = kept + steps
    try:
        new_plan = validate_plan(data, source=f"replan of run {run_id}", vouch=False)
    except PlanError as exc:
        raise PlanError([_relocate(issue, len(kept)) for issue in exc.issues], exc.source) from None
    added = new_plan.steps[len(kept) :]
    return PlanChange(new_plan, list(added), removed)


def _relocate(issue: PlanIssue, offset: int) -> PlanIssue:
    """``steps[7]`` of the combined plan is ``replan.steps[2]`` when 5 steps were kept."""
    m = _STEP_LOC.match(issue.location)
    if m and int(m.group(1)) >= offset:
        return PlanIssue(f"replan.steps[{int(m.group(1)) - offset}]" + issue.location[m.end() :], issue.message)
    return issue


# what a child plan an agent proposes may not bring: its children run on the run's agents, tools and rules
_OPERATORS_ONLY = ("agents", "mcp_servers", "skills", "approval_rules", "default_agent")
_LOOSENING = ("default_tool_approval", "allow_replan", "plan_approval")


def agent_child_issues(steps: Any) -> list[PlanIssue]:
    """Refusals for the child plans of sub_agent steps an *agent* proposes: none may declare agents, MCP
    servers, skills or approval rules, or change how tool calls and plans are approved (an agent's replan
    could otherwise give itself a shell). An operator's replan may."""
    issues = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict) or step.get("type") != "sub_agent":
            continue
        given = step.get("plan")
        plan: dict[str, Any] = given if isinstance(given, dict) else step
        if isinstance(given, str):
            issues.append(PlanIssue(f"replan.steps[{i}].plan", "an agent's child plan is given inline, not as a file"))
            continue
        for key in _OPERATORS_ONLY:
            if key in plan:
                issues.append(
                    PlanIssue(f"replan.steps[{i}].{key}", f"an agent may not give its child plan {key} of its own")
                )
        written = plan.get("policy")
        policy: dict[str, Any] = written if isinstance(written, dict) else {}
        for key in _LOOSENING:
            if key in policy:
                issues.append(PlanIssue(f"replan.steps[{i}].policy.{key}", "an agent may not change it for a child"))
    return issues
