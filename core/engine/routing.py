"""Breakers and routing for one run: which target each agent calls, and where a step goes when it is down.

A step whose agent's breaker is open is routed to the first healthy
alternative (``step_routed``); with none it stays queued for the probe and
the operator is told which breaker holds it and when its probe is due
(``step_held``). Breakers belong to the process (``BreakerBoard``), are
saved for other processes and adopted from them at each heartbeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from core.engine.breaker import Breaker, BreakerBoard, BreakerChange
from core.engine.run_state import RunState, StepState
from core.model.events import EventType, iso
from core.store import Store, WriteBatch

E = EventType
BREAKER_RECHECK_S = 1.0  # an open breaker's timer re-checks at least this often: its wall clock may jump


class Routing:
    def __init__(
        self,
        run: RunState,
        board: BreakerBoard,
        clock: Callable[[], float],
        emit: Callable[[WriteBatch], Any],
        schedule: Callable[..., asyncio.TimerHandle],
    ) -> None:
        self.run = run
        self.board = board
        self.clock = clock
        self.emit = emit  # commit a batch (and publish its events)
        self.schedule = schedule  # call_later, supervised: (delay, what, fn, *args)
        self.targets = {name: cfg.breaker_target(name) for name, cfg in run.plan.agents.items()}
        for name, cfg in run.plan.agents.items():
            board.configure(self.targets[name], cfg.breaker.failure_threshold, cfg.breaker.cooldown_s)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._held_noted: dict[str, float | None] = {}  # step -> the breaker opening it was last told to wait for

    def breaker(self, agent: str) -> Breaker:
        return self.board.get(self.targets[agent])

    def agents_of(self, target: str) -> list[str]:
        return [name for name, t in self.targets.items() if t == target]

    def polled(self, agent: str) -> Breaker:
        """The agent's breaker, moved open -> half_open if its cooldown passed (and that recorded)."""
        breaker = self.breaker(agent)
        change = breaker.poll()
        if change is not None:
            batch = WriteBatch()
            self.changed(change, batch, self.clock())
            self.emit(batch)
        return breaker

    def route(self, step: StepState) -> None:
        """Move a step off an agent whose breaker is open, to the first healthy alternative."""
        breaker = self.polled(step.agent)
        if not breaker.is_open:
            return
        home = self.run.plan.agent_of(step.spec)
        for name in [home, *self.run.plan.agents[home].alternatives]:
            if name != step.agent and not self.polled(name).is_open:
                now, old = self.clock(), step.agent
                reason = f'breaker of "{old}" is open ({breaker.failures} consecutive failures)'
                step.agent = name  # its status stays: routing is no transition
                self.run.index.set_agent(step.key, name)
                batch = WriteBatch()
                batch.step(self.run.run_id, step.key, step.status.value, step.attempts, step.row())
                batch.event(self.run.run_id, E.STEP_ROUTED, step.key, {"from": old, "to": name, "reason": reason}, now)
                self.emit(batch)
                return
        self._note_held(step, breaker)

    def _note_held(self, step: StepState, breaker: Breaker) -> None:
        """Tell the operator (once per opening) that a step waits for a breaker, and when its probe is due."""
        if step.key in self._held_noted and self._held_noted[step.key] == breaker.opened_at:
            return
        self._held_noted[step.key] = breaker.opened_at
        probe_at, now = breaker.probe_at(), self.clock()
        due = (
            ""
            if probe_at is None
            else (
                f"; its probe is due at {time.strftime('%H:%M:%S', time.gmtime(probe_at))} "
                f"UTC (in {max(0.0, probe_at - now):.0f}s)"
            )
        )
        batch = WriteBatch()
        batch.event(
            self.run.run_id,
            E.STEP_HELD,
            step.key,
            {
                "by": "breaker",
                "agent": step.agent,
                "target": breaker.target,
                "probe_at": iso(probe_at),
                "reason": f'breaker of "{step.agent}" is open ({breaker.failures} consecutive failures){due}',
            },
            now,
        )
        self.emit(batch)

    def changed(self, change: BreakerChange, batch: WriteBatch, now: float, save: bool = True) -> None:
        """A breaker moved: saved (unless adopted from another process), announced, its queued steps re-routed."""
        breaker = self.board.get(change.target)
        if save:
            batch.extras.append(Store.save_breaker_extra(breaker.row()))
        agents = self.agents_of(change.target)
        for agent in agents:
            batch.event(self.run.run_id, E.BREAKER_CHANGED, None, change.payload(agent), now)
        if breaker.is_open:
            for agent in agents:
                for key in self.run.index.queued_for(agent):
                    self.run.index.unqueue(key)
                    self.route(self.run.steps[key])
                    self.run.index.push_ready(key)

    def arm_timers(self, wake: Callable[[], None]) -> None:
        """Wake the run when an open breaker with queued steps lets its probe through.

        Called after every pump: it asks each agent's breaker first (a plan has a few agents) and only an
        open one whether steps wait for it, never walking the queued steps (3% of a chained step's time)."""
        for agent in self.targets:
            breaker = self.breaker(agent)
            if breaker.is_open and agent not in self._timers and self.run.index.has_queued(agent):
                delay = min(breaker.retry_in() + 0.001, BREAKER_RECHECK_S)
                self._timers[agent] = self.schedule(
                    delay, f'the breaker timer of agent "{agent}"', self._fired, agent, wake
                )

    def _fired(self, agent: str, wake: Callable[[], None]) -> None:
        self._timers.pop(agent, None)
        wake()

    def cancel_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def adopt(self, store: Store, ending: bool) -> bool:
        """Adopt breaker changes other processes saved (a target another worker found down is down here too)."""
        rows = await store.load_breakers(sorted(set(self.targets.values())))
        batch, now = WriteBatch(), self.clock()
        for row in rows:
            change = self.board.get(row.target).adopt(row)
            if change is not None and not ending:
                self.changed(change, batch, now, save=False)
        if batch.events:
            self.emit(batch)
            return True
        return False
