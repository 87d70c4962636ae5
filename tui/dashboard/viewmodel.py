"""The dashboard's view model: a run folded from its events, keyed by step.

Events arrive in bursts (thousands a second on big runs); widgets refresh on
a timer. Folding is cheap and remembers which steps changed (``dirty``), so a
refresh touches only those rows and tree nodes, never the whole screen. No
Textual here: it is plain data, tested on its own.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core import PLAN_REVIEW_EVENTS, RUN_STATUS_EVENTS, STEP_STATUS_AFTER, Event, EventType

E = EventType
FINISHED = frozenset({"succeeded", "failed", "skipped", "rejected"})
PARTIAL_CHARS = 20_000  # streamed output kept per step (the tail; the whole output is in the store at the end)


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


@dataclass
class StepView:
    key: str
    title: str
    type: str
    agent: str
    depends_on: list[str]
    status: str = "pending"
    attempts: int = 0
    tokens: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    rating: str | None = None  # "up" / "down" after feedback
    input: Any = None
    output: Any = None
    partial: str = ""  # output streamed so far by the running attempt
    held: str | None = None  # why a ready step does not start (an open breaker, until its probe)

    def duration(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at if self.ended_at is not None and self.status in FINISHED | {"pending"} else now) - self.started_at


@dataclass
class RunView:
    """One run as the dashboard shows it."""

    run_id: str
    goal: str = ""
    status: str = "planning"
    reason: str | None = None
    tokens: int = 0
    budget: int | None = None
    max_concurrency: int = 0
    created_at: float = 0.0
    ended_at: float | None = None
    steps: dict[str, StepView] = field(default_factory=dict)
    breakers: dict[str, str] = field(default_factory=dict)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=500))
    last_event_id: int = 0
    dirty: set[str] = field(default_factory=set)  # steps changed since the last refresh
    structure_changed: bool = False  # steps added or removed (replan)
    waiting: list[str] = field(default_factory=list)  # steps waiting for approval, in arrival order

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> "RunView":
        """The run as its events tell it: the plan's steps, then every event folded in order.

        Step rows and events are read at slightly different moments; replaying
        the events (the complete log of transitions) keeps the view consistent.
        """
        run = snap["run"]
        view = cls(
            run_id=run["id"], goal=run["goal"], status="planning", budget=run["token_budget"],
            max_concurrency=run.get("max_concurrency") or 0, created_at=parse_iso(run["created_at"]) or time.time(),
        )
        for s in snap["steps"]:
            view.steps[s["key"]] = StepView(
                key=s["key"], title=s["title"], type=s["type"], agent=s["agent"], depends_on=s.get("depends_on", []),
                input=s["input"], output=s["output"],
            )
        for e in snap.get("events", []):
            view.apply(Event(e["id"], run["id"], e["type"], e["step"], e["payload"], parse_iso(e["created_at"]) or 0.0))
        for agent in {s.agent for s in view.steps.values()}:
            view.breakers.setdefault(agent, "closed")
        view.dirty.clear()
        return view

    # -- folding -----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one event in (events at or below ``last_event_id`` are ignored)."""
        if event.id <= self.last_event_id:
            return
        self.last_event_id = event.id
        self.events.append(event)
        p = event.payload if isinstance(event.payload, dict) else {}
        step = self.steps.get(event.step_key or "")
        if step is not None:
            self._apply_step(step, event, p)
            self.dirty.add(step.key)
        t = event.type
        if t in RUN_STATUS_EVENTS:
            self.status = p.get("status", self.status)
            self.reason = p.get("reason")
            if t == E.RUN_ENDED:
                self.ended_at = event.created_at
        elif t == E.BREAKER_CHANGED:
            self.breakers[p.get("agent", "?")] = p.get("to", "?")
            if p.get("to") != "open":  # the probe may go: nothing is held by this breaker any more
                for step in self.steps.values():
                    if step.held and step.agent == p.get("agent"):
                        step.held = None
                        self.dirty.add(step.key)
        elif t == E.BUDGET_CHANGED:
            self.budget = p.get("to")
        elif t == E.RUN_REPLANNED:
            self.structure_changed = True  # the screen reloads the run
        elif t == E.RUN_CREATED and isinstance(p.get("tokens"), dict):  # what the planner spent
            self.tokens += int(p["tokens"].get("prompt", 0)) + int(p["tokens"].get("completion", 0))
        elif t in PLAN_REVIEW_EVENTS:
            self.status = p.get("status", self.status)

    def _apply_step(self, step: StepView, event: Event, p: dict[str, Any]) -> None:
        t = event.type
        new = STEP_STATUS_AFTER.get(t)  # type: ignore[call-overload]
        if new:
            step.status = new
            step.held = None
        if t == E.STEP_HELD:
            step.held = str(p.get("reason") or "held")
            return
        if t == E.STEP_ROUTED:
            step.held = None
        if t == E.STEP_OUTPUT_PARTIAL:
            step.partial = (step.partial + str(p.get("text", "")))[-PARTIAL_CHARS:]
            return
        if t == E.STEP_STARTED:
            step.partial = ""
            step.attempts = p.get("attempt", step.attempts + 1)
            step.agent = p.get("agent", step.agent)
            step.started_at, step.ended_at = event.created_at, None
        elif t in (E.STEP_SUCCEEDED, E.STEP_FAILED, E.STEP_SKIPPED, E.STEP_REJECTED):
            step.ended_at = event.created_at
            step.error = p.get("error") or p.get("reason") if t != E.STEP_SUCCEEDED else None
        elif t == E.STEP_RETRYING:
            step.error = p.get("error")
            step.ended_at = event.created_at
        elif t in (E.STEP_REQUEUED, E.STEP_REOPENED):
            step.error, step.ended_at = None, None
        elif t == E.STEP_ROUTED:
            step.agent = p.get("to", step.agent)
        elif t == E.STEP_FEEDBACK:
            step.rating = p.get("rating")
        elif t == E.STEP_APPROVED and "input" in p:
            step.input = p["input"]
        tokens = p.get("tokens")
        if isinstance(tokens, dict):
            used = int(tokens.get("prompt", 0)) + int(tokens.get("completion", 0))
            step.tokens += used
            self.tokens += used
        if t == E.STEP_WAITING and step.key not in self.waiting:
            self.waiting.append(step.key)
        elif step.status != "waiting_user" and step.key in self.waiting:
            self.waiting.remove(step.key)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    # -- summaries for the header -----------------------------------------------------------

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.steps.values() if s.status in statuses)

    @property
    def done(self) -> int:
        return self.count(*FINISHED)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "rejected", "canceled")

    def elapsed(self, now: float) -> float:
        return (self.ended_at or now) - self.created_at
