"""A skill as a tool: called with the model's arguments as keyword arguments, sync or async.

A skill states what it does to the world with ``@tool(...)``; loopdeck gates
calls by it (a destructive tool asks by default, a read-only one is allowed,
and one that is read-only or idempotent is run again after a crash without
asking). Its docstring's first paragraph is the description the model reads.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.executors.python import run_in_daemon_thread
from core.model.tools import ToolSpec
from core.tools.schema import arguments_model, input_schema
from core.values import to_json_value

F = TypeVar("F", bound=Callable[..., Any])
HINTS = "__loopdeck_tool__"


def tool(*, destructive: bool = False, read_only: bool = False, idempotent: bool = False) -> Callable[[F], F]:
    """Mark a skill with what it does when called as a tool (MCP's annotations, for Python functions)."""

    def mark(fn: F) -> F:
        setattr(fn, HINTS, {"destructive": destructive, "read_only": read_only, "idempotent": idempotent})
        return fn

    return mark


class ToolError(Exception):
    """A tool could not be found, its arguments were refused, or it raised: the message goes to the model."""


@dataclass
class SkillTool:
    spec: ToolSpec
    fn: Callable[..., Any]
    model: type[BaseModel]

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        """Call the skill; its result as strict JSON. Bad arguments or an exception raise ``ToolError``."""
        try:
            validated = self.model.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(f"arguments refused: {_errors(exc)}") from None
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        try:
            if inspect.iscoroutinefunction(self.fn):
                value = await self.fn(**kwargs)
            else:
                value = await run_in_daemon_thread(self.fn, kwargs)
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        return to_json_value(value)


def load_skill_tool(name: str, target: str) -> SkillTool:
    """The skill ``module:function`` as a tool named ``name``; ``ToolError`` when it cannot be loaded."""
    module_name, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ToolError(f'skill "{name}" cannot be loaded from {target}: {exc}') from exc
    if not callable(fn):
        raise ToolError(f'skill "{name}" ({target}) is not callable')
    model = arguments_model(fn)
    hints = getattr(fn, HINTS, {})
    doc = inspect.getdoc(fn) or f"the skill {name}"
    spec = ToolSpec(
        name=name,
        description=doc.split("\n\n")[0].strip(),
        input_schema=input_schema(model),
        destructive=bool(hints.get("destructive")),
        read_only=bool(hints.get("read_only")),
        idempotent=bool(hints.get("idempotent")),
    )
    return SkillTool(spec, fn, model)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())
