"""Configuration: ``config`` (the effective settings and their sources), ``profiles``, ``templates``, ``new``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core import (
    BadInput,
    Profile,
    available_templates,
    effective_settings,
    load_document,
    load_settings,
    parse_plan_text,
    template,
)
from tui.cli.output import EXIT_OK, listing, print_json, say, write_text
from tui.text.literal import literal


async def config(args: argparse.Namespace, _: Any) -> int:
    path, exists, entries = effective_settings(db=args.db, user=args.user)
    if args.json:
        print_json(
            {
                "file": path,
                "file_exists": exists,
                "values": {e.key: {"value": e.value, "from": e.source} for e in entries},
            }
        )
        return EXIT_OK
    say(f"configuration file: {path}" + ("" if exists else " (none: the defaults apply)"))
    rows = [(literal(e.key), literal(_shown(e.value)), literal(e.source)) for e in entries]
    return listing(False, entries, "", ("KEY", "VALUE", "FROM"), rows)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


async def profiles(args: argparse.Namespace, _: Any) -> int:
    found: dict[str, tuple[Profile, str]] = {name: (p, "config") for name, p in load_settings().profiles.items()}
    if args.plan_file:
        own = load_document(args.plan_file, "plan file")
        for name, data in (own.get("profiles") or {}).items() if isinstance(own, dict) else ():
            try:
                found[name] = (Profile.model_validate(data), f"plan {args.plan_file}")
            except ValueError as exc:
                raise BadInput(f"{args.plan_file}: profiles.{name} is not valid: {exc}") from None
    data = [
        {"name": name, "from": origin, "description": p.description, "changes": p.summary(), **_fields(p)}
        for name, (p, origin) in sorted(found.items())
    ]
    rows = [(literal(d["name"]), literal(d["from"]), literal(d["description"]), literal(d["changes"])) for d in data]
    empty = "no profiles: add [profiles.NAME] to the configuration file (`loopdeck config` names it)"
    return listing(args.json, data, empty, ("PROFILE", "FROM", "DESCRIPTION", "CHANGES"), rows)


def _fields(profile: Profile) -> dict[str, Any]:
    return {
        "policy": profile.policy_fields(),
        "agents": {name: s.changes() for name, s in profile.agents.items()},
        "approval_rules": [r.model_dump(mode="json", exclude_none=True) for r in profile.approval_rules],
    }


async def templates(args: argparse.Namespace, _: Any) -> int:
    found, problems = available_templates()
    for problem in problems:
        say(f"loopdeck: {problem}")
    data = [{"name": t.name, "description": t.description, "from": t.origin} for t in found.values()]
    rows = [(literal(d["name"]), literal(d["from"]), literal(d["description"])) for d in data]
    return listing(args.json, data, "no templates", ("TEMPLATE", "FROM", "DESCRIPTION"), rows)


async def new(args: argparse.Namespace, _: Any) -> int:
    chosen = template(args.template)
    text = chosen.render(args.goal)
    parse_plan_text(text, f"template {chosen.name}")  # a broken template is refused here, not at its first run
    if not args.out:
        sys.stdout.write(text)  # validated above: YAML holds no raw control character
        return EXIT_OK
    if Path(args.out).exists() and not args.force:
        raise BadInput(f"{args.out} exists; pass --force to replace it, or choose another --out")
    write_text(args.out, text)
    say(f"wrote {args.out} from template {chosen.name}: edit it, then `loopdeck run {args.out}`")
    return EXIT_OK
