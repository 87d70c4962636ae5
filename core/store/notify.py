"""Wake-ups across processes: PostgreSQL LISTEN/NOTIFY, as hints. Every channel and every NOTIFY is here.

One dedicated connection listens; a notification wakes whoever waits on its
channel (and run). The tables stay the truth: a waiter always re-reads them,
and waits with a timeout, so a lost notification costs latency, never
correctness. On SQLite there is no listener and ``wait`` is a plain sleep.

The listening connection can drop (a restarted server, a killed backend, a
network blip). Then every waiter is woken at once, to catch up from the
tables (notifications sent meanwhile are lost), and the next ``wait``
connects again; while the server cannot be reached, waits are plain sleeps
and a new connection is tried every ``RECONNECT_S``.

Channels: ``loopdeck_events`` ("<run id> <last id>", after events commit),
``loopdeck_commands`` ("<run id>", an action queued for the run's driver),
``loopdeck_answers`` ("<command id>", the driver answered a command),
``loopdeck_runs`` (a run became claimable: submitted, or handed back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import Connection, text

log = logging.getLogger("loopdeck.notify")
EVENTS_CHANNEL = "loopdeck_events"  # "<run id> <last event id>" after events commit
COMMANDS_CHANNEL = "loopdeck_commands"  # "<run id>" when an action is queued for a run's driver
ANSWERS_CHANNEL = "loopdeck_answers"  # "<command id>" when the driver answered it
RUNS_CHANNEL = "loopdeck_runs"  # "<run id>" when a run becomes claimable (submitted, handed back)
CHANNELS = (EVENTS_CHANNEL, COMMANDS_CHANNEL, ANSWERS_CHANNEL, RUNS_CHANNEL)
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def notify(conn: Connection, channel: str, payload: str) -> None:
    """NOTIFY on PostgreSQL (delivered when the transaction commits); nothing elsewhere."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"channel": channel, "payload": payload})


RECONNECT_S = 2.0


class Notifier:
    def __init__(self, url: str | None) -> None:
        self.url = url  # a PostgreSQL URL, or None (SQLite: no notifications, waits are sleeps)
        self._conn: Any = None
        self._started: asyncio.Task[None] | None = None
        self._retry_at = 0.0  # monotonic time before which no new connection is tried
        self._waiters: list[tuple[str, str | None, asyncio.Event]] = []
        self.connections = 0  # listening connections made (a reconnect adds one)

    async def _start(self) -> None:
        import asyncpg

        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)  # type: ignore[union-attr]
        conn = await asyncpg.connect(dsn, timeout=10)
        for channel in CHANNELS:
            await conn.add_listener(channel, self._received)
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.connections += 1

    def _received(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        key = payload.split(" ", 1)[0]
        for want_channel, want_key, event in self._waiters:
            if want_channel == channel and (want_key is None or want_key == key):
                event.set()

    def _lost(self, conn: Any) -> None:
        """The listening connection closed: wake everyone to re-read the tables; listen again at the next wait."""
        if conn is not self._conn:
            return
        log.warning("the LISTEN connection dropped; catching up from the tables and reconnecting")
        self._conn, self._started = None, None
        for _channel, _key, event in self._waiters:
            event.set()

    async def _listening(self) -> bool:
        """Whether a listening connection is up (connecting if it is time to try)."""
        if self._started is None:
            if time.monotonic() < self._retry_at:
                return False
            self._started = asyncio.ensure_future(self._start())
        if not self._started.done():
            try:
                await asyncio.shield(self._started)
            except Exception as exc:
                log.warning("cannot LISTEN for notifications (%s); polling until it can", exc)
                self._started, self._retry_at = None, time.monotonic() + RECONNECT_S
                return False
        if self._started.exception() is not None:
            self._started, self._retry_at = None, time.monotonic() + RECONNECT_S
            return False
        return self._conn is not None and not self._conn.is_closed()

    async def wait(self, channel: str, key: str | None, timeout: float) -> bool:
        """Until a notification on ``channel`` (for ``key``) arrives or ``timeout`` passes; True if one arrived.

        Also True when the listening connection dropped (notifications may have been lost: re-read).
        """
        if self.url is None:
            await asyncio.sleep(timeout)
            return False
        if not await self._listening():
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
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
