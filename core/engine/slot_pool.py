"""An agent's ``max_concurrency`` across every process on the database: the slots one run holds.

With shared slots (workers on one database), an attempt of an agent with a
limit starts only holding one of the agent's slot rows (``cluster.slots``).
The pool asks for a slot when a step of that agent is ready, keeps a slot a
finished attempt gave back for the agent's next queued step (fewer round
trips), and returns the slots of agents with nothing queued, so other
workers can use them. Without shared slots it admits everything: the
in-process limits of the scheduler are enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from core.cluster.slots import SlotBroker
from core.engine.run_state import RunState
from core.errors import LoopdeckError

log = logging.getLogger("loopdeck.controller")


class SlotPool:
    def __init__(
        self,
        run: RunState,
        broker: SlotBroker | None,
        spawn: Callable[[Any, str], asyncio.Task[Any]],
        fatal: Callable[[BaseException], None],
        wake: Callable[[], None],
    ) -> None:
        self.run = run
        self.broker = broker
        self.spawn = spawn  # start a supervised task
        self.fatal = fatal  # the store refused: stop driving
        self.wake = wake  # a slot arrived: launch what can launch
        self._free: dict[str, list[int]] = {}  # agent -> slots held here and not in use
        self._in_use: dict[str, tuple[str, int]] = {}  # step key -> the slot its running attempt uses
        self._acquiring: dict[str, asyncio.Task[None]] = {}
        self._releases: set[asyncio.Future[Any]] = set()

    def admits(self, agent: str) -> bool:
        """Whether an attempt of ``agent`` may start now; if it needs a slot it does not hold, one is asked for."""
        limit = self.run.plan.agents[agent].max_concurrency
        if self.broker is None or limit is None or self._free.get(agent):
            return True
        if agent not in self._acquiring:
            self._acquiring[agent] = self.spawn(self._acquire(agent, limit), f'a slot of agent "{agent}"')
        return False

    async def _acquire(self, agent: str, limit: int) -> None:
        assert self.broker is not None
        try:
            slot = await self.broker.acquire(agent, limit, self.run.run_id)
        except LoopdeckError as exc:
            self._acquiring.pop(agent, None)
            self.fatal(exc)
            return
        self._acquiring.pop(agent, None)
        self._free.setdefault(agent, []).append(slot)
        self.wake()

    def take(self, key: str, agent: str) -> None:
        """An attempt of ``agent`` starts: it uses one of the slots held here (if the agent has a limit)."""
        if self.broker is not None and self._free.get(agent):
            self._in_use[key] = (agent, self._free[agent].pop())

    def give_back(self, key: str) -> None:
        """An attempt ended: its slot is kept for the agent's next queued step (or returned by ``return_spare``)."""
        if key in self._in_use:
            agent, slot = self._in_use.pop(key)
            self._free.setdefault(agent, []).append(slot)

    def return_spare(self, everything: bool) -> None:
        """Give back the slots of agents with nothing queued here (all of them when draining or ending)."""
        if self.broker is None:
            return
        spare = []
        for agent, held in self._free.items():
            if held and (everything or not self.run.index.has_queued(agent)):
                spare += [(agent, slot) for slot in held]
                held.clear()
        if spare:
            task = asyncio.ensure_future(self.broker.release(spare))
            self._releases.add(task)
            task.add_done_callback(self._released)

    def _released(self, task: asyncio.Future[Any]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:  # they expire with the lease anyway
            log.warning("run %s: could not give back agent slots: %s", self.run.run_id, task.exception())

    def renew_extra(self) -> Any:
        return self.broker.renew_extra() if self.broker is not None else None

    async def close(self) -> None:
        """Stop asking, wait for the returns under way, give back every slot still held."""
        for task in self._acquiring.values():
            task.cancel()
        await asyncio.gather(*self._acquiring.values(), *self._releases, return_exceptions=True)
        if self.broker is None:
            return
        held = [(a, s) for a, ss in self._free.items() for s in ss] + list(self._in_use.values())
        try:
            await self.broker.release(held)
        except LoopdeckError as exc:  # they expire with the lease anyway
            log.warning("run %s: could not give back agent slots: %s", self.run.run_id, exc)
