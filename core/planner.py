"""The planner: ask an ``llm`` agent for a plan that reaches a goal, in loopdeck's own schema.

The request carries the plan's JSON Schema (as a structured-output
``response_format`` where the agent allows it) and the agents the plan may use.
The answer is validated like any plan file; when it is invalid, the problems
are sent back, each with its location, and the model repairs its plan, up to
``max_repairs`` times. The operator's base file (agents, policy, skills) always
wins over what the model wrote: the model chooses steps, not who runs them or
with what limits, nor where keys come from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from core.errors import AgentError, PlanError, PlanIssue
from core.model.plan import LlmAgent, Plan, plan_json_schema, readable, validate_plan
from core.values import ValueProblem, loads, read_document

if TYPE_CHECKING:
    from core.executors.chat import ChatClient

OPERATOR_KEYS = ("agents", "policy", "skills", "default_agent")
PLANNER_ENV = "LOOPDECK_AGENTS"  # where the agents file is, when --agents is not given
TRANSPORT_RETRIES = 3

SYSTEM = """You are the planner of loopdeck, which runs plans: DAGs of steps executed by agents.
Answer with ONE JSON object that is a loopdeck plan (JSON Schema below); no prose, no code fences.
- "goal": the goal, restated in one line.
- "steps": a list; each step has a unique "key" (letters, digits, _ . -), a "title", a "type"
  (reasoning, skill, tool, sub_agent or verification), an "agent" (one of the agents listed), an
  "input" (what the agent needs), and "depends_on" (keys of steps whose output it needs).
- Steps run as soon as their dependencies are done: keep independent work independent.
- A step may use an earlier step's output in its input as {{{{steps.KEY.output}}}}; KEY must be upstream.
- End with a verification step that checks the result when one can be checked.
Do not write "agents" or "policy": the operator provides them.

Agents you may use:
{agents}

