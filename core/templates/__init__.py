"""Plan templates: plans to start from, built in or added by installed packages.

A template is a YAML plan with ``"{{goal}}"`` where the goal goes (quoted: it
is replaced by the goal as a JSON string, which YAML reads as the same text),
and comments that say what to edit; its first comment line is
``# NAME: what it is``. The built-in ones are this package's ``*.yaml``
files. A package adds its own through the ``loopdeck.templates``
entry-point group, as it adds skills:

    [project.entry-points."loopdeck.templates"]
    triage = "acme_plans:TRIAGE"   # YAML text, a mapping, a path to a YAML file, or a callable returning one

A built-in name cannot be taken by a package (the listing says so).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from core.errors import BadInput

GROUP = "loopdeck.templates"
PLACEHOLDER = '"{{goal}}"'
NO_GOAL = "(write the goal here)"
BUILT_IN = "built in"


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    origin: str  # "built in", or "package NAME VERSION"
    text: str

    def render(self, goal: str | None = None) -> str:
        """The plan's YAML with the goal filled in (a note to write one when none is given)."""
        return self.text.replace(PLACEHOLDER, json.dumps(goal or NO_GOAL, ensure_ascii=False))


def builtin_templates() -> dict[str, Template]:
    found = {}
    for item in sorted(resources.files(__name__).iterdir(), key=lambda i: i.name):
        if item.name.endswith(".yaml"):
            name = item.name.removesuffix(".yaml")
            found[name] = _template(name, item.read_text(encoding="utf-8"), BUILT_IN)
    return found


def installed_templates() -> tuple[dict[str, Template], list[str]]:
    """Templates packages register, and why any could not be loaded (never fatal: the others still list)."""
    found: dict[str, Template] = {}
    problems = []
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"package {dist.name} {dist.version}" if dist is not None else "entry point"
        try:
            found.setdefault(ep.name, _template(ep.name, _text_of(ep.load()), origin))
        except Exception as exc:  # a broken package must not hide the rest
            problems.append(f'template "{ep.name}" of {origin} ({ep.value}) cannot be loaded: {exc}')
    return found, problems


def available_templates() -> tuple[dict[str, Template], list[str]]:
    """Every template by name (the built-in ones first), and the problems found on the way."""
    templates = builtin_templates()
    installed, problems = installed_templates()
    for name, template in installed.items():
        if name in templates:
            problems.append(f'template "{name}" of {template.origin} is hidden by the built-in one of that name')
        else:
            templates[name] = template
    return templates, problems


def template(name: str) -> Template:
    """The template ``name``; an unknown one is a ``BadInput`` that names the closest and the known ones."""
    templates, _ = available_templates()
    if name in templates:
        return templates[name]
    close = get_close_matches(name, list(templates), n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    raise BadInput(f'unknown template "{name}"; {hint}`loopdeck templates` lists them ({", ".join(templates)})')


def _template(name: str, text: str, origin: str) -> Template:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    description = first.lstrip("#").strip().removeprefix(f"{name}:").strip() if first.startswith("#") else ""
    return Template(name, description or "(no description)", origin, text)


def _text_of(value: Any) -> str:
    """What an entry point gives, as YAML text."""
    if isinstance(value, Callable):  # type: ignore[arg-type]
        value = value()
    if isinstance(value, Path):
        return value.read_text(encoding="utf-8")
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        import yaml

        # every string double-quoted, so "{{goal}}" is found where the goal goes
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_style='"')
    raise TypeError(f"a template is YAML text, a mapping or a path, not {type(value).__name__}")
