"""Circuit breakers, one per target: stop sending work to a target that keeps failing.

A breaker guards what an agent calls, not the agent's name: an endpoint and
model, a callable, a command configuration (``AgentConfig.breaker_target``).
Two plans that name different things ``scraper`` never share a breaker; two
agents that call the same model on the same server do.

    closed --N consecutive failures--> open --cooldown--> half_open --probe ok--> closed
                                         ^                    |
                                         +---probe failed-----+

Half-open admits exactly one probe at a time (the common Python breakers let
every concurrent caller through, which hammers a target that is still down).
Time is injected, so tests never sleep; it is wall-clock time because the
state is persisted and must mean the same thing after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.store.records import BreakerRecord


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerChange:
    target: str
    old: BreakerState
    new: BreakerState
    reason: str
    failures: int

    def payload(self, agent: str) -> dict[str, Any]:
        """The ``breaker_changed`` event of ``agent`` (a name in the run) whose target this is."""
        return {
            "agent": agent,
            "target": self.target,
            "from": self.old.value,
            "to": self.new.value,
            "reason": self.reason,
            "failures": self.failures,
        }


class Breaker:
    def __init__(
        self,
        target: str,
        failure_threshold: int = 5,
        cooldown_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.time,
        state: BreakerState = BreakerState.CLOSED,
        failures: int = 0,
        opened_at: float | None = None,
    ) -> None:
        self.target = target
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = state
        self.failures = failures
        self.opened_at = opened_at
        self._probe_in_flight = False
        self.changed_at = 0.0  # when this process last changed (or adopted) the state

    def __repr__(self) -> str:
        extra = f" reopens_in={self.retry_in():.1f}s" if self._state == BreakerState.OPEN else ""
        return f"<Breaker target={self.target!r} state={self._state.value} failures={self.failures}{extra}>"

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state == BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self._state != BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self._clock())

    def poll(self) -> BreakerChange | None:
        """Move open -> half_open once the cooldown has passed."""
        if self._state == BreakerState.OPEN and self.retry_in() <= 0:
            return self._move(BreakerState.HALF_OPEN, f"cooldown of {self.cooldown_s:g}s passed; one probe may go")
        return None

    def can_admit(self) -> bool:
        """Whether an attempt may start now (call ``poll`` first)."""
        if self._state == BreakerState.CLOSED:
            return True
        if self._state == BreakerState.HALF_OPEN:
            return not self._probe_in_flight
        return False

    def admit(self) -> bool:
        """Start an attempt; returns whether it is the half-open probe. Raises if not admitted."""
        if not self.can_admit():
            raise RuntimeError(f"{self!r} admits no attempt now")
        if self._state == BreakerState.HALF_OPEN:
            self._probe_in_flight = True
            return True
        return False

    def record(self, success: bool, probe: bool) -> BreakerChange | None:
        """The outcome of an admitted attempt; returns the state change it caused, if any."""
        if probe:
            self._probe_in_flight = False
        if self._state == BreakerState.CLOSED:
            if success:
                self.failures = 0
                return None
            self.failures += 1
            if self.failures >= self.failure_threshold:
                return self._open(f"{self.failures} consecutive failures")
            return None
        if self._state == BreakerState.HALF_OPEN:
            if success:
                self.failures = 0
                return self._move(BreakerState.CLOSED, "the probe succeeded" if probe else "an attempt succeeded")
            if probe:
                self.failures += 1
                return self._open("the probe failed")
        return None  # late outcomes of attempts admitted before the breaker opened change nothing

    def release_probe(self) -> None:
        """The probe ended without an outcome (canceled): let another one go."""
        self._probe_in_flight = False

    def _open(self, reason: str) -> BreakerChange:
        self.opened_at = self._clock()
        return self._move(BreakerState.OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> BreakerChange:
        old, self._state = self._state, new
        self.changed_at = self._clock()
        return BreakerChange(self.target, old, new, reason, self.failures)

    def adopt(self, row: BreakerRecord) -> BreakerChange | None:
        """Take over a newer state another process persisted: it opened (stop sending) or closed (go on).

        Half-open stays a local matter (each process lets its own probe go once the cooldown passes).
        """
        state = BreakerState(row.state)
        if row.updated_at <= self.changed_at or state == self._state or state == BreakerState.HALF_OPEN:
            return None
        if (
            state == BreakerState.OPEN
            and (row.opened_at or 0) <= (self.opened_at or 0)
            and self._state != BreakerState.CLOSED
        ):
            return None  # an older opening than the one this process already went through
        self.failures, self.opened_at = row.failures, row.opened_at
        self._probe_in_flight = False
        change = self._move(state, f"{state.value} in another process ({row.failures} consecutive failures there)")
        self.changed_at = row.updated_at
        return change

    def probe_at(self) -> float | None:
        """When an open breaker lets its probe through (wall clock), else None."""
        if self._state != BreakerState.OPEN or self.opened_at is None:
            return None
        return self.opened_at + self.cooldown_s

    def row(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "state": self._state.value,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "updated_at": self._clock(),
        }


class BreakerBoard:
    """The breakers of every target this process calls, shared by all its runs.

    A breaker guards a target (an API, a model server), so runs whose agents
    call the same target share it. State is restored from the store when a run starts.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    def get(self, target: str) -> Breaker:
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = Breaker(target, clock=self._clock)
        return breaker

    def configure(self, target: str, failure_threshold: int, cooldown_s: float) -> Breaker:
        """The target's breaker with the settings of the newest plan that calls it."""
        breaker = self.get(target)
        breaker.failure_threshold, breaker.cooldown_s = failure_threshold, cooldown_s
        return breaker

    def restore(self, row: BreakerRecord) -> None:
        """Adopt persisted state for a target this process has not seen yet."""
        if row.target in self._breakers:
            return
        self._breakers[row.target] = Breaker(
            row.target,
            clock=self._clock,
            state=BreakerState(row.state),
            failures=row.failures,
            opened_at=row.opened_at,
        )

    def states(self) -> dict[str, str]:
        return {name: b.state.value for name, b in self._breakers.items()}
