"""Coalescing: many small pieces in, at most one flush per interval out.

A streaming agent may send a hundred pieces of text a second; the dashboard
needs a few updates a second, and every update is an event in the store. The
first piece after a quiet spell is flushed at once (the operator sees output
start immediately); pieces arriving within ``interval_s`` of a flush wait
for the next one, together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Coalescer:
    def __init__(
        self, flush: Callable[[str], None], interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._flush = flush
        self.interval_s = interval_s
        self._clock = clock
        self._parts: list[str] = []
        self._last = float("-inf")
        self._handle: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        if self._handle is not None:
            return
        wait = self._last + self.interval_s - self._clock()
        if wait <= 0:
            self.flush()
        else:
            self._handle = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        """Hand over what is pending now (also called by the timer, and when the stream ends)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._parts:
            text, self._parts = "".join(self._parts), []
            self._last = self._clock()
            self._flush(text)

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._parts.clear()
