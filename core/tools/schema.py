"""A Python function's arguments as JSON Schema, from its signature and type hints (pydantic models included).

pydantic builds the schema and, when the tool is called, validates and
converts the model's arguments the same way (a ``BaseModel`` parameter is
given a model instance, not a dict). ``*args`` and ``**kwargs`` are not
offered to the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model with one field per named parameter of ``fn``."""
    try:
        hints = get_type_hints(fn)
    except Exception:  # a hint that cannot be resolved: the parameter takes any JSON value
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, Any)
        default = ... if param.default is param.empty else param.default
        fields[name] = (annotation, default)
    return create_model(f"{getattr(fn, '__name__', 'tool')}_arguments", __base__=_Arguments, **fields)


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema the model is sent (an object, its ``$defs`` inline with it)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema
