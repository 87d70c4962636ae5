"""The context aggregator: strategy, inclusion switches, the token cap (0 means 0)."""

from __future__ import annotations

from dataclasses import fields

from core.model.context import TRUNCATION_MARKER, ContextRules, Upstream, build_context
from core.model.policy import Policy


def ups() -> list[Upstream]:
    return [
        Upstream("old", "Old", "reasoning", "a" * 40, 1.0),
        Upstream("tool", "Tool", "tool", {"rows": 3}, 2.0),
        Upstream("new", "New", "reasoning", "newest", 3.0),
    ]


def keys(entries) -> list[str]:
    return [e["key"] for e in entries]


def test_all_keeps_every_upstream_output_oldest_first():
    assert keys(build_context(Policy(context_summary_strategy="all"), ups())) == ["old", "tool", "new"]


def test_last_n_keeps_the_most_recent():
    assert keys(build_context(Policy(context_last_n=2), ups())) == ["tool", "new"]
    assert build_context(Policy(context_last_n=0), ups()) == []


def test_inclusion_switches():
    assert keys(build_context(Policy(context_summary_strategy="all", include_tool_results=False), ups())) == [
        "old",
        "new",
    ]
    assert keys(build_context(Policy(context_summary_strategy="all", include_step_outputs=False), ups())) == ["tool"]


def test_the_cap_drops_the_oldest_and_truncates_visibly():
    policy = Policy(context_summary_strategy="all", max_context_tokens=6)  # 24 characters
    entries = build_context(policy, ups())
    assert keys(entries) == ["tool", "new"]  # newest kept first; "old" did not fit
    assert entries[1]["output"] == "newest"
    big = [Upstream("big", "Big", "reasoning", "x" * 1000, 1.0)]
    out = build_context(Policy(max_context_tokens=25), big)[0]["output"]  # 100 characters
    kept = out.count("x")
    assert len(out) <= 100 and kept > 50
    assert out == "x" * kept + TRUNCATION_MARKER.format(n=1000 - kept)  # the marker says exactly what was cut


def test_zero_tokens_means_no_context():
    assert build_context(Policy(max_context_tokens=0), ups()) == []


def test_the_rules_read_without_pydantic_are_the_policys_with_its_defaults():
    """``ContextRules`` (what a step's context view reads of a stored plan) keeps ``Policy``'s defaults, and a
    stored policy gives the same context through either."""
    rules = {f.name: f.default for f in fields(ContextRules)}
    assert rules == {name: Policy.model_fields[name].default for name in rules}
    for written in ({}, {"context_summary_strategy": "all", "max_context_tokens": 6}, {"include_tool_results": False}):
        assert build_context(ContextRules.of(written), ups()) == build_context(Policy.model_validate(written), ups())
