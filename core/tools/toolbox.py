"""The tools of one run, by name: found once, shared by its steps, arguments checked before any call.

Names are ``SKILL`` (the plan's ``skills`` map, then installed ``loopdeck.skills``
entry points) or, with MCP servers, ``SERVER:TOOL``. ``check`` validates
arguments against the tool's input schema with jsonschema (what an operator
typed into the approval form is checked the same way as the model's).
"""

from __future__ import annotations

from typing import Any

import jsonschema

from core.model.skills import available_skills
from core.model.tools import ToolSpec
from core.tools.skills import SkillTool, ToolError, load_skill_tool


class Toolbox:
    def __init__(self, plan_skills: dict[str, str]) -> None:
        self._skills = plan_skills
        self._tools: dict[str, SkillTool] = {}

    def get(self, name: str) -> SkillTool:
        """The tool named ``name``; ``ToolError`` naming it when there is none."""
        found = self._tools.get(name)
        if found is None:
            skill = available_skills(self._skills).get(name)
            if skill is None:
                raise ToolError(f'tool "{name}" is not available: no skill of that name (see `loopdeck skills`)')
            found = self._tools[name] = load_skill_tool(name, skill.target)
        return found

    def specs(self, names: list[str]) -> list[ToolSpec]:
        """The specs of an agent's ``tools``, in its order."""
        return [self.get(name).spec for name in names]

    def spec(self, name: str) -> ToolSpec:
        return self.get(name).spec

    def check(self, name: str, arguments: Any) -> None:
        """Refuse arguments the tool's input schema does not accept (``ToolError`` listing every problem)."""
        if not isinstance(arguments, dict):
            raise ToolError(f'arguments of "{name}" must be a JSON object, not {type(arguments).__name__}')
        validator = jsonschema.Draft202012Validator(self.spec(name).input_schema)
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if problems:
            raise ToolError(
                f'arguments of "{name}" are not valid: '
                + "; ".join(f"{'.'.join(map(str, p.absolute_path)) or '(arguments)'}: {p.message}" for p in problems)
            )

    async def invoke(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self.get(name).invoke(arguments)
