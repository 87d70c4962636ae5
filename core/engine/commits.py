"""Commits: a controller's writes queued on the group writer, published on the bus once durable.

Events reach subscribers only after their batch committed, in commit order;
a commit that fails stops the controller (the database stays the truth).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from core.engine.bus import EventBus
from core.engine.supervision import Supervisor
from core.model.events import Event
from core.store import Store, WriteBatch

log = logging.getLogger("loopdeck.controller")


class Commits:
    def __init__(self, store: Store, bus: EventBus, sup: Supervisor) -> None:
        self.store, self.bus, self.sup = store, bus, sup
        self._pending: set[asyncio.Future[Any]] = set()
        # told of every batch once durable (live traces); one that fails is logged, never fatal to the run
        self.observers: list[Callable[[WriteBatch], None]] = []

    def emit(self, batch: WriteBatch) -> asyncio.Future[list[int]]:
        """Queue ``batch`` for commit; once committed its events are published, in commit order.

        Await the returned future through ``asyncio.shield``: cancelling it
        would not undo the write, only hide it.
        """
        future = self.store.writer.enqueue(batch)
        self._pending.add(future)
        future.add_done_callback(lambda fut: self.sup.guarded("publishing a commit", self._committed, batch, fut))
        return future

    def _committed(self, batch: WriteBatch, future: asyncio.Future[list[int]]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.sup.fatal(exc)
            return
        self.bus.publish(
            Event(id_, row["run_id"], row["type"], row["step_key"], payload, row["created_at"])
            for id_, row, payload in zip(future.result(), batch.events, batch.payloads, strict=True)
        )
        for observe in self.observers:
            try:
                observe(batch)
            except Exception:
                log.exception("an observer of the run's commits failed; the run goes on")

    async def settle(self) -> None:
        """Wait until every queued write has committed or failed (errors were reported as they happened)."""
        await asyncio.gather(*list(self._pending), return_exceptions=True)
