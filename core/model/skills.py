"""Skills: Python callables registered by name, called by ``type: skill`` steps.

A skill comes from the plan's ``skills`` map (``name: module:function``) or
from an installed package that declares it in the ``loopdeck.skills``
entry-point group, so a team can ship its skills as a package:

    [project.entry-points."loopdeck.skills"]
    summarize = "acme_skills.text:summarize"

The plan's map wins over an installed skill of the same name (the plan is
what the operator reads). A skill is called like a python agent: with
``input``, ``context`` and ``step``, sync or async.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

GROUP = "loopdeck.skills"


@dataclass(frozen=True, slots=True)
class Skill:
    name: str
    target: str  # module:function
    origin: str  # "plan" or "package NAME VERSION"


def installed_skills() -> dict[str, Skill]:
    """Skills that installed packages register in the ``loopdeck.skills`` entry-point group."""
    found: dict[str, Skill] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"package {dist.name} {dist.version}" if dist is not None else "entry point"
        found.setdefault(ep.name, Skill(ep.name, ep.value.replace(" ", ""), origin))
    return found


def available_skills(plan_skills: dict[str, str]) -> dict[str, Skill]:
    """Every skill a plan can call: installed ones, overridden by the plan's own map."""
    skills = installed_skills()
    for name, target in plan_skills.items():
        skills[name] = Skill(name, target, "plan")
    return dict(sorted(skills.items()))
