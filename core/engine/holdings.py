"""What a running attempt holds: its agent slot, its token reservation, its breaker probe.

Taken together when the attempt launches and given back together when it
ends (succeeded, failed or canceled), so no path can return one and forget
another; the attempt's span is written in the same breath. An attempt that
makes several model calls (a tool loop) settles each call's reservation as
it ends and reserves again before the next (``reserve_turn``, ``count_turn``),
so what it holds between calls is only its slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.engine.budget import Budget
from core.engine.routing import Routing
from core.engine.run_state import RunState, StepState
from core.engine.slot_pool import SlotPool
from core.engine.transitions import Spent, plus
from core.executors import Usage
from core.model.pricing import cost_estimate, cost_of
from core.store import WriteBatch


@dataclass
class _Held:
    probe: bool  # the attempt is its breaker's probe
    reserved: int  # tokens reserved for the model call under way (or the whole attempt)
    reserved_usd: float = 0.0  # dollars reserved with them (a cost budget)
    prompt: int = 0  # tokens its ended model calls already counted
    completion: int = 0
    cost_usd: float | None = 0.0  # what they cost (None: not known)


class Holdings:
    def __init__(self, run: RunState, slots: SlotPool, routing: Routing) -> None:
        self.run, self.slots, self.routing = run, slots, routing
        self._held: dict[str, _Held] = {}  # by step key

    def estimates(self, agent: str) -> tuple[int, float]:
        """What an attempt (or a further model call) of ``agent`` reserves: tokens, and dollars (nothing
        without a cost budget: a budget set later counts what is spent from then on, settled in full)."""
        cfg = self.run.plan.agents[agent]
        return cfg.token_estimate(), cost_estimate(cfg) if self.run.dollars.limit is not None else 0.0

    def lacking(self, key: str, agent: str) -> tuple[Budget, str] | None:
        """The budget (tokens or dollars) without room for an attempt of ``agent``, and why; None if both have it."""
        tokens, usd = self.estimates(agent)
        if not self.run.budget.fits(tokens):
            return self.run.budget, self.run.budget.shortfall(key, tokens)
        if not self.run.dollars.fits(usd):
            return self.run.dollars, self.run.dollars.shortfall(key, usd)
        return None

    def take(self, step: StepState) -> bool:
        """Hold a slot, the attempt's reservations and the breaker's admission; True for a probe."""
        self.slots.take(step.key, step.agent)
        probe = self.routing.breaker(step.agent).admit()
        tokens, usd = self.estimates(step.agent)
        self.run.budget.reserve(tokens)
        self.run.dollars.reserve(usd)
        self._held[step.key] = _Held(probe, tokens, usd)
        return probe

    def reserve_turn(self, step: StepState) -> bool:
        """Reserve the attempt's next model call, if both budgets have room for it."""
        held = self._held.get(step.key)
        if held is None or self.lacking(step.key, step.agent) is not None:
            return False
        tokens, usd = self.estimates(step.agent)
        self.run.budget.reserve(tokens)
        self.run.dollars.reserve(usd)
        held.reserved, held.reserved_usd = held.reserved + tokens, held.reserved_usd + usd
        return True

    def count_turn(self, step: StepState, usage: Usage, cost_usd: float | None) -> None:
        """A model call ended: settle its reservation with what it spent."""
        held = self._held.get(step.key)
        if held is not None:
            self.run.budget.settle(held.reserved, usage.total)
            self.run.dollars.settle(held.reserved_usd, cost_usd or 0.0)
            held.reserved, held.reserved_usd = 0, 0.0
            held.prompt += usage.prompt_tokens
            held.completion += usage.completion_tokens
            held.cost_usd = plus(held.cost_usd, cost_usd)

    def give_back(
        self,
        step: StepState,
        batch: WriteBatch,
        now: float,
        status: str,
        actual: int | None,
        prompt: int = 0,
        completion: int = 0,
        error: str | None = None,
        *,
        agent_ok: bool | None = None,
        priced: float | None = None,
    ) -> Spent:
        """An attempt ended: settle its reservation and slot, tell its breaker, write its span.

        ``actual`` None: canceled, so there is no outcome to judge the target by. ``priced``: what the
        attempt cost, when its executor knows (a child run); else its tokens are priced at its agent's price.
        Returns what the attempt adds to its step and run now: what its model calls did not count yet, priced.
        """
        held = self._held.pop(step.key, None) or _Held(False, 0)
        counted = Usage(held.prompt, held.completion)
        rest = (max(0, prompt - held.prompt), max(0, completion - held.completion)) if actual is not None else (0, 0)
        if priced is None:
            rest_cost = cost_of(self.run.plan.agents[step.agent], *rest)
        else:
            rest_cost = max(0.0, priced - (held.cost_usd or 0.0))
        cost = plus(held.cost_usd, rest_cost)
        self.slots.give_back(step.key)
        breaker = self.routing.breaker(step.agent)
        self.run.dollars.settle(held.reserved_usd, rest_cost or 0.0)
        if actual is None:
            self.run.budget.settle(held.reserved, 0)
            if held.probe:
                breaker.release_probe()
        else:
            self.run.budget.settle(held.reserved, max(0, actual - counted.total))
            change = breaker.record(status == "succeeded" if agent_ok is None else agent_ok, held.probe)
            if change is not None:
                self.routing.changed(change, batch, now)
        batch.span(
            self.run.run_id,
            step.key,
            step.attempts,
            step.agent,
            status,
            step.started_at or now,
            now,
            max(prompt, counted.prompt_tokens),
            max(completion, counted.completion_tokens),
            error,
            cost_usd=cost,
        )
        return Spent(*rest, rest_cost, cost)
