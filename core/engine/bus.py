"""In-process publish/subscribe of run events, per run and for all runs.

Publishing never blocks and never waits for a subscriber: each subscription
has a bounded buffer, and a subscriber that falls past it gets one ``Gap``
marker (with the last id it did receive) instead of the events it missed. It
then re-reads from the store, where every published event already is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from core.model.events import Event, Gap


class Subscription:
    """A bounded mailbox of events for one subscriber; ``get`` yields ``Event`` or ``Gap``."""

    def __init__(self, bus: EventBus, run_id: str | None, maxsize: int) -> None:
        self._bus = bus
        self.run_id = run_id
        self.maxsize = maxsize
        self._items: deque[Event | Gap] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._last_id = 0
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self._overflowed:
            return
        if len(self._items) >= self.maxsize:
            self._overflowed = True
            self._items.append(Gap(self.run_id, self._last_id))
        else:
            self._items.append(event)
            self._last_id = event.id
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Event | Gap:
        while not self._items:
            if self.closed:
                raise EOFError("subscription closed")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = self._items.popleft()
        if isinstance(item, Gap):
            self._overflowed = False
        return item

    def get_nowait(self) -> list[Event | Gap]:
        """Everything buffered now (for coalescing readers such as the dashboard)."""
        items = list(self._items)
        self._items.clear()
        if any(isinstance(item, Gap) for item in items):
            self._overflowed = False
        return items

    def close(self) -> None:
        self.closed = True
        self._bus._remove(self)
        self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event | Gap:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None


class EventBus:
    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._by_run: dict[str | None, set[Subscription]] = {}

    def subscribe(self, run_id: str | None = None, maxsize: int | None = None) -> Subscription:
        """Subscribe to one run's events, or to every run's with ``run_id=None``."""
        sub = Subscription(self, run_id, maxsize or self.maxsize)
        self._by_run.setdefault(run_id, set()).add(sub)
        return sub

    def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            for sub in self._by_run.get(event.run_id, ()):
                sub._offer(event)
            for sub in self._by_run.get(None, ()):
                sub._offer(event)

    def _remove(self, sub: Subscription) -> None:
        subs = self._by_run.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_run[sub.run_id]
