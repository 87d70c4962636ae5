"""Plan files: the pydantic models, loading from YAML/JSON, and whole-plan validation.

Validation reports every problem at once, each with its location, because an
operator fixing a plan should not have to run it once per typo. Field errors
come from pydantic; graph errors (duplicate keys, unknown dependencies or
agents, cycles) are checked on the raw data too, so both kinds show together.
"""

from __future__ import annotations

import hashlib
import re
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from core.errors import PlanError, PlanIssue
from core.limits import (
    MAX_AGENTS,
    MAX_ATTEMPT_TOKENS,
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    MAX_INT,
    MAX_SECONDS,
    MAX_STEPS,
    MAX_TEXT,
    MAX_THRESHOLD,
)
from core.model.dag import ancestors, find_cycle
from core.model.policy import Policy
from core.model.policy import StrictModel as _Model
from core.model.pricing import Price
from core.model.profile import NAME_PATTERN, Profile
from core.model.refs import find_refs
from core.model.tools import ApprovalRule, McpServer, OnTimeout
from core.values import ValueProblem, check_document, parse_document, read_document

StepType = Literal["reasoning", "skill", "tool", "sub_agent", "verification"]
_CALL_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
_CALL = re.compile(_CALL_PATTERN)
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"
TOOL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}(:([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}|\*))?$"  # SKILL, SERVER:TOOL
MAX_TURNS = 100
ToolName = Annotated[str, Field(pattern=TOOL_PATTERN)]


Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
AttemptTokens = Annotated[int, Field(ge=0, le=MAX_ATTEMPT_TOKENS)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Millis = Annotated[float, Field(ge=0, le=MAX_SECONDS * 1000)]


class BreakerConfig(_Model):
    failure_threshold: int = Field(5, ge=1, le=MAX_THRESHOLD, description="consecutive failures that open the breaker")
    cooldown_s: float = Field(60.0, ge=0, le=MAX_SECONDS, description="seconds open before one probe is let through")


class _AgentBase(_Model):
    max_concurrency: int | None = Field(
        None, ge=1, le=MAX_CONCURRENCY, description="steps of this agent running at once"
    )
    alternatives: list[str] = Field(
        default_factory=list, max_length=MAX_AGENTS, description="agents to route to when this one's breaker is open"
    )
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    reserve_tokens: AttemptTokens = Field(
        0, description="tokens reserved against the budget before each attempt and each further model turn"
    )
    price: Price | None = Field(
        None, description="dollars per million tokens (wins over genai-prices' data; for self-hosted models)"
    )

    def token_estimate(self) -> int:
        """Tokens an attempt may spend, reserved against the run's budget before it starts."""
        return self.reserve_tokens

    def breaker_target(self, name: str) -> str:
        """What the agent ``name`` calls, as its circuit breaker knows it: agents calling one target share it.

        ``llm`` and ``python`` agents name their target (endpoint and model,
        callable). The others (simulated agents, command runners) are told apart
        by kind, name and a digest of what they do, but not by their limits or
        breaker settings: the same name in another plan with another setup is
        another target.
        """
        what = self.model_dump_json(exclude={"max_concurrency", "alternatives", "breaker", "reserve_tokens", "price"})
        return f"{self.kind} {name} #{hashlib.sha256(what.encode()).hexdigest()[:12]}"  # type: ignore[attr-defined]


class ScriptedCall(_Model):
    """A tool call a sim agent makes before it answers."""

    tool: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)


class _ToolUser(_Model):
    """An agent that may call tools (``llm``, and ``sim`` by script)."""

    tools: list[ToolName] = Field(default_factory=list, description="SKILL, SERVER:TOOL or SERVER:*")
    max_turns: int = Field(10, ge=1, le=MAX_TURNS, description="model turns in one attempt's tool loop")


