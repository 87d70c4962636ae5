"""What a plan is run with: the plan over a profile over the configuration, worked out before validation.

Highest first: what the plan writes, the profile chosen with ``--profile``,
the environment and the configuration file (``Defaults``), the built-in
defaults. Per field: a plan that sets ``max_concurrency`` keeps it whatever
the profile says; a profile's ``temperature`` reaches every agent that does
not set one (and outranks the file's values of an agent from the library).
An agent the plan names but does not define comes from the configuration's
agent library, an MCP server its tools name from the
configuration's servers; approval rules are tried in order: the plan's, the
profile's, the configuration's. Pure: the caller reads the settings.

The result is the plan as it will be stored (the run keeps its resolved
values: a resume never re-reads the configuration), and a record of the
profile for ``show --json`` (``run.profile``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from pydantic import ValidationError

from core.errors import BadInput, PlanError, PlanIssue
from core.model.profile import ALL_AGENTS, Profile, patch_fields

# the agent settings a profile may give, by agent kind
_SETTABLE = {
    "llm": frozenset({"model", "temperature", "max_tokens", "tools", "max_turns"}),
    "sim": frozenset({"tools", "max_turns"}),
}


@dataclass(frozen=True)
class Defaults:
    """What lies under every plan: the environment's and the configuration file's values (JSON form)."""

    policy: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    approval_rules: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    source: str = "the configuration"  # where its profiles come from, as a person reads it: "config PATH"


def layered(data: dict[str, Any], defaults: Defaults, profile: str | None = None) -> tuple[dict[str, Any], dict | None]:
    """The plan data with the layers under it filled in, and the profile's record (None without one)."""
    data = copy.deepcopy(data)
    chosen, origin = find_profile(data, defaults, profile) if profile else (None, "")
    library = _add_library_agents(data, defaults)
    applied = _apply_agent_settings(data, chosen, profile or "", library) if chosen else {}
    policy = data.get("policy")
    own = policy if isinstance(policy, dict) else {}
    under = {**defaults.policy, **(patch_fields(chosen.policy) if chosen else {})}
    if under and isinstance(policy, dict | None):
        data["policy"] = {**under, **own}
    rules = [*(r.model_dump(mode="json", exclude_none=True) for r in chosen.approval_rules)] if chosen else []
    rules += defaults.approval_rules
    if rules and isinstance(data.get("approval_rules", []), list):
        data["approval_rules"] = [*data.get("approval_rules", []), *rules]
    _add_library_servers(data, defaults)
    if chosen is None:
        return data, None
    profile_policy = patch_fields(chosen.policy)
    return data, {
        "name": profile,
        "from": origin,
        "description": chosen.description,
        "policy": profile_policy,
        "kept_from_plan": {k: own[k] for k in sorted(profile_policy) if k in own},  # the plan's own value won
        "agents": applied,
        "approval_rules": len(chosen.approval_rules),
    }


def find_profile(data: dict[str, Any], defaults: Defaults, name: str) -> tuple[Profile, str]:
    """The profile ``name``: the plan's own, else the configuration's; an unknown name lists the known ones."""
    own = data.get("profiles")
    if isinstance(own, dict) and name in own:
        try:
            return Profile.model_validate(own[name]), "plan"
        except ValidationError:  # the plan's own validation reports it, located
            return Profile(), "plan"
    if name in defaults.profiles:
        return defaults.profiles[name], defaults.source
    known = sorted({*(own if isinstance(own, dict) else {}), *defaults.profiles})
    close = get_close_matches(name, known, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f" (known: {', '.join(known)})" if known else ""
    where = "the plan's profiles or " + defaults.source
    raise BadInput(f'unknown profile "{name}" in {where}{hint}')


def _named_agents(data: dict[str, Any]) -> list[str]:
    """Agents the plan names: its steps', its default's, and those of child plans that use their parent's."""
    names: list[str] = []
    steps = data.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        if isinstance(step.get("agent"), str):
            names.append(step["agent"])
        child = step.get("plan") if isinstance(step.get("plan"), dict) else step if "steps" in step else None
        if step.get("type") == "sub_agent" and child is not None and "agents" not in child:
            names.extend(_named_agents(child))  # a child without agents of its own runs on its parent's
    if isinstance(data.get("default_agent"), str):
        names.append(data["default_agent"])
    return names


def _add_library_agents(data: dict[str, Any], defaults: Defaults) -> set[str]:
    """Agents the plan names and lacks, from the library (and, in turn, their alternatives); their names."""
    agents = data.get("agents")
    if not defaults.agents or not (agents is None or isinstance(agents, dict)):
        return set()
    have = dict(agents or {})
    wanted = [n for n in _named_agents(data) if n not in have]
    while wanted:
        name = wanted.pop()
        if name in have or name not in defaults.agents:
            continue  # an agent nobody defines: the plan's validation names it
        have[name] = copy.deepcopy(defaults.agents[name])
        wanted.extend(a for a in have[name].get("alternatives", []) if isinstance(a, str))
    if have != (agents or {}):
        data["agents"] = have
    return set(have) - set(agents or {})


def _apply_agent_settings(
    data: dict[str, Any], profile: Profile, name: str, library: set[str]
) -> dict[str, dict[str, Any]]:
    """The profile's agent settings on every agent that leaves them unsaid (a library agent's values come from
    the configuration file, which the profile outranks); returns what was applied, by agent."""
    agents = data.get("agents")
    if not isinstance(agents, dict):
        if not profile.agents:
            return {}
        agents = data["agents"] = {"sim": {"kind": "sim"}}  # the plan's default agent, made explicit
    applied: dict[str, dict[str, Any]] = {}
    for agent, config in agents.items():
        if not isinstance(config, dict):
            continue
        kind = config.get("kind", "sim")
        for key in (ALL_AGENTS, agent):
            settings = profile.agents.get(key)
            if settings is None:
                continue
            for field_name, value in settings.changes().items():
                if field_name not in _SETTABLE.get(kind, frozenset()):
                    if key == agent:
                        raise PlanError(
                            [
                                PlanIssue(
                                    f"profiles.{name}.agents.{agent}.{field_name}",
                                    f'agent "{agent}" is a {kind} agent, which has no {field_name}',
                                )
                            ]
                        )
                    continue
                if field_name not in config or agent in library:
                    config[field_name] = value
                    applied.setdefault(agent, {})[field_name] = value
    return applied


def _add_library_servers(data: dict[str, Any], defaults: Defaults) -> None:
    """MCP servers the agents' tools name and the plan does not declare, from the configuration."""
    servers = data.get("mcp_servers")
    agents = data.get("agents")
    if not defaults.mcp_servers or not isinstance(agents, dict) or not (servers is None or isinstance(servers, dict)):
        return
    have = dict(servers or {})
    for config in agents.values():
        tools = config.get("tools") if isinstance(config, dict) else None
        for tool in tools if isinstance(tools, list) else []:
            server = tool.split(":", 1)[0] if isinstance(tool, str) and ":" in tool else None
            if server and server not in have and server in defaults.mcp_servers:
                have[server] = copy.deepcopy(defaults.mcp_servers[server])
    if have != (servers or {}):
        data["mcp_servers"] = have
