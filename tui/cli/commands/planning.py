"""Plans: ``plan`` (ask a planner agent), ``approve-plan``, ``skills``, and the planning ``run --goal`` uses."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from core import (
    PLANNER_ENV,
    BadInput,
    Orchestrator,
    Plan,
    ToolError,
    available_skills,
    default_agents_file,
    describe_tools,
    load_base,
    load_document,
    load_plan,
    plan_goal,
    plan_to_yaml,
    planner_agent,
)
from tui.cli.commands.acting import say_who_continues
from tui.cli.output import EXIT_OK, listing, say, write_text
from tui.text.literal import literal


@dataclass(frozen=True)
class Planned:
    """A plan, with what writing it cost (its tokens count toward the run) and the profile it was resolved with."""

    plan: Plan
    tokens: tuple[int, int] = (0, 0)
    proposed_by: str | None = None
    profile: dict[str, Any] | None = None


async def plan_from_goal(args: argparse.Namespace, planner: str) -> Planned:
    """Plan from ``args.goal`` with the ``planner`` agent, showing each request and repair on stderr."""
    path = args.agents or default_agents_file()
    if path is None:
        raise BadInput(
            f"the planner needs an agents file: pass --agents FILE, set ${PLANNER_ENV}, "
            "or put agents.yaml in this directory"
        )
    base = load_base(path)
    agent = planner_agent(base, planner, str(path))
    result = await plan_goal(
        args.goal,
        planner,
        agent,
        base,
        max_repairs=args.max_repairs,
        on_progress=lambda line: say(f"planner: {line}"),
    )
    repaired = f" after {result.repairs} repair(s)" if result.repairs else ""
    say(
        f"planner: {len(result.plan.steps)} steps{repaired} · "
        f"{result.prompt_tokens + result.completion_tokens:,} tokens"
    )
    return Planned(result.plan, (result.prompt_tokens, result.completion_tokens), f"planner {planner}")


async def plan(args: argparse.Namespace, _: Any) -> int:
    text = plan_to_yaml((await plan_from_goal(args, args.agent)).plan)
    if args.out:
        write_text(args.out, text)
        say(f"wrote {args.out}; run it with: loopdeck run {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


async def read_edited(args: argparse.Namespace) -> Any:
    """The edited plan (or steps) file, read and checked before the database opens."""
    if args.edited and args.reject:
        raise BadInput("--plan goes with approving; a rejected plan does not run")
    return load_document(args.edited, "plan file") if args.edited else None


async def approve_plan(orch: Orchestrator, args: argparse.Namespace, edited: Any) -> int:
    run_id = await orch.resolve_run_id(args.run_id)
    kwargs: dict[str, Any] = {}
    if edited is not None:  # a whole plan for a run that has not started; steps for a proposed replan
        kwargs["steps" if (await orch.run(run_id, plan=False)).proposal else "plan"] = edited
    delivery = await orch.approve_plan(run_id, approve=not args.reject, user=orch.user, reason=args.reason, **kwargs)
    verb = "rejected" if args.reject else "approved" + (" (edited)" if kwargs else "")
    say(f"plan of run {run_id} {verb} by {orch.user}")
    await say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def tools(args: argparse.Namespace, _: Any) -> int:
    """Every tool a plan's agents can be given: skills, and each MCP server's tools (the servers are started)."""
    plan = load_plan(args.plan_file) if args.plan_file else None
    try:
        found = await describe_tools(plan.skills if plan else {}, plan.mcp_servers if plan else {})
    except ToolError as exc:
        raise BadInput(str(exc)) from None
    hints = ("destructive", "read_only", "idempotent")
    return listing(
        args.json,
        found,
        "no tools: map skills in a plan's `skills:`, declare `mcp_servers:`, or install a package of skills",
        ("TOOL", "HINTS", "FROM", "DESCRIPTION"),
        [
            (
                literal(t["name"]),
                literal(", ".join(h.replace("_", "-") for h in hints if t.get(h)) or "-"),
                literal(t["origin"]),
                literal(t.get("error") or t.get("description") or ""),
            )
            for t in found
        ],
    )


async def skills(args: argparse.Namespace, _: Any) -> int:
    plan_skills = load_plan(args.plan_file).skills if args.plan_file else {}
    found = available_skills(plan_skills)
    return listing(
        args.json,
        {name: {"target": s.target, "origin": s.origin} for name, s in found.items()},
        "no skills: map them in a plan's `skills:` or install a package that registers `loopdeck.skills`",
        ("SKILL", "CALLS", "FROM"),
        [(literal(name), literal(s.target), literal(s.origin)) for name, s in found.items()],
    )
