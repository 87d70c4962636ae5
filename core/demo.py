"""The built-in demo plan: simulated agents writing a technical article.

20 steps with parallel branches, joins, a flaky agent whose failures trip its
circuit breaker (its work is routed to an alternative agent), an approval gate
before publishing, a verification step, and an agent that acts through tools:
it lists the research notes (read-only: allowed) and deletes the drafts
(destructive: the approval dialog asks). The tools below only pretend.
Each agent has a price, so the run's cost shows in dollars. Seeded, so every
demo run behaves the same; about 15 seconds end to end.
"""

from __future__ import annotations

import copy
from typing import Any

from core.model.plan import Plan, validate_plan
from core.tools import tool


@tool(read_only=True)
def list_notes(folder: str) -> list[str]:
    """List the research notes in a folder."""
    return [f"{folder}/history.md", f"{folder}/theory.md", f"{folder}/drafts/outline-v1.md"]


@tool(destructive=True)
def delete_notes(paths: list[str], reason: str = "") -> dict[str, Any]:
    """Delete notes for good (the demo only pretends)."""
    return {"deleted": paths, "reason": reason}


DEMO: dict[str, Any] = {
    "goal": "Research, write, review and publish an article on work-conserving schedulers",
    "default_agent": "writer",
    "policy": {
        "max_concurrency": 4,
        "max_step_attempts": 3,
        "backoff": {"base_s": 0.5, "factor": 2, "max_s": 4, "jitter": True},
        "token_budget": 80000,
    },
    "agents": {
        "planner": {
            "kind": "sim",
            "latency_ms": [400, 900],
            "tokens": [600, 250],
            "seed": 1,
            "price": {"input_per_mtok": 3, "output_per_mtok": 15},
        },
        "researcher": {
            "kind": "sim",
            "latency_ms": [800, 2000],
            "tokens": [1200, 500],
            "price": {"input_per_mtok": 1, "output_per_mtok": 4},
            "seed": 2,
            "max_concurrency": 2,
        },
        "scraper": {
            "kind": "sim",
            "latency_ms": [300, 700],
            "tokens": [200, 80],
            "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
            "seed": 3,
            "fail_times": 2,
            "alternatives": ["researcher"],
            "breaker": {"failure_threshold": 2, "cooldown_s": 5},
        },
        "writer": {
            "kind": "sim",
            "latency_ms": [900, 2200],
            "tokens": [1500, 900],
            "seed": 4,
            "price": {"input_per_mtok": 3, "output_per_mtok": 15},
        },
        "checker": {
            "kind": "sim",
            "latency_ms": [300, 800],
            "tokens": [500, 120],
            "seed": 5,
            "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
        },
        "archivist": {
            "kind": "sim",
            "latency_ms": [300, 600],
            "tokens": [300, 90],
            "price": {"input_per_mtok": 1, "output_per_mtok": 4},
            "seed": 6,
            "tools": ["list_notes", "delete_notes"],
            "tool_calls": [
                {"tool": "list_notes", "arguments": {"folder": "notes"}},
                {
                    "tool": "delete_notes",
                    "arguments": {"paths": ["notes/drafts/outline-v1.md"], "reason": "superseded by the outline"},
                },
            ],
        },
    },
    "skills": {"list_notes": "core.demo:list_notes", "delete_notes": "core.demo:delete_notes"},
    "steps": [
        {
            "key": "plan",
            "title": "Plan the article",
            "agent": "planner",
            "input": {"topic": "work-conserving schedulers"},
        },
        {
            "key": "research_history",
            "title": "Research: history of list scheduling",
            "agent": "researcher",
            "depends_on": ["plan"],
        },
        {"key": "research_theory", "title": "Research: Graham's bound", "agent": "researcher", "depends_on": ["plan"]},
        {
            "key": "research_systems",
            "title": "Research: schedulers in practice",
            "agent": "researcher",
            "depends_on": ["plan"],
        },
        {
            "key": "research_pitfalls",
            "title": "Research: barrier pitfalls",
            "agent": "researcher",
            "depends_on": ["plan"],
        },
        {
            "key": "fetch_sources",
            "title": "Fetch cited papers",
            "type": "tool",
            "agent": "scraper",
            "depends_on": ["plan"],
            "input": {"urls": ["graham1969.pdf", "coffman1976.pdf"]},
        },
        {
            "key": "summarize_background",
            "title": "Summarize the background",
            "type": "reasoning",
            "depends_on": ["research_history", "research_theory", "fetch_sources"],
        },
        {
            "key": "compare_systems",
            "title": "Compare real schedulers",
            "depends_on": ["research_systems", "research_pitfalls"],
        },
        {
            "key": "outline",
            "title": "Draft the outline",
            "agent": "planner",
            "depends_on": ["summarize_background", "compare_systems"],
        },
        {"key": "write_intro", "title": "Write the introduction", "depends_on": ["outline"]},
        {"key": "write_body", "title": "Write the body", "depends_on": ["outline"]},
        {"key": "write_examples", "title": "Write code examples", "type": "skill", "depends_on": ["outline"]},
        {
            "key": "test_examples",
            "title": "Run the code examples",
            "type": "tool",
            "agent": "checker",
            "depends_on": ["write_examples"],
        },
        {
            "key": "review_style",
            "title": "Review style and tone",
            "agent": "checker",
            "depends_on": ["write_intro", "write_body"],
        },
        {
            "key": "review_facts",
            "title": "Fact-check against sources",
            "agent": "checker",
            "depends_on": ["write_body", "fetch_sources"],
        },
        {
            "key": "assemble",
            "title": "Assemble the article",
            "depends_on": ["review_style", "review_facts", "test_examples"],
        },
        {
            "key": "publish",
            "title": "Publish to the blog",
            "type": "sub_agent",
            "approval": "required",
            "depends_on": ["assemble"],
            "input": {"channel": "blog", "visibility": "public"},
        },
        {
            "key": "verify_published",
            "title": "Verify the published page",
            "type": "verification",
            "agent": "checker",
            "depends_on": ["publish"],
        },
        {
            "key": "announce",
            "title": "Announce on the mailing list",
            "type": "tool",
            "depends_on": ["verify_published"],
        },
        {
            "key": "archive_notes",
            "title": "Archive research notes",
            "type": "tool",
            "agent": "archivist",
            "depends_on": ["summarize_background"],
            "dependency_policy": "allow_skipped",
        },
    ],
}


def demo_plan(speed: float = 1.0) -> Plan:
    """The demo; ``speed`` > 1 runs it that many times faster (every wait scaled: latencies, backoff, cooldown)."""
    if speed == 1.0:
        return validate_plan(DEMO, source="demo")
    data = copy.deepcopy(DEMO)
    for agent in data["agents"].values():
        low_high = agent.get("latency_ms", 100)
        agent["latency_ms"] = [x / speed for x in low_high] if isinstance(low_high, list) else low_high / speed
        if "breaker" in agent:
            agent["breaker"]["cooldown_s"] /= speed
    backoff = data["policy"]["backoff"]
    backoff["base_s"], backoff["max_s"] = backoff["base_s"] / speed, backoff["max_s"] / speed
    return validate_plan(data, source="demo")
