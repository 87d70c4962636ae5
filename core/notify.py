"""Wake-ups across processes: PostgreSQL LISTEN/NOTIFY, as hints.

One dedicated connection listens; a notification wakes whoever waits on its
channel (and run). The tables stay the truth: a waiter always re-reads them,
and waits with a timeout, so a lost notification costs latency, never
correctness. On SQLite there is no listener and ``wait`` is a plain sleep.

Channels: ``loopdeck_events`` ("<run id> <last id>", after events commit),
``loopdeck_commands`` ("<run id>", an action queued for the run's driver),
``loopdeck_runs`` (a run became claimable: submitted, or handed back).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .writer import COMMANDS_CHANNEL, EVENTS_CHANNEL, RUNS_CHANNEL

log = logging.getLogger("loopdeck.notify")
CHANNELS = (EVENTS_CHANNEL, COMMANDS_CHANNEL, RUNS_CHANNEL)


class Notifier:
    def __init__(self, url: str | None) -> None:
        self.url = url  # a PostgreSQL URL, or None (SQLite: no notifications, waits are sleeps)
        self._conn: Any = None
        self._started: asyncio.Task[None] | None = None
        self._waiters: list[tuple[str, str | None, asyncio.Event]] = []

    async def _start(self) -> None:
        import asyncpg

        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)  # type: ignore[union-attr]
        self._conn = await asyncpg.connect(dsn)
        for channel in CHANNELS:
            await self._conn.add_listener(channel, self._received)

    def _received(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        key = payload.split(" ", 1)[0]
        for want_channel, want_key, event in self._waiters:
            if want_channel == channel and (want_key is None or want_key == key):
                event.set()

    async def wait(self, channel: str, key: str | None, timeout: float) -> bool:
        """Until a notification on ``channel`` (for ``key``) arrives or ``timeout`` passes; True if one arrived."""
        if self.url is None:
            await asyncio.sleep(timeout)
            return False
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        if not self._started.done():
            try:
                await asyncio.shield(self._started)
            except Exception as exc:  # noqa: BLE001 - no listener: fall back to polling
                log.warning("cannot LISTEN for notifications (%s); polling instead", exc)
                self.url = None
                await asyncio.sleep(timeout)
                return False
        waiter = (channel, key, asyncio.Event())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter[2].wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.remove(waiter)

    async def close(self) -> None:
        if self._started is not None and not self._started.done():
            self._started.cancel()
        if self._conn is not None:
            try:
                await self._conn.close(timeout=2)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._conn = None
