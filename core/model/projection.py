"""Events folded into a run's state: what each event means for the run and its steps, written once.

The dashboard's view model and the headless progress both keep a run's
state by folding its events (they read the store's event log, whoever drives
the run); this is the fold they share. It is plain data, no I/O: statuses,
attempts, tokens, the gates waiting (in arrival order), breakers, why a step
is held. Front ends extend it with what only they show (``StepProjection``
and ``RunProjection`` are meant to be subclassed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.model.events import PLAN_REVIEW_EVENTS, RUN_STATUS_EVENTS, STEP_STATUS_AFTER, Event, EventType

E = EventType
FINISHED = frozenset({"succeeded", "failed", "skipped", "rejected"})
RUN_FINISHED = frozenset({"succeeded", "failed", "rejected", "canceled"})


@dataclass
class StepProjection:
    key: str
    agent: str = ""
    status: str = "pending"
    attempts: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0  # None: it spent tokens whose price is not known
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    held: str | None = None  # why a ready step does not start (an open breaker, until its probe)
    gated: str | None = None  # why it waits for an operator (approval: required, or the step rule that asks)
    deadline: str | None = None  # when its gate times out (ISO 8601), while it waits

    def duration(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None and self.status in FINISHED | {"pending"} else now
        return end - self.started_at


CALL_STATUS_AFTER: dict[str, str] = {
    E.TOOL_CALL_REQUESTED: "requested",
    E.TOOL_CALL_WAITING: "waiting_user",
    E.TOOL_CALL_APPROVED: "approved",
    E.TOOL_CALL_REJECTED: "rejected",
    E.TOOL_CALL_DENIED: "denied",
    E.TOOL_CALL_STARTED: "running",
    E.TOOL_CALL_SUCCEEDED: "succeeded",
    E.TOOL_CALL_FAILED: "failed",
    E.TOOL_CALL_INTERRUPTED: "interrupted",
}


@dataclass
class CallProjection:
    """A tool call as its events tell it (``model.tools`` has the state machine)."""

    id: str
    step: str
    tool: str
    status: str = "requested"
    arguments: Any = None
    rule: str | None = None
    reason: str | None = None
    decided_by: str | None = None
    result: Any = None
    error: str | None = None
    turn: int = 0
    text: str | None = None  # what the model said with the call
    server: str | None = None
    annotations: dict[str, bool] = field(default_factory=dict)
    deadline: str | None = None  # when its approval times out (ISO 8601), while it waits
    schema: dict[str, Any] | None = None  # the tool's input schema (sent with a call that waits)

    @property
    def waiting(self) -> bool:
        return self.status in ("waiting_user", "interrupted")


@dataclass
class RunProjection:
    """A run as its events tell it."""

    run_id: str
    status: str = "planning"
    reason: str | None = None
    tokens: int = 0
    budget: int | None = None
    cost_usd: float = 0.0  # what its priced steps cost
    cost_budget: float | None = None  # dollars it may spend (known from budget changes)
    unpriced: set[str] = field(default_factory=set)  # steps that spent tokens whose price is not known
    ended_at: float | None = None
    summary: str | None = None  # the result's sentence, once the run ended
    steps: dict[str, StepProjection] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # steps waiting for approval, in arrival order
    calls: dict[str, CallProjection] = field(default_factory=dict)  # tool calls, by loopdeck's id, in order
    breakers: dict[str, str] = field(default_factory=dict)  # agent -> breaker state
    last_event_id: int = 0
    structure_changed: bool = False  # steps added or removed (a replan)
    _by_status: dict[str, set[str]] | None = field(default=None, repr=False, compare=False)  # (``_statuses``)

    def new_step(self, key: str, agent: str = "") -> StepProjection:
        """The projection of a step the run gained (a replan); front ends make their own kind."""
        return StepProjection(key=key, agent=agent)

    def count(self, *statuses: str) -> int:
        by = self._statuses()
        return sum(len(by.get(status, ())) for status in set(statuses))

    def keys_in(self, status: str) -> set[str]:
        """The keys of the steps in ``status`` now (a copy)."""
        return set(self._statuses().get(status, ()))

    def _statuses(self) -> dict[str, set[str]]:
        """Step keys by status, moved as events move the steps: a dashboard counting them at each refresh
        walked all of a 20,000-step run's steps three times (a fifth of its time while the run streamed).
        Built again when steps came or went otherwise (a front end fills ``steps`` from a snapshot)."""
        by = self._by_status
        if by is None or sum(map(len, by.values())) != len(self.steps):
            by = {}
            for key, step in self.steps.items():
                by.setdefault(step.status, set()).add(key)
            self._by_status = by
        return by

    def _cost(self, step: StepProjection, used: int, cost: object) -> None:
        """An attempt's cost (``None`` or absent where tokens were spent: unknown, never zero)."""
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            if step.cost_usd is not None:
                step.cost_usd += cost
            self.cost_usd += cost
        elif used:
            step.cost_usd = None
            self.unpriced.add(step.key)

    @property
    def done(self) -> int:
        return self.count(*FINISHED)

    @property
    def finished(self) -> bool:
        return self.status in RUN_FINISHED

    def apply(self, event: Event) -> StepProjection | None:
        """Fold one event in; returns the step it changed, if any. Events at or below ``last_event_id`` are ignored."""
        if event.id <= self.last_event_id:
            return None
        self.last_event_id = event.id
        payload = event.payload if isinstance(event.payload, dict) else {}
        step = self.steps.get(event.step_key or "")
        if step is not None:
            self._apply_step(step, event.type, payload, event.created_at)
        if event.type in CALL_STATUS_AFTER:
            self._apply_call(event.type, event.step_key or "", payload)
        self._apply_run(event.type, payload, event.created_at)
        return step

    @property
    def waiting_calls(self) -> list[str]:
        """Tool calls an operator must answer, in the order they were asked for."""
        return [c.id for c in self.calls.values() if c.waiting]

    def _apply_call(self, t: str, step: str, p: dict[str, Any]) -> None:
        call_id = str(p.get("call", ""))
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = CallProjection(call_id, step, str(p.get("tool", "")))
        call.status = CALL_STATUS_AFTER[t]
        if "arguments" in p:
            call.arguments = p["arguments"]
        for name in ("rule", "reason", "result", "error", "text", "server", "annotations", "schema", "deadline"):
            if p.get(name) is not None:
                setattr(call, name, p[name])
        if p.get("user"):
            call.decided_by = p["user"]
        if isinstance(p.get("turn"), int):
            call.turn = p["turn"]

    def _apply_step(self, step: StepProjection, t: str, p: dict[str, Any], at: float) -> None:
        new = STEP_STATUS_AFTER.get(t)
        if new:
            by = self._by_status
            if by is not None and new != step.status:
                if step.status in by:
                    by[step.status].discard(step.key)
                by.setdefault(new, set()).add(step.key)
            step.status = new
            step.held = None
        if t == E.STEP_HELD:
            step.held = str(p.get("reason") or "held")
        elif t == E.STEP_STARTED:
            step.attempts = p.get("attempt", step.attempts + 1)
            step.agent = p.get("agent", step.agent)
            step.started_at, step.ended_at = at, None
        elif t in (E.STEP_SUCCEEDED, E.STEP_FAILED, E.STEP_SKIPPED, E.STEP_REJECTED):
            step.ended_at = at
            step.error = p.get("error") or p.get("reason") if t != E.STEP_SUCCEEDED else None
        elif t == E.STEP_RETRYING:
            step.error, step.ended_at = p.get("error"), at
        elif t in (E.STEP_REQUEUED, E.STEP_REOPENED):
            step.error, step.ended_at = None, None
        elif t == E.STEP_ROUTED:
            step.agent, step.held = p.get("to", step.agent), None
        tokens = p.get("tokens")
        if isinstance(tokens, dict):
            used = int(tokens.get("prompt", 0)) + int(tokens.get("completion", 0))
            step.tokens += used
            self.tokens += used
            self._cost(step, used, tokens.get("cost_usd"))
        if t == E.STEP_WAITING:
            step.gated = str(p.get("reason") or "approval: required")
            step.deadline = p.get("deadline")
        if t == E.STEP_WAITING and step.key not in self.waiting:
            self.waiting.append(step.key)
        elif step.status != "waiting_user" and step.key in self.waiting:
            self.waiting.remove(step.key)

    def _apply_run(self, t: str, p: dict[str, Any], at: float) -> None:
        if t in RUN_STATUS_EVENTS:
            self.status, self.reason = p.get("status", self.status), p.get("reason")
            if t == E.RUN_ENDED:
                self.ended_at, self.summary = at, p.get("summary")
        elif t in PLAN_REVIEW_EVENTS:
            self.status = p.get("status", self.status)
        elif t == E.BREAKER_CHANGED:
            agent = p.get("agent", "?")
            self.breakers[agent] = p.get("to", "?")
            if p.get("to") != "open":  # the probe may go: nothing is held by this breaker any more
                for step in self.steps.values():
                    if step.held and step.agent == agent:
                        step.held = None
        elif t == E.BUDGET_CHANGED and p.get("unit") == "usd":
            self.cost_budget = p.get("to")
        elif t == E.BUDGET_CHANGED:
            self.budget = p.get("to")
        elif t == E.RUN_REPLANNED:
            self.structure_changed = True
            self._by_status = None  # (counted again)
            for key in p.get("removed", []):
                self.steps.pop(key, None)
            for key in p.get("added", []):
                self.steps.setdefault(key, self.new_step(key))
        elif t == E.RUN_CREATED and isinstance(p.get("tokens"), dict):  # what the planner spent
            self.tokens += int(p["tokens"].get("prompt", 0)) + int(p["tokens"].get("completion", 0))
