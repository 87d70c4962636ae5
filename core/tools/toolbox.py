"""The tools of one run, by name: found once, shared by its steps, arguments checked before any call.

Names are ``SKILL`` (the plan's ``skills`` map, then installed ``loopdeck.skills``
entry points) or ``SERVER:TOOL`` (an MCP server of the plan's ``mcp_servers``;
``SERVER:*`` is every tool it lists). ``check`` validates arguments against the
tool's input schema with jsonschema (what an operator typed into the approval
form is checked the same way as the model's). ``aclose`` stops the servers.
"""

from __future__ import annotations

from typing import Any

from core.model.skills import available_skills
from core.model.tools import McpServer, ToolSpec
from core.tools.builtin import BUILTIN
from core.tools.mcp import McpConnection
from core.tools.skills import SkillTool, ToolError, load_skill_tool


class Toolbox:
    def __init__(self, plan_skills: dict[str, str], mcp_servers: dict[str, McpServer] | None = None) -> None:
        self._skills = plan_skills
        self._tools: dict[str, SkillTool] = {}
        self._servers = {name: McpConnection(name, cfg) for name, cfg in (mcp_servers or {}).items()}

    async def start(self, server: str) -> None:
        """Start one MCP server and list its tools (once per run)."""
        await self._server(server).start()

    def expand(self, names: list[str]) -> list[str]:
        """``SERVER:*`` as the tools the (started) server lists; other names as they are."""
        out: list[str] = []
        for name in names:
            server, _, tool = name.partition(":")
            out.extend([f"{server}:{t}" for t in sorted(self._server(server).tools)] if tool == "*" else [name])
        return out

    def get(self, name: str) -> SkillTool:
        """The skill named ``name``; ``ToolError`` naming it when there is none."""
        found = self._tools.get(name)
        if found is None:
            skill = available_skills(self._skills).get(name)
            if skill is None:
                raise ToolError(f'tool "{name}" is not available: no skill of that name (see `loopdeck skills`)')
            found = self._tools[name] = load_skill_tool(name, skill.target)
        return found

    def spec(self, name: str) -> ToolSpec:
        if name in BUILTIN:
            return BUILTIN[name]
        if ":" not in name:
            return self.get(name).spec
        server, _, tool = name.partition(":")
        connection = self._server(server)
        found = connection.tools.get(tool)
        if found is None:
            listed = ", ".join(sorted(connection.tools)) or "none"
            raise ToolError(f'MCP server "{server}" has no tool "{tool}" (its tools: {listed})')
        return found

    def specs(self, names: list[str]) -> list[ToolSpec]:
        """The specs of an agent's ``tools``, in its order (servers started: see ``ready``)."""
        return [self.spec(name) for name in self.expand(names)]

    def check(self, name: str, arguments: Any) -> None:
        check_arguments(name, self.spec(name).input_schema, arguments)

    async def invoke(self, name: str, arguments: dict[str, Any]) -> Any:
        if ":" in name:
            server, _, tool = name.partition(":")
            return await self._server(server).call(tool, arguments)
        return await self.get(name).invoke(arguments)

    async def aclose(self) -> None:
        for connection in self._servers.values():
            await connection.close()

    def _server(self, name: str) -> McpConnection:
        found = self._servers.get(name)
        if found is None:
            raise ToolError(
                f'no MCP server "{name}" in this plan (mcp_servers names: {", ".join(self._servers) or "none"})'
            )
        return found


async def describe_tools(plan_skills: dict[str, str], servers: dict[str, McpServer]) -> list[dict[str, Any]]:
    """Every tool a plan can offer (its skills and installed ones, every tool of each MCP server), described:
    name, server, description, hints, input schema, where it comes from. Starts the servers, then stops them."""
    box = Toolbox(plan_skills, servers)
    described: list[dict[str, Any]] = []
    try:
        for name, skill in available_skills(plan_skills).items():
            try:
                spec = box.spec(name)
            except ToolError as exc:
                described.append({"name": name, "server": None, "origin": skill.origin, "error": str(exc)})
                continue
            described.append({**_described(spec), "origin": skill.origin})
        for server in servers:
            await box.start(server)
            described.extend(
                {**_described(spec), "origin": f"MCP server {server}"} for spec in box.specs([f"{server}:*"])
            )
    finally:
        await box.aclose()
    return described


def _described(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "server": spec.server,
        "description": spec.description,
        **spec.annotations(),
        "input_schema": spec.input_schema,
    }


def check_arguments(name: str, schema: dict[str, Any], arguments: Any, what: str | None = None) -> None:
    """Refuse arguments ``schema`` does not accept (``ToolError`` listing every problem).

    ``what`` names the value in the message (default: the arguments of tool ``name``).
    """
    import jsonschema  # here: ~70 ms to import, and only a run with tools needs it

    tool_arguments = what is None
    what = what or f'arguments of "{name}"'
    if tool_arguments and not isinstance(arguments, dict):
        raise ToolError(f"{what} must be a JSON object, not {type(arguments).__name__}")
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if problems:
        raise ToolError(
            f"{what} {'are' if tool_arguments else 'is'} not valid: "
            + "; ".join(f"{'.'.join(map(str, p.absolute_path)) or '(the value)'}: {p.message}" for p in problems)
        )
