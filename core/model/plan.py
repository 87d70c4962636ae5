"""Plan files: the pydantic models, loading from YAML/JSON, and whole-plan validation.

Validation reports every problem at once, each with its location, because an
operator fixing a plan should not have to run it once per typo. Field errors
come from pydantic; graph errors (duplicate keys, unknown dependencies or
agents, cycles) are checked on the raw data too, so both kinds show together.
"""

from __future__ import annotations

import json
import re
import weakref
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from core.errors import PlanError, PlanIssue
from core.limits import (
    MAX_AGENTS,
    MAX_ATTEMPT_TOKENS,
    MAX_ATTEMPTS,
    MAX_SECONDS,
    MAX_STEPS,
    MAX_TEXT,
)
from core.model.agents import (  # re-exported: a plan's agents are part of the plan's vocabulary
    CALL_PATTERN,
    AgentConfig,
    BreakerConfig,
    LlmAgent,
    PythonAgent,
    ScriptedCall,
    ShellAgent,
    SimAgent,
    offers,
)
from core.model.dag import ancestors, find_cycle
from core.model.policy import Policy
from core.model.policy import StrictModel as _Model
from core.model.profile import NAME_PATTERN, Profile
from core.model.refs import find_refs
from core.model.tools import ApprovalRule, McpServer, OnTimeout
from core.values import ValueProblem, check_document, parse_document, read_document

__all__ = [
    "AgentConfig",
    "BreakerConfig",
    "LlmAgent",
    "Plan",
    "PythonAgent",
    "ScriptedCall",
    "ShellAgent",
    "SimAgent",
    "StepSpec",
    "child_plan_data",
    "load_plan",
    "offers",
    "parse_plan_data",
    "parse_plan_text",
    "plan_json_schema",
    "read_plan_data",
    "readable",
    "validate_plan",
]

StepType = Literal["reasoning", "skill", "tool", "sub_agent", "verification"]
_CALL = re.compile(CALL_PATTERN)
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"


Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
AttemptTokens = Annotated[int, Field(ge=0, le=MAX_ATTEMPT_TOKENS)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Millis = Annotated[float, Field(ge=0, le=MAX_SECONDS * 1000)]


class StepSpec(_Model):
    key: str = Field(pattern=KEY_PATTERN)
    title: Text | None = None
    type: StepType = "reasoning"
    agent: str | None = None
    input: Any = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    dependency_policy: Literal["all_succeeded", "allow_skipped"] = "all_succeeded"
    approval: Literal["required", "auto"] = "auto"
    approval_timeout_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, description="seconds an operator has to answer its gate (default: the policy's)"
    )
    on_approval_timeout: OnTimeout | None = Field(None, description="reject | approve | fail; default: the policy's")
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS)
    timeout_s: float | None = Field(None, gt=0, le=MAX_SECONDS)
    skill: str | None = Field(
        None, description="for type: skill, the registered skill to call (without it the step runs on its agent)"
    )
    input_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema of the input: an input edited at the approval gate must match it"
    )
    plan: dict[str, Any] | str | None = Field(
        None,
        description="type sub_agent: the child plan its run runs (a plan file, read when the plan is resolved, "
        "or the plan itself); inline `steps:` (with optional `agents:`, `policy:`) on the step say the same",
    )

    @model_validator(mode="before")
    @classmethod
    def _inline_child_plan(cls, data: Any) -> Any:
        """``steps:`` (and ``agents:``, ``policy:``) written on a sub_agent step are its child plan."""
        if isinstance(data, dict) and data.get("type") == "sub_agent" and "steps" in data and "plan" not in data:
            data = dict(data)
            data["plan"] = {k: data.pop(k) for k in ("goal", "steps", "agents", "policy") if k in data}
        return data

    @field_validator("input_schema")
    @classmethod
    def _a_valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            import jsonschema  # here: only plans that declare a schema pay for its import

            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return schema

    @property
    def display_title(self) -> str:
        return self.title or self.key

    @property
    def runs_child(self) -> bool:
        """A sub_agent step with a plan: its attempt is a child run."""
        return self.type == "sub_agent" and self.plan is not None