Plan JSON Schema:
{schema}"""


@dataclass(frozen=True, slots=True)
class PlanResult:
    plan: Plan
    repairs: int  # how many times the model was asked to fix its plan
    prompt_tokens: int
    completion_tokens: int


def agents_summary(base: dict[str, Any]) -> str:
    """One line per agent, kind and what it is for (never its secrets: only the key's variable name exists)."""
    lines = []
    for name, cfg in (base.get("agents") or {}).items():
        kind = cfg.get("kind", "sim") if isinstance(cfg, dict) else "?"
        about = cfg.get("model") or cfg.get("call") or "" if isinstance(cfg, dict) else ""
        lines.append(f"- {name} (kind {kind}{', ' + str(about) if about else ''})")
    for name, target in (base.get("skills") or {}).items():
        lines.append(f"- skill {name} ({target}): use with type skill and skill: {name}")
    return "\n".join(lines) or "- (none given)"


def merge_base(proposed: Any, base: dict[str, Any], goal: str) -> Any:
    """The model's plan with the operator's agents, policy and skills laid over it."""
    if not isinstance(proposed, dict):
        return proposed
    data = {k: v for k, v in proposed.items() if k not in OPERATOR_KEYS}
    data.setdefault("goal", goal)
    for key in OPERATOR_KEYS:
        if key in base:
            data[key] = base[key]
    return data


async def plan_goal(
    goal: str,
    agent_name: str,
    agent: LlmAgent,
    base: dict[str, Any],
    *,
    max_repairs: int = 3,
    on_progress: Callable[[str], None] | None = None,
) -> PlanResult:
    """Ask ``agent`` for a plan reaching ``goal``; raise ``PlanError`` if it is still invalid after the repairs."""
    say = on_progress or (lambda _msg: None)
    # the HTTP client loads only when a plan is asked for: every other command starts ~50 ms sooner
    from core.executors.chat import ChatClient, schema_format

    client = ChatClient(agent_name, agent)
    schema = plan_json_schema()
    messages = [
        {"role": "system", "content": SYSTEM.format(agents=agents_summary(base), schema=json.dumps(schema))},
        {"role": "user", "content": f"Goal: {goal}"},
    ]
    response_format = schema_format(agent, "loopdeck_plan", schema)
    prompt = completion = 0
    try:
        for repair in range(max_repairs + 1):
            say(
                f"asking {agent_name} ({agent.model}) for a plan"
                if repair == 0
                else f"asking {agent_name} to repair its plan ({repair} of {max_repairs})"
            )
            answer = await _ask(client, messages, response_format, say)
            prompt, completion = prompt + answer.prompt_tokens, completion + answer.completion_tokens
            try:
                data = _parse(answer.text)
                plan = validate_plan(merge_base(data, base, goal), source="the proposed plan")
            except PlanError as exc:
                if repair == max_repairs:
                    raise PlanError(
                        exc.issues, f"the plan {agent_name} proposed (still invalid after {max_repairs} repairs)"
                    ) from None
                say(f"the plan has {len(exc.issues)} problem(s); sending them back")
                messages += [
                    {"role": "assistant", "content": answer.text},
                    {"role": "user", "content": _repair_request(exc)},
                ]
                continue
            return PlanResult(plan, repair, prompt, completion)
    finally:
        await client.aclose()
    raise AssertionError("unreachable")


async def _ask(
    client: ChatClient, messages: list[dict[str, str]], response_format: dict[str, Any], say: Callable[[str], None]
) -> Any:
    """One answer, trying again (a few times, honouring Retry-After) when the failure is transient."""
    for attempt in range(1, TRANSPORT_RETRIES + 1):
        try:
            return await client.complete(messages, response_format=response_format)
        except client.Error as exc:
            if not exc.retryable or attempt == TRANSPORT_RETRIES:
                raise AgentError(f'planner agent "{client.name}": {exc}') from None
            wait = min(exc.retry_after_s if exc.retry_after_s is not None else 2.0**attempt, 60.0)
            say(f"{exc}; trying again in {wait:g}s")
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def _parse(text: str) -> Any:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[4:] if body.startswith("json") else body
    try:
        return loads(body, "it")
    except ValueProblem as exc:
        raise PlanError(
            [PlanIssue("", f"the answer is not JSON loopdeck accepts ({exc}); answer with one JSON object")]
        ) from None


def _repair_request(exc: PlanError) -> str:
    problems = "\n".join(f"- {issue.location or '(plan)'}: {issue.message}" for issue in exc.issues)
    return f"That plan is not valid:\n{problems}\nAnswer with the whole corrected plan as one JSON object."


def default_agents_file() -> Path | None:
    """``$LOOPDECK_AGENTS``, else ``./agents.yaml`` if there is one."""
    from core.settings import load_settings

    env = load_settings().agents_file
    if env:
        return Path(env)
    here = Path("agents.yaml")
    return here if here.exists() else None


def load_base(path: str | Path) -> dict[str, Any]:
    """The operator's agents file: ``agents`` (required), and optionally ``policy``, ``skills``, ``default_agent``."""
    path = Path(path)
    try:
        data = read_document(path)
    except ValueProblem as exc:
        message = exc.message.replace("file not found", "agents file not found")
        raise PlanError([PlanIssue(exc.location, message)], str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("agents"), dict) or not data["agents"]:
        raise PlanError(
            [PlanIssue("agents", "an agents file maps agent names to their configs under `agents:`")], str(path)
        )
    base = {key: data[key] for key in OPERATOR_KEYS if key in data}
    # validate the operator's part on its own, so its mistakes are not blamed on the model
    probe = {**base, "steps": [{"key": "probe", "agent": next(iter(base["agents"]))}]}
    probe.pop("default_agent", None)
    try:
        validate_plan(probe, source=str(path))
    except PlanError as exc:
        raise PlanError([i for i in exc.issues if not i.location.startswith("steps")], str(path)) from None
    return base


def planner_agent(base: dict[str, Any], name: str, source: str) -> LlmAgent:
    """The ``llm`` agent called ``name`` in the agents file."""
    cfg = (base.get("agents") or {}).get(name)
    if cfg is None:
        known = ", ".join(base.get("agents") or {}) or "none"
        raise PlanError([PlanIssue(f"agents.{name}", f'no agent "{name}" in {source} (it has: {known})')], source)
    if not isinstance(cfg, dict) or cfg.get("kind") != "llm":
        raise PlanError(
            [PlanIssue(f"agents.{name}", f'agent "{name}" is not an llm agent; the planner needs kind: llm')], source
        )
    return LlmAgent.model_validate(cfg)


def plan_to_yaml(plan: Plan) -> str:
    """A plan file a person can read and edit: only what was written, in the plan's own order."""
    data = readable(plan)
    header = "# proposed by the loopdeck planner; edit freely, then: loopdeck run THIS_FILE\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
