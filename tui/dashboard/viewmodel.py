"""The dashboard's view model: a run folded from its events, keyed by step.

The folding itself is the engine's projection (``core.RunProjection``), the
same the headless progress uses; this adds what only the dashboard shows
(titles, inputs and outputs, streamed text, ratings, the recent events) and
remembers which steps changed (``dirty``), so a refresh touches only those
rows and tree nodes, never the whole screen. No Textual here: plain data.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core import Event, EventType, RunProjection, StepProjection

E = EventType
PARTIAL_CHARS = 20_000  # streamed output kept per step (the tail; the whole output is in the store at the end)


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


@dataclass
class StepView(StepProjection):
    title: str = ""
    type: str = ""
    depends_on: list[str] = field(default_factory=list)
    rating: str | None = None  # "up" / "down" after feedback
    input: Any = None
    output: Any = None
    partial: str = ""  # output streamed so far by the running attempt
    input_schema: dict[str, Any] | None = None  # the plan's: an input edited at the gate must match it


@dataclass
class RunView(RunProjection):
    """One run as the dashboard shows it."""

    goal: str = ""
    max_concurrency: int = 0
    profile: str | None = None  # the harness profile it was created with
    parent: str | None = None  # the run (and step) a child run runs for: "RUN (step KEY)"
    created_at: float = 0.0
    on_budget_exhausted: str = "fail"  # the policy's: what a spent budget does to the run
    stop_on_approval: bool = False  # the policy's stop_on_approval_required: a waiting gate holds every launch
    driver_gone: str | None = None  # "driver gone — …" while no process drives the live run, else None
    driver_state: str = "alive"  # gone (it died or stopped renewing its lease), none (nobody took it), alive
    last_event_at: float = 0.0  # when the run last did anything (timers stop there when nobody drives it)
    result: dict[str, Any] | None = None  # answer, summary, evidence: read from the store once the run ended
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=500))
    dirty: set[str] = field(default_factory=set)  # steps changed since the last refresh

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any], events: list[Event]) -> RunView:
        """The run as its events tell it: the plan's steps, then every event folded in order (``snap`` and
        ``events`` as ``orch.snapshot_and_events`` reads them: records, not text made and read back).

        Step rows and events are read at slightly different moments; replaying
        the events (the complete log of transitions) keeps the view consistent.
        """
        run, plan = snap["run"], snap.get("plan")
        plan = plan if isinstance(plan, dict) else {}  # (a damaged stored plan is shown, never a crash)
        policy = plan.get("policy") if isinstance(plan.get("policy"), dict) else {}
        specs = plan.get("steps") if isinstance(plan.get("steps"), list) else []
        view = cls(
            run_id=run["id"],
            goal=run["goal"],
            status="planning",
            budget=run["token_budget"],
            cost_budget=run.get("cost_budget_usd"),
            max_concurrency=run.get("max_concurrency") or 0,
            profile=(run.get("profile") or {}).get("name"),
            parent=f"{run['parent']['run']} (step {run['parent']['step']})" if run.get("parent") else None,
            created_at=parse_iso(run["created_at"]) or time.time(),
            stop_on_approval=bool(policy.get("stop_on_approval_required")),
            on_budget_exhausted=str(policy.get("on_budget_exhausted") or "fail"),
        )
        view.set_driver(run.get("driver"))
        schemas = {
            s["key"]: s.get("input_schema") for s in specs if isinstance(s, dict) and isinstance(s.get("key"), str)
        }
        for s in snap["steps"]:
            view.steps[s["key"]] = StepView(
                input_schema=schemas.get(s["key"]),
                key=s["key"],
                title=s["title"],
                type=s["type"],
                agent=s["agent"],
                depends_on=s.get("depends_on", []),
                input=s["input"],
                output=s["output"],
            )
        for event in events:
            view.apply(event)
        for agent in {s.agent for s in view.steps.values()}:
            view.breakers.setdefault(agent, "closed")
        view.result = run.get("result")
        view.dirty.clear()
        view.structure_changed = False  # (the snapshot's steps are the plan as it is now, replans included)
        return view

    def new_step(self, key: str, agent: str = "") -> StepView:
        return StepView(key=key, agent=agent, title=key)

    def apply(self, event: Event) -> StepProjection | None:
        """Fold one event in, and what only the dashboard shows of it."""
        if event.id <= self.last_event_id:
            return None
        waiting_before = len(self.waiting)
        step = super().apply(event)
        self.events.append(event)
        self.last_event_at = max(self.last_event_at, event.created_at)
        if self.stop_on_approval and len(self.waiting) != waiting_before:  # holds on launches came or went
            self.dirty.update(k for k, s in self.steps.items() if s.status == "pending")
        p = event.payload if isinstance(event.payload, dict) else {}
        if isinstance(step, StepView):
            self.dirty.add(step.key)
            if event.type == E.STEP_OUTPUT_PARTIAL:
                step.partial = (step.partial + str(p.get("text", "")))[-PARTIAL_CHARS:]
            elif event.type == E.STEP_STARTED:
                step.partial = ""
            elif event.type == E.STEP_FEEDBACK:
                step.rating = p.get("rating")
            elif event.type == E.STEP_APPROVED and "input" in p:
                step.input = p["input"]
        if event.type == E.BREAKER_CHANGED:  # rows held by this breaker show it no more
            self.dirty.update(k for k, s in self.steps.items() if s.agent == p.get("agent"))
        return step

    def set_driver(self, driver: dict[str, Any] | None) -> bool:
        """Who drives the run (``run.driver``); True if whether anyone does changed."""
        gone = driver["text"] if driver and driver.get("state") != "alive" else None
        if gone == self.driver_gone:
            return False
        self.driver_gone = gone
        self.driver_state = driver["state"] if driver and gone else "alive"
        self.dirty.update(k for k, s in self.steps.items() if s.status == "running")  # their timers stop or go on
        return True

    def clock_for_steps(self, now: float) -> float:
        """Running steps' timers tick with ``now`` while a process drives the run, else stop at its last event."""
        return min(now, self.last_event_at or now) if self.driver_gone else now

    def launch_hold(self, step: StepView) -> str | None:
        """Why a ready step does not start: the engine's hold (a breaker), or the gates holding every launch."""
        if step.status != "pending":
            return None
        if step.held:
            return step.held
        others = self._other_gates(step.key)
        if self.stop_on_approval and others and all(self._done_ok(d) for d in step.depends_on):
            return f"waits for {others} (stop_on_approval_required)"
        return None

    def _other_gates(self, key: str) -> str:
        """The gates waiting besides ``key``'s, listed (the first three); empty when there are none."""
        others = [k for k in self.waiting if k != key]
        return ", ".join(others[:3]) + ("…" if len(others) > 3 else "")

    def held_note(self, key: str) -> str:
        """What an operator who just let ``key`` go should know: other gates still hold every launch."""
        others = self._other_gates(key)
        if not (self.stop_on_approval and others):
            return ""
        verb = "are" if "," in others else "is"
        return f"; it starts once {others} {verb} answered too (stop_on_approval_required holds launches)"

    def _done_ok(self, key: str) -> bool:
        dep = self.steps.get(key)
        return dep is None or dep.status == "succeeded"

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def elapsed(self, now: float) -> float:
        return (self.ended_at or now) - self.created_at
