"""The in-memory index that makes scheduling work-conserving and O(1) per step.

It knows each step's unmet dependency count, its dependents, which steps are
ready (one heap per agent, ordered by rank) and how many run per agent. A
step's rank is its plan index, or with ``critical_path`` its place in the
order of the longest chain of steps still to run after it (itself included,
counted in steps: a duration is not known before the step runs; ties in plan
order): when slots are scarce, the head of the longest chain
starts first, the highest-level-first rule of list scheduling (Airflow's
default ``downstream`` priority weight is a cousin: it counts every step
downstream). Ranks are computed once the steps are linked and again after a
replan (``rerank``, O(n log n)). It does no I/O and knows nothing of time, so
property tests can drive it directly. The controller owns the decisions it
feeds in.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

OK = "succeeded"


@dataclass
class _Node:
    idx: int
    agent: str
    deps: tuple[str, ...]
    allow_skipped: bool
    unmet: int
    dependents: list[str] = field(default_factory=list)
    outcome: str | None = None
    rank: int = 0  # its place in the ready queue's order: its plan index, or its critical-path rank


class Scheduler:
    def __init__(
        self,
        max_concurrency: int,
        agent_limits: dict[str, int | None] | None = None,
        admits: Callable[[str], bool] | None = None,
        critical_path: bool = False,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.critical_path = critical_path
        self.agent_limits = dict(agent_limits or {})
        self._admits = admits  # e.g. the agent's circuit breaker
        self._nodes: dict[str, _Node] = {}
        self._ready: dict[str, list[tuple[int, str]]] = {}
        self._queued: set[str] = set()
        self.running_by_agent: dict[str, int] = {}
        self.running = 0

    def set_admits(self, admits: Callable[[str], bool] | None) -> None:
        """What decides whether an agent may start an attempt now (its breaker, its shared slots)."""
        self._admits = admits

    def add(self, key: str, idx: int, agent: str, deps: list[str], allow_skipped: bool = False) -> None:
        self._nodes[key] = _Node(idx, agent, tuple(deps), allow_skipped, len(deps), rank=idx)

    def link(self) -> list[str]:
        """Wire dependents once every step is added; return the steps with no dependencies."""
        roots = []
        for key, node in self._nodes.items():
            for dep in node.deps:
                self._nodes[dep].dependents.append(key)
            if not node.deps:
                roots.append(key)
        self.rerank()
        return roots

    def rerank(self) -> None:
        """With ``critical_path``, rank every step again (after its steps changed: a replan) and reorder the ready
        queue; in plan order a rank is the plan index and never changes."""
        if not self.critical_path:
            return
        for rank, key in enumerate(sorted(self._nodes, key=self._chain_order(self._longest_chains()))):
            self._nodes[key].rank = rank
        queued, self._ready = self._queued, {}
        self._queued = set()
        for key in queued:
            self.push_ready(key)

    def _longest_chains(self) -> dict[str, int]:
        """Each step's longest chain of dependents, itself included (a leaf: 1), walked from the leaves up."""
        waiting = {key: len(node.dependents) for key, node in self._nodes.items()}
        chain = dict.fromkeys(self._nodes, 1)
        todo = [key for key, n in waiting.items() if n == 0]
        while todo:
            key = todo.pop()
            for dep in self._nodes[key].deps:
                chain[dep] = max(chain[dep], chain[key] + 1)
                waiting[dep] -= 1
                if waiting[dep] == 0:
                    todo.append(dep)
        return chain

    def _chain_order(self, chain: dict[str, int]) -> Callable[[str], tuple[int, int]]:
        nodes = self._nodes
        return lambda key: (-chain[key], nodes[key].idx)

    def add_live(
        self, key: str, idx: int, agent: str, deps: list[str], allow_skipped: bool = False
    ) -> tuple[bool, str | None]:
        """Add a step to a running index (replan); return (ready now, or the dependency that dooms it). With
        ``critical_path`` its rank is its plan index until ``rerank``, which the caller runs once the replan's
        steps are all in (``actions.apply_replan``)."""
        node = _Node(idx, agent, tuple(deps), allow_skipped, len(deps), rank=idx)
        self._nodes[key] = node
        doomed_by = None
        for dep in deps:
            parent = self._nodes[dep]
            parent.dependents.append(key)
            if parent.outcome == OK or (parent.outcome == "skipped" and allow_skipped):
                node.unmet -= 1
            elif parent.outcome is not None and doomed_by is None:
                doomed_by = dep
        return node.unmet == 0 and doomed_by is None, doomed_by

    def reopen(self, keys: set[str]) -> None:
        """Forget the outcomes of ``keys`` (an operator retries a failed step) and recount what waits on them."""
        for key in keys:
            self._nodes[key].outcome = None
        touched = set(keys)
        for key in keys:
            touched.update(self._nodes[key].dependents)
        for key in touched:
            node = self._nodes[key]
            if node.outcome is None:
                node.unmet = sum(
                    1
                    for dep in node.deps
                    if not (
                        self._nodes[dep].outcome == OK or (self._nodes[dep].outcome == "skipped" and node.allow_skipped)
                    )
                )

    def remove(self, key: str) -> None:
        """Take a step that never started out of the index (replan)."""
        node = self._nodes.pop(key)
        self._queued.discard(key)
        for dep in node.deps:
            if dep in self._nodes:
                self._nodes[dep].dependents.remove(key)

    def dependents(self, key: str) -> list[str]:
        return list(self._nodes[key].dependents)

    def deps(self, key: str) -> tuple[str, ...]:
        return self._nodes[key].deps

    def outcome(self, key: str) -> str | None:
        return self._nodes[key].outcome

    def settle(self, key: str, outcome: str) -> tuple[list[str], list[str]]:
        """Record a step's final outcome; return (dependents now ready, dependents that can never run)."""
        node = self._nodes[key]
        if node.outcome is not None:
            return [], []
        node.outcome = outcome
        self._queued.discard(key)
        ready, doomed = [], []
        for dep_key in node.dependents:
            child = self._nodes[dep_key]
            if child.outcome is not None:
                continue
            if outcome == OK or (outcome == "skipped" and child.allow_skipped):
                child.unmet -= 1
                if child.unmet == 0:
                    ready.append(dep_key)
            else:
                doomed.append(dep_key)
        return ready, doomed

    def is_unblocked(self, key: str) -> bool:
        return self._nodes[key].unmet == 0

    def set_agent(self, key: str, agent: str) -> None:
        self._nodes[key].agent = agent

    def push_ready(self, key: str) -> None:
        node = self._nodes[key]
        if key in self._queued or node.outcome is not None:
            return
        self._queued.add(key)
        heapq.heappush(self._ready.setdefault(node.agent, []), (node.rank, key))

    def unqueue(self, key: str) -> None:
        """Drop a step from the ready queue (lazily: its heap entry is skipped when popped)."""
        self._queued.discard(key)

    @property
    def ready_count(self) -> int:
        return len(self._queued)

    def pop_launchable(self) -> str | None:
        """The ready step of lowest rank (plan index, or critical-path rank) whose agent has a free slot, or None."""
        if self.running >= self.max_concurrency:
            return None
        best: tuple[int, str] | None = None
        best_agent = ""
        for agent, heap in self._ready.items():
            while heap and (heap[0][1] not in self._queued or self._nodes[heap[0][1]].agent != agent):
                heapq.heappop(heap)  # stale entry: unqueued, or moved to another agent's heap
            if not heap:
                continue
            limit = self.agent_limits.get(agent)
            if limit is not None and self.running_by_agent.get(agent, 0) >= limit:
                continue
            if self._admits is not None and not self._admits(agent):
                continue
            if best is None or heap[0] < best:
                best, best_agent = heap[0], agent
        if best is None:
            return None
        heapq.heappop(self._ready[best_agent])
        self._queued.discard(best[1])
        return best[1]

    def has_queued(self, agent: str) -> bool:
        """Whether a ready step waits for this agent (O(1) amortised: drops stale heap tops)."""
        heap = self._ready.get(agent)
        while heap and (heap[0][1] not in self._queued or self._nodes[heap[0][1]].agent != agent):
            heapq.heappop(heap)
        return bool(heap)

    def queued_for(self, agent: str) -> list[str]:
        """Ready steps waiting for this agent, in plan order."""
        return sorted((k for k in self._queued if self._nodes[k].agent == agent), key=lambda k: self._nodes[k].idx)

    def started(self, key: str) -> None:
        agent = self._nodes[key].agent
        self.running += 1
        self.running_by_agent[agent] = self.running_by_agent.get(agent, 0) + 1

    def stopped(self, key: str) -> None:
        agent = self._nodes[key].agent
        self.running -= 1
        self.running_by_agent[agent] -= 1
