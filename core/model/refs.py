"""References from a step's input to upstream outputs: ``{{steps.KEY.output}}``.

A reference may go on into a structured output with a JSON path
(``{{steps.fetch.output.items[0].name}}``; a string output holding JSON is
parsed first). A string that is exactly one reference becomes the referenced
value itself; references inside longer text are replaced by their text
(JSON for non-strings). Every reference is checked at plan time: the key must
exist and be upstream of the step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REF = re.compile(r"\{\{\s*steps\.([A-Za-z0-9_][A-Za-z0-9_.\-]*?)\.output((?:\.[A-Za-z0-9_\-]+|\[\d+\])*)\s*\}\}")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


class RefError(Exception):
    """A reference could not be resolved when the step was about to run."""


@dataclass(frozen=True, slots=True)
class Ref:
    key: str
    path: str  # e.g. ".items[0].name", or "" for the whole output
    text: str  # the reference as written


def find_refs(value: Any) -> Iterator[Ref]:
    """Every reference anywhere in a JSON-like value (strings, lists, dict values)."""
    if isinstance(value, str):
        for m in REF.finditer(value):
            yield Ref(m.group(1), m.group(2), m.group(0))
    elif isinstance(value, list):
        for item in value:
            yield from find_refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from find_refs(item)


def resolve(value: Any, outputs: dict[str, Any]) -> Any:
    """``value`` with every reference replaced by the referenced output (or part of it)."""
    if isinstance(value, str):
        whole = REF.fullmatch(value.strip())
        if whole:
            return _lookup(whole.group(1), whole.group(2), outputs)
        return REF.sub(lambda m: _as_text(_lookup(m.group(1), m.group(2), outputs)), value)
    if isinstance(value, list):
        return [resolve(item, outputs) for item in value]
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    return value


def _lookup(key: str, path: str, outputs: dict[str, Any]) -> Any:
    if key not in outputs:
        raise RefError(f"input references steps.{key}.output, but step {key!r} has no output (it did not succeed)")
    current = outputs[key]
    walked = f"steps.{key}.output"
    for m in _PATH_PART.finditer(path):
        if isinstance(current, str):
            try:
                current = json.loads(current)
            except json.JSONDecodeError:
                raise RefError(f"{walked} is text, not JSON, so it has no {m.group(0)!r}") from None
        name, index = m.group(1), m.group(2)
        if name is not None:
            if not isinstance(current, dict) or name not in current:
                have = f"; it has {', '.join(map(str, list(current)[:8]))}" if isinstance(current, dict) else ""
                raise RefError(f"{walked} has no field {name!r}{have}")
            current = current[name]
        else:
            i = int(index)
            if not isinstance(current, list) or i >= len(current):
                size = f" has {len(current)} items" if isinstance(current, list) else " is not a list"
                raise RefError(f"{walked}{size}, so [{i}] does not exist")
            current = current[i]
        walked += m.group(0)
    return current


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