def _default_agents() -> dict[str, AgentConfig]:
    """A plan that names no agents runs on one simulated agent."""
    return {"sim": SimAgent()}


class Plan(_Model):
    goal: Text = ""
    default_agent: str | None = Field(None, description="agent for steps that name none")
    policy: Policy = Field(default_factory=Policy)
    agents: dict[str, AgentConfig] = Field(default_factory=_default_agents, max_length=MAX_AGENTS)
    skills: dict[str, str] = Field(default_factory=dict, description="skill name -> module:function")
    mcp_servers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")], McpServer] = Field(
        default_factory=dict, max_length=100, description="name -> MCP server; its tools are named NAME:TOOL"
    )
    approval_rules: list[ApprovalRule] = Field(
        default_factory=list, max_length=1000, description="gate tool calls (and steps); the first match wins"
    )
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)
    profiles: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Profile] = Field(
        default_factory=dict, max_length=1000, description="harness profiles (`--profile NAME`) this plan offers"
    )

    @model_validator(mode="after")
    def _step_rules_ask_or_allow(self) -> Plan:
        for i, rule in enumerate(self.approval_rules):
            if rule.target == "steps" and rule.action == "deny":
                raise ValueError(
                    f"approval_rules[{i}] is about steps (it names no tool, server, hint or argument) and denies: "
                    "a step rule asks or allows (to stop a step, leave it out); deny is for tool calls"
                )
        return self

    def agent_of(self, step: StepSpec) -> str:
        """The agent a step runs on: its own, the plan's default, or the only agent there is."""
        if step.agent:
            return step.agent
        if self.default_agent:
            return self.default_agent
        return next(iter(self.agents))


_INHERITED = ("agents", "default_agent", "skills", "mcp_servers", "approval_rules")
# not inherited: the parent's remaining budget is the child's (set when it starts); its plan was reviewed with its
# parent's (a plan_approval of its own is the child plan's to say)
_NOT_INHERITED = ("token_budget", "cost_budget_usd", "plan_approval")


def child_plan_data(parent: Plan, spec: StepSpec) -> dict[str, Any]:
    """A sub_agent step's child plan, ready to validate: what it does not say, it takes from its parent (the
    agents, skills, MCP servers and approval rules when it names no agents; the policy field by field)."""
    own = spec.plan if isinstance(spec.plan, dict) else {}
    data: dict[str, Any] = {"goal": own.get("goal") or spec.display_title, "steps": own.get("steps")}
    written = parent.model_dump(mode="json", exclude_unset=True)
    if "agents" in own:
        data.update({k: own[k] for k in _INHERITED if k in own})
        # the parent's approval rules still hold (after the child's own): a child never loosens its parent's gates
        data["approval_rules"] = [*own.get("approval_rules", []), *written.get("approval_rules", [])]
    else:
        data.update({k: written[k] for k in _INHERITED if k in written})
    policy = {k: v for k, v in written.get("policy", {}).items() if k not in _NOT_INHERITED}
    data["policy"] = {**policy, **(own.get("policy") or {})}
    extra = set(own) - {"goal", "steps", "policy", *_INHERITED}
    if extra:
        data.update({k: own[k] for k in extra})  # refused by the plan's validation, with its place
    return data


def readable(plan: Plan) -> dict[str, Any]:
    """The plan as a person writes it: only what differs from the defaults (each agent keeps its kind)."""
    data = plan.model_dump(mode="json", exclude_defaults=True)
    for name, cfg in plan.agents.items():
        data.setdefault("agents", {}).setdefault(name, {})["kind"] = cfg.kind
    return data


def plan_json_schema() -> dict[str, Any]:
    """JSON Schema of plan files, for editors (``loopdeck schema``)."""
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "loopdeck plan"
    return schema


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (YAML or JSON). Raises ``PlanError``."""
    return validate_plan(read_plan_data(path), str(path))


def parse_plan_text(text: str, source: str | None = None, json_only: bool = False) -> Plan:
    """Parse YAML (or strict JSON) text and validate it as a plan."""
    return validate_plan(parse_plan_data(text, source, json_only), source)


def read_plan_data(path: str | Path) -> Any:
    """A plan file's data, not yet validated (the configuration's layers go under it first); ``PlanError``
    when it is no document loopdeck reads."""
    try:
        return read_document(path)
    except ValueProblem as exc:
        raise PlanError([PlanIssue(exc.location, exc.message)], str(path)) from None


def parse_plan_data(text: str, source: str | None = None, json_only: bool = False) -> Any:
    """Plan text's data, not yet validated; ``PlanError`` when it is no document loopdeck reads."""
    try:
        return parse_document(text, json_only)
    except ValueProblem as exc:
        raise PlanError([PlanIssue(exc.location, exc.message)], source) from None


def validate_plan(data: Any, source: str | None = None, *, vouch: bool = True) -> Plan:
    """Validate plan data; raise ``PlanError`` listing every problem, or return the plan.

    The data is checked first as a document (depth, size, finite numbers, valid
    text): a document that fails that check is refused before any other walk.
    ``vouch``: keep the plan's JSON (one encode, ~6 ms at 10,000 steps) to vouch for the plan while it is
    unchanged (``vouched``), as a driver in this process asks of a plan given to ``create_run``; off where
    the plan never is (a stored plan read back, a replan).
    """
    plan = _validated(data, source)
    if not vouch:
        return plan
    key = id(plan)
    _VOUCHED[key] = (weakref.ref(plan, lambda _: _VOUCHED.pop(key, None)), plan.model_dump_json())
    return plan


def stored_plan(run_id: str, text: str) -> Plan:
    """A run's plan as the store has it (its JSON text), decoded and validated, not vouched for. One this
    loopdeck refuses (written by another version, or damaged) is a ``PlanError`` that says how to end it."""
    hint = (
        "this loopdeck refuses the run's stored plan (another version's, or damaged): "
        f"`loopdeck cancel {run_id}` ends the run"
    )
    try:
        data = json.loads(text)
    except ValueError as exc:  # (nothing loopdeck writes: a damaged database)
        raise PlanError([PlanIssue("", f"not JSON: {exc}")], f"run {run_id}", hint) from None
    try:
        return validate_plan(data, source=f"run {run_id}", vouch=False)
    except PlanError as exc:
        raise PlanError(exc.issues, f"run {run_id}", hint) from None


_VOUCHED: dict[int, tuple[weakref.ref[Plan], str]] = {}  # id → (the plan, its JSON when validated)


def vouched(plan: Plan, text: str) -> bool:
    """Whether ``validate_plan`` returned ``plan`` and ``text`` is its JSON, unchanged since (a pydantic model
    can be changed in place, out of any check). A driver in the same process takes such a plan as it is
    rather than validate its stored text again (``core.engine.known_plans``)."""
    known = _VOUCHED.get(id(plan))
    return known is not None and known[0]() is plan and known[1] == text


def _validated(data: Any, source: str | None) -> Plan:
    if not isinstance(data, dict):
        raise PlanError(
            [PlanIssue("", f"a plan is a mapping with goal, agents and steps, not {type(data).__name__}")], source
        )
    try:
        check_document(data)
    except ValueProblem as exc:
        raise PlanError([PlanIssue(exc.location, exc.message)], source) from None
    issues: list[PlanIssue] = []
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc))
    issues.extend(_graph_issues(data))
    issues.extend(_tool_issues(data))
    if plan is not None:
        issues.extend(_child_issues(plan))
    if issues:
        raise PlanError(_dedupe(issues), source)
    assert plan is not None
    return plan