class SimAgent(_AgentBase, _ToolUser):
    """A seeded simulated agent: latency, tokens and failures, deterministic per (seed, step, attempt)."""

    kind: Literal["sim"] = "sim"
    latency_ms: Millis | tuple[Millis, Millis] = Field(100, description="a number or [min, max]")
    tokens: tuple[AttemptTokens, AttemptTokens] = Field(
        (0, 0), description="[prompt, completion] per attempt (per model turn, with tool_calls)"
    )
    fail_times: int = Field(0, ge=0, le=MAX_ATTEMPTS, description="fail the first N attempts of each step")
    fail_rate: float = Field(0.0, ge=0, le=1)
    output: Any = Field(None, description="output to return; default: a short text with the resolved input")
    seed: int = Field(0, ge=-MAX_INT, le=MAX_INT)
    tool_calls: list[ScriptedCall | list[ScriptedCall]] = Field(
        default_factory=list, description="tool calls before the answer; a list is one turn of parallel calls"
    )

    @model_validator(mode="after")
    def _latency_range(self) -> SimAgent:
        low, high = self.latency_bounds()
        if low < 0 or high < low:
            raise ValueError("latency_ms must be >= 0, or [min, max] with 0 <= min <= max")
        for turn in self.script():
            for call in turn:
                if not offers(self.tools, call.tool):
                    raise ValueError(f"tool_calls names {call.tool!r}, which is not in this agent's tools")
        if len(self.script()) >= self.max_turns:
            raise ValueError(
                f"tool_calls has {len(self.script())} turns; max_turns ({self.max_turns}) leaves no turn to answer"
            )
        return self

    def script(self) -> list[list[ScriptedCall]]:
        """The scripted calls, one list per turn."""
        return [turn if isinstance(turn, list) else [turn] for turn in self.tool_calls]

    def token_estimate(self) -> int:
        return max(self.reserve_tokens, sum(self.tokens))

    def latency_bounds(self) -> tuple[float, float]:
        if isinstance(self.latency_ms, tuple):
            return self.latency_ms
        return (self.latency_ms, self.latency_ms)


class ShellAgent(_AgentBase):
    """Runs the step input's ``argv`` as a subprocess; no shell unless ``shell: true``."""

    kind: Literal["shell"]
    shell: bool = False
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0, le=MAX_SECONDS)


class PythonAgent(_AgentBase):
    """Calls ``module:function`` (sync or async) with input, context and step."""

    kind: Literal["python"]
    call: str = Field(pattern=_CALL_PATTERN, description="module:function")

    def breaker_target(self, name: str) -> str:
        return f"python {self.call}"


class LlmAgent(_AgentBase, _ToolUser):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LM Studio, llama.cpp server)."""

    kind: Literal["llm"]
    base_url: str = Field(
        pattern=r"^https?://\S+$", description="e.g. http://localhost:11434/v1 (…/chat/completions is added)"
    )
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable holding the API key (the key itself is never stored)",
    )
    system: str | None = Field(None, description="system prompt")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=MAX_ATTEMPT_TOKENS)
    timeout_s: float = Field(120.0, gt=0, le=MAX_SECONDS, description="seconds to wait for an answer")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers (not the key)")
    stream: bool = Field(False, description="stream the answer; partial output appears live in the dashboard")
    json_output: bool = Field(False, description="ask for a JSON object and use the parsed object as the output")
    structured_output: bool = Field(
        True, description="send JSON schemas (plans, verdicts) as response_format json_schema; false: json_object"
    )

    @field_validator("headers")
    @classmethod
    def _no_key_in_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in ("authorization", "api-key", "x-api-key"):
                raise ValueError(
                    f"header {name!r} would store a secret in the plan; "
                    "put the key in an environment variable and name it in api_key_env"
                )
        return headers

    def token_estimate(self) -> int:
        return self.reserve_tokens

    def breaker_target(self, name: str) -> str:
        """The endpoint and model; never a credential that a URL may carry, and never longer than 200 characters."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        where = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path.rstrip('/')}"
        target = f"llm {where} {self.model}"
        if len(target) > 200:
            target = target[:180] + " #" + hashlib.sha256(target.encode()).hexdigest()[:12]
        return target


AgentConfig = Annotated[SimAgent | ShellAgent | PythonAgent | LlmAgent, Field(discriminator="kind")]


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


def offers(tools: list[str], name: str) -> bool:
    """Whether an agent's ``tools`` list offers ``name`` (``SERVER:*`` offers every tool of that server)."""
    server, colon, _ = name.partition(":")
    return name in tools or (bool(colon) and f"{server}:*" in tools)


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


def validate_plan(data: Any, source: str | None = None) -> Plan:
    """Validate plan data; raise ``PlanError`` listing every problem, or return the plan.

    The data is checked first as a document (depth, size, finite numbers, valid
    text): a document that fails that check is refused before any other walk.
    """
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
    if issues:
        raise PlanError(_dedupe(issues), source)
    assert plan is not None
    return plan


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
        if agent is None and default_agent is None and len(agents) > 1:
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
