"""The in-memory index: ready order, limits, and how outcomes release or doom dependents."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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


def longest_chains(edges: dict[str, list[str]]) -> dict[str, int]:
    """The reference: a step's longest chain of dependents, itself included, by plain recursion."""
    dependents = {key: [k for k, deps in edges.items() if key in deps] for key in edges}

    def chain(key: str) -> int:
        return 1 + max((chain(k) for k in dependents[key]), default=0)

    return {key: chain(key) for key in edges}


def launched(s: Scheduler, roots: list[str]) -> list[str]:
    """Run the index to the end one step at a time (one slot), every step succeeding: the order they start in."""
    for key in roots:
        s.push_ready(key)
    order = []
    while (key := s.pop_launchable()) is not None:
        order.append(key)
        s.started(key)
        s.stopped(key)
        for ready in s.settle(key, "succeeded")[0]:
            s.push_ready(ready)
    return order


def test_critical_path_starts_the_step_with_the_longest_chain_after_it_first_ties_in_plan_order():
    edges = {"a": [], "b": [], "c": ["b"], "d": ["c"]}  # a alone; b → c → d
    plan_order = Scheduler(1)
    critical = Scheduler(1, critical_path=True)
    for s in (plan_order, critical):
        for i, (key, deps) in enumerate(edges.items()):
            s.add(key, i, "x", deps)
    assert launched(plan_order, plan_order.link()) == ["a", "b", "c", "d"]
    assert launched(critical, critical.link()) == ["b", "c", "a", "d"]  # (a and d: one step each, a first in plan)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_critical_path_always_starts_a_ready_step_of_the_longest_chain(data):
    n = data.draw(st.integers(1, 30))
    edges: dict[str, list[str]] = {}
    for i in data.draw(st.permutations(range(n))):  # (plan order need not be topological)
        deps = data.draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        edges[f"s{i}"] = [f"s{d}" for d in deps]
    chains = longest_chains(edges)
    s = Scheduler(1, critical_path=True)
    idx = {key: i for i, key in enumerate(edges)}
    for key, deps in edges.items():
        s.add(key, idx[key], "x", deps)
    ready = set(s.link())
    for key in ready:
        s.push_ready(key)
    while (key := s.pop_launchable()) is not None:
        assert key == min(ready, key=lambda k: (-chains[k], idx[k]))
        ready.discard(key)
        s.started(key)
        s.stopped(key)
        for new in s.settle(key, "succeeded")[0]:
            ready.add(new)
            s.push_ready(new)
    assert not ready


def test_critical_path_ranks_again_after_a_replan_and_reorders_what_waits():
    s = Scheduler(1, critical_path=True)
    s.add("a", 0, "x", [])
    s.add("b", 1, "x", [])
    s.add("c", 2, "x", ["b"])  # b has the longer chain
    for key in s.link():
        s.push_ready(key)
    s.add_live("x1", 3, "x", ["a"])  # a replan hangs a longer chain under a
    s.add_live("x2", 4, "x", ["x1"])
    s.add_live("x3", 5, "x", ["x2"])
    s.rerank()
    assert s.pop_launchable() == "a"
