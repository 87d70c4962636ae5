"""Agent slots shared by every process on the database: an agent's ``max_concurrency`` across workers.

A rate-limited API must stay within its limit however many workers drive
runs. Each agent with a limit has that many slot rows; a controller holds one
per running attempt (``holder`` = its owner and run, renewed with its lease
heartbeat), keeps it for its next queued step of that agent, and gives it back
when it has none. A process that dies holds its slots only until they expire.
"""

from __future__ import annotations

import asyncio

from core.store import Store
from core.store.batch import WriteBatch

RETRY_FIRST_S = 0.02
RETRY_MAX_S = 0.5


class SlotBroker:
    def __init__(self, store: Store, holder: str, ttl_s: float) -> None:
        self.store = store
        self.holder = holder
        self.ttl_s = ttl_s

    async def acquire(self, agent: str, limit: int, run_id: str) -> int:
        """Wait for one of the agent's slots (polling, with growing pauses, while all are taken)."""
        pause = RETRY_FIRST_S
        while True:
            slot = await self.store.acquire_slot(agent, limit, self.holder, run_id, self.ttl_s)
            if slot is not None:
                return slot
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)

    async def release(self, slots: list[tuple[str, int]]) -> None:
        if slots:
            await self.store.write(WriteBatch(extras=[self.store.release_slots_extra(self.holder, slots)]))

    def renew_extra(self):
        return self.store.renew_slots_extra(self.holder, self.ttl_s)