def _child_issues(plan: Plan) -> list[PlanIssue]:
    """Each sub_agent step's child plan, validated as a plan of its own, its problems at ``steps[i].plan``."""
    issues = []
    for i, spec in enumerate(plan.steps):
        if not spec.runs_child:
            continue
        if spec.input not in ({}, None):
            issues.append(
                PlanIssue(
                    f"steps[{i}].input",
                    "a sub_agent step with a plan hands nothing to its child run: give the input to the child's "
                    "steps (its final output is this step's output)",
                )
            )
        if isinstance(spec.plan, str):
            issues.append(
                PlanIssue(
                    f"steps[{i}].plan",
                    f"the child plan file {spec.plan!r} is read when the plan is resolved (the CLI, or "
                    "core.resolve_plan with the plan's file as its source); here, give the plan itself",
                )
            )
            continue
        try:
            _validated(child_plan_data(plan, spec), None)
        except PlanError as exc:
            issues.extend(
                PlanIssue(f"steps[{i}].plan." + e.location if e.location else f"steps[{i}].plan", e.message)
                for e in exc.issues
            )
    return issues


def _pydantic_issues(exc: ValidationError) -> list[PlanIssue]:
    out = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "int_parsing_size":
            message = "the number is too large for this field"
        out.append(PlanIssue(_location(err["loc"]), message))
    return out


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("sim", "shell", "python", "llm") and text.startswith("agents."):
            continue  # the discriminator tag pydantic adds; the agent name says enough
        else:
            text += f".{part}" if text else str(part)
    return text


def _tool_issues(data: dict[str, Any]) -> list[PlanIssue]:
    """A ``SERVER:TOOL`` name needs its server declared in ``mcp_servers``."""
    agents, servers = data.get("agents"), data.get("mcp_servers")
    known = list(servers) if isinstance(servers, dict) else []
    issues: list[PlanIssue] = []
    for name, cfg in (agents or {}).items() if isinstance(agents, dict) else ():
        tools = cfg.get("tools") if isinstance(cfg, dict) else None
        for j, tool in enumerate(tools if isinstance(tools, list) else []):
            if isinstance(tool, str) and ":" in tool and tool.split(":", 1)[0] not in known:
                issues.append(PlanIssue(f"agents.{name}.tools[{j}]", _unknown("MCP server", tool.split(":")[0], known)))
    return issues


