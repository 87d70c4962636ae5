"""The circuit breaker state machine, on an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from core.engine.breaker import Breaker, BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures_and_a_success_resets_the_count():
    b = Breaker("a", failure_threshold=3, cooldown_s=10, clock=Clock())
    assert b.record(False, False) is None and b.record(False, False) is None
    assert b.record(True, False) is None and b.failures == 0
    b.record(False, False), b.record(False, False)
    change = b.record(False, False)
    assert change.new == BreakerState.OPEN and change.reason == "3 consecutive failures"
    assert not b.can_admit()


def test_half_open_after_cooldown_admits_exactly_one_probe():
    clock = Clock()
    b = Breaker("a", failure_threshold=1, cooldown_s=10, clock=clock)
    b.record(False, False)
    clock.now += 9.9
    assert b.poll() is None and b.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert b.poll().new == BreakerState.HALF_OPEN
    assert b.admit() is True
    assert not b.can_admit()  # a second concurrent caller is refused
    with pytest.raises(RuntimeError, match="admits no attempt"):
        b.admit()


def test_a_successful_probe_closes_and_a_failed_one_reopens():
    clock = Clock()
    b = Breaker("a", failure_threshold=1, cooldown_s=5, clock=clock)
    b.record(False, False)
    clock.now += 5
    b.poll()
    b.admit()
    change = b.record(False, True)
    assert change.new == BreakerState.OPEN and change.reason == "the probe failed" and b.opened_at == clock.now
    clock.now += 5
    b.poll()
    assert b.admit()
    assert b.record(True, True).new == BreakerState.CLOSED and b.can_admit()


def test_outcomes_of_attempts_admitted_before_opening_change_nothing():
    b = Breaker("a", failure_threshold=1, cooldown_s=5, clock=Clock())
    b.record(False, False)
    assert b.record(True, False) is None and b.state == BreakerState.OPEN


def test_repr_shows_the_state():
    b = Breaker("api", failure_threshold=1, cooldown_s=30, clock=Clock())
    b.record(False, False)
    assert repr(b) == "<Breaker target='api' state=open failures=1 reopens_in=30.0s>"
