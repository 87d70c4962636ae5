"""What a running attempt holds: its agent slot, its token reservation, its breaker probe.

Taken together when the attempt launches and given back together when it
ends (succeeded, failed or canceled), so no path can return one and forget
another; the attempt's span is written in the same breath.
"""

from __future__ import annotations

from core.engine.routing import Routing
from core.engine.run_state import RunState, StepState
from core.engine.slot_pool import SlotPool
from core.store import WriteBatch


class Holdings:
    def __init__(self, run: RunState, slots: SlotPool, routing: Routing) -> None:
        self.run, self.slots, self.routing = run, slots, routing
        self._held: dict[str, tuple[bool, int]] = {}  # step key -> (is a breaker probe, tokens reserved)

    def take(self, step: StepState, estimate: int) -> bool:
        """Hold a slot, a reservation of ``estimate`` tokens and the breaker's admission; True for a probe."""
        self.slots.take(step.key, step.agent)
        probe = self.routing.breaker(step.agent).admit()
        self.run.budget.reserve(estimate)
        self._held[step.key] = (probe, estimate)
        return probe

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
    ) -> None:
        """An attempt ended: settle its reservation and slot, tell its breaker, write its span.

        ``actual`` None: canceled, so there is no outcome to judge the target by.
        """
        probe, reserved = self._held.pop(step.key, (False, 0))
        self.slots.give_back(step.key)
        breaker = self.routing.breaker(step.agent)
        if actual is None:
            self.run.budget.settle(reserved, 0)
            if probe:
                breaker.release_probe()
        else:
            self.run.budget.settle(reserved, actual)
            change = breaker.record(status == "succeeded" if agent_ok is None else agent_ok, probe)
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
            prompt,
            completion,
            error,
        )
