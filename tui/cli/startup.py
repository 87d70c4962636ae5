"""A command's start without the cyclic garbage collector.

Starting, a command loads some 300,000 objects that live as long as it does
(SQLAlchemy, pydantic and the plan's models, Rich). With the collector on,
CPython walks them again and again while they load: about 150 passes, 37 ms
timed inside the collector during an offline ``approve``; without them the
whole command runs 4 % faster (paired runs). So the collector is off while a
command starts, and a command still running ``STARTUP_S`` later (a headless
run, a worker, ``serve``, an approval waiting for its driver) collects as usual
from then on. Reference counting frees everything else meanwhile; a cycle
made while the collector was off goes with what loaded to the oldest
generation (``end``), and is freed at its next full collection.

The dashboard is left out: it has its own policy (``tui.dashboard.heap``).
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable
from types import TracebackType

STARTUP_S = 1.0


class Startup:
    """The collector off from ``with Startup()`` until ``end``: when the command returns, or ``STARTUP_S``
    into its event loop. It is left as it was found (``main`` is called in-process by tests)."""

    def __init__(self) -> None:
        self._was_on = self._open = False

    def __enter__(self) -> Startup:
        self._was_on, self._open = gc.isenabled(), True
        gc.disable()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.end()

    def end(self) -> None:
        """The collector as it was before the command started (once: a later call changes nothing).

        What loaded meanwhile is moved to the oldest generation first (a freeze and an unfreeze, no walk): the
        next young collection would otherwise walk all of it at once, 20 ms as the command returns."""
        if self._open:
            self._open = False
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            if self._was_on:
                gc.enable()

    async def run(self, work: Awaitable[int]) -> int:
        """``work`` in its event loop, the collector back on ``STARTUP_S`` in if it still runs then."""
        import asyncio  # (here: `loopdeck --help` never loads it)

        asyncio.get_running_loop().call_later(STARTUP_S, self.end)
        return await work
