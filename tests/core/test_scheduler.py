"""The in-memory index: ready order, limits, and how outcomes release or doom dependents."""

from __future__ import annotations

from core.engine.scheduler import Scheduler


def build(
    edges: dict[str, list[str]], agents: dict[str, str] | None = None, limit: int = 10, agent_limits=None
) -> tuple[Scheduler, list[str]]:
    s = Scheduler(limit, agent_limits)
    for i, (key, deps) in enumerate(edges.items()):
        s.add(key, i, (agents or {}).get(key, "a"), deps)
    return s, s.link()


def test_ready_steps_launch_in_plan_order():
    s, roots = build({"x": [], "y": [], "z": []})
    for key in reversed(roots):
        s.push_ready(key)
    assert [s.pop_launchable() for _ in range(3)] == ["x", "y", "z"]
    assert s.pop_launchable() is None


def test_run_and_agent_limits_hold_but_other_agents_still_launch():
    s, roots = build({"a1": [], "a2": [], "b1": []}, agents={"a1": "A", "a2": "A", "b1": "B"}, agent_limits={"A": 1})
    for key in roots:
        s.push_ready(key)
    first = s.pop_launchable()
    s.started(first)
    second = s.pop_launchable()  # A is full, so B's step goes ahead of a2
    assert (first, second) == ("a1", "b1")
    s.started(second)
    assert s.pop_launchable() is None
    s.stopped("a1")
    assert s.pop_launchable() == "a2"


def test_settle_releases_dependents_only_when_all_dependencies_are_met():
    s, _ = build({"a": [], "b": [], "join": ["a", "b"]})
    assert s.settle("a", "succeeded") == ([], [])
    assert s.settle("b", "succeeded") == (["join"], [])


def test_a_failed_dependency_dooms_its_dependents_unless_they_allow_skips():
    s = Scheduler(5)
    s.add("a", 0, "x", [])
    s.add("strict", 1, "x", ["a"])
    s.add("lenient", 2, "x", ["a"], allow_skipped=True)
    s.link()
    assert s.settle("a", "skipped") == (["lenient"], ["strict"])


def test_unqueued_steps_are_never_launched():
    s, roots = build({"x": [], "y": []})
    for key in roots:
        s.push_ready(key)
    s.unqueue("x")
    assert s.pop_launchable() == "y"
    assert s.pop_launchable() is None