def _graph_issues(data: dict[str, Any]) -> list[PlanIssue]:
    """Duplicate keys, unknown dependencies and agents, cycles: checked on raw data."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return []
    raw_agents = data.get("agents")
    agents = list(raw_agents) if isinstance(raw_agents, dict) else (["sim"] if raw_agents is None else [])
    issues: list[PlanIssue] = []
    first_at: dict[str, int] = {}
    for i, step in enumerate(steps):
        if isinstance(step, dict) and isinstance(step.get("key"), str):
            key = step["key"]
            if key in first_at:
                issues.append(
                    PlanIssue(f"steps[{i}].key", f'duplicate key "{key}" (first used at steps[{first_at[key]}])')
                )
            else:
                first_at[key] = i
    keys = list(first_at)
    default_agent = data.get("default_agent")
    if isinstance(default_agent, str) and default_agent not in agents:
        issues.append(PlanIssue("default_agent", _unknown("agent", default_agent, agents)))
    if isinstance(raw_agents, dict):
        for name, cfg in raw_agents.items():
            alts = cfg.get("alternatives") if isinstance(cfg, dict) else None
            for j, alt in enumerate(alts if isinstance(alts, list) else []):
                if isinstance(alt, str) and alt not in agents:
                    issues.append(PlanIssue(f"agents.{name}.alternatives[{j}]", _unknown("agent", alt, agents)))
                elif alt == name:
                    issues.append(
                        PlanIssue(f"agents.{name}.alternatives[{j}]", "an agent cannot be its own alternative")
                    )
    if isinstance(raw_agents, dict) and not raw_agents:
        issues.append(PlanIssue("agents", "the plan defines no agents; add at least one (e.g. `sim: {kind: sim}`)"))
    edges: dict[str, list[str]] = {}
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        agent = step.get("agent")
        if isinstance(agent, str) and agents and agent not in agents:
            issues.append(PlanIssue(f"steps[{i}].agent", _unknown("agent", agent, agents)))
        child = step.get("type") == "sub_agent" and ("plan" in step or "steps" in step)
        if agent is None and default_agent is None and len(agents) > 1 and not child:
            issues.append(
                PlanIssue(
                    f"steps[{i}].agent", f"no agent named and no default_agent; choose one of {', '.join(agents)}"
                )
            )
        deps = step.get("depends_on")
        key = step.get("key")
        if not isinstance(deps, list):
            continue
        for k, dep in enumerate(deps):
            if isinstance(dep, str) and dep not in first_at:
                issues.append(PlanIssue(f"steps[{i}].depends_on[{k}]", _unknown("step", dep, keys)))
        if isinstance(key, str) and first_at.get(key) == i:
            edges[key] = [d for d in deps if isinstance(d, str) and d in first_at]
    issues.extend(_reference_issues(steps, first_at, edges))
    issues.extend(_skill_issues(steps, data.get("skills")))
    cycle = find_cycle(edges)
    if cycle:
        where = f"steps[{first_at[cycle[0]]}].depends_on"
        issues.append(PlanIssue(where, "dependency cycle: " + " -> ".join(cycle)))
    return issues


def _reference_issues(steps: list[Any], first_at: dict[str, int], edges: dict[str, list[str]]) -> list[PlanIssue]:
    """``{{steps.KEY.output}}`` must name a step upstream of the one whose input holds it."""
    issues = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("key"), str):
            continue
        refs = list(find_refs(step.get("input")))
        if not refs:
            continue
        upstream = ancestors(edges, step["key"])
        for ref in refs:
            if ref.key not in first_at:
                issues.append(
                    PlanIssue(
                        f"steps[{i}].input", f"{ref.text} references an " + _unknown("step", ref.key, list(first_at))
                    )
                )
            elif ref.key not in upstream:
                issues.append(
                    PlanIssue(
                        f"steps[{i}].input",
                        f'{ref.text} references step "{ref.key}", which is not upstream '
                        f'of "{step["key"]}"; add it to depends_on',
                    )
                )
    return issues


def _skill_issues(steps: list[Any], plan_skills: Any) -> list[PlanIssue]:
    """A skill step's ``skill`` is one the plan maps or an installed package registers; other steps name none."""
    from core.model.skills import available_skills

    declared = plan_skills if isinstance(plan_skills, dict) else {}
    issues = []
    for name, target in declared.items():
        if not isinstance(target, str) or not _CALL.match(target):
            issues.append(PlanIssue(f"skills.{name}", f"a skill is module:function, not {target!r}"))
    known: list[str] | None = None
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        skill = step.get("skill")
        if skill is None:
            continue  # a skill step without a skill runs on its agent, like any step
        if step.get("type") == "skill":
            if isinstance(skill, str) and skill not in declared:
                known = known if known is not None else sorted({*declared, *available_skills({})})
                if skill not in known:
                    issues.append(
                        PlanIssue(
                            f"steps[{i}].skill",
                            _unknown("skill", skill, known)
                            + "; map it under skills: or install the package that provides it",
                        )
                    )
        else:
            issues.append(
                PlanIssue(
                    f"steps[{i}].skill",
                    f"only a step of type skill calls a skill (this one is {step.get('type', 'reasoning')})",
                )
            )
    return issues


def _unknown(what: str, name: str, known: list[str]) -> str:
    close = get_close_matches(name, known, n=1)
    if close:
        return f'unknown {what} "{name}"; did you mean "{close[0]}"?'
    listing = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
    return f'unknown {what} "{name}"' + (f" (known: {listing})" if listing else "")


def _dedupe(issues: list[PlanIssue]) -> list[PlanIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        if (issue.location, issue.message) not in seen:
            seen.add((issue.location, issue.message))
            out.append(issue)
    return out
