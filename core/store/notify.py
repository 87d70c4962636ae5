"""Wake-ups across processes: PostgreSQL LISTEN/NOTIFY, as hints. Every channel and every NOTIFY is here.

One dedicated connection listens; a notification wakes whoever waits on its
channel (and run). The tables stay the truth: a waiter always re-reads them,
and waits with a timeout, so a lost notification costs latency, never
correctness.

The listening connection can drop (a restarted server, a killed backend, a
network blip). Then every waiter is woken at once, to catch up from the
tables (notifications sent meanwhile are lost), and the next ``wait``
connects again; while the server cannot be reached, waits are plain sleeps
and a new connection is tried every ``RECONNECT_S``.

On SQLite the same notifications travel between the processes of one host as
datagrams (``core.store.wakes``), sent once the transaction that made them has
committed (``send_pending``); a process's event followers are woken at most
every ``EVENTS_GAP_S`` however fast a run commits.

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from core.config import sqlite_path
from core.store import wakes

log = logging.getLogger("loopdeck.notify")
EVENTS_CHANNEL = "loopdeck_events"  # "<run id> <last event id>" after events commit
COMMANDS_CHANNEL = "loopdeck_commands"  # "<run id>" when an action is queued for a run's driver
ANSWERS_CHANNEL = "loopdeck_answers"  # "<command id>" when the driver answered it
RUNS_CHANNEL = "loopdeck_runs"  # "<run id>" when a run becomes claimable (submitted, handed back)
CHANNELS = (EVENTS_CHANNEL, COMMANDS_CHANNEL, ANSWERS_CHANNEL, RUNS_CHANNEL)
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


_PENDING = "loopdeck_wakes"  # conn.info key: SQLite's notifications of the open transaction


def notify(conn: Connection, channel: str, payload: str) -> None:
    """NOTIFY on PostgreSQL (delivered when the transaction commits); on SQLite, kept for ``send_pending``."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"channel": channel, "payload": payload})
    else:
        conn.info.setdefault(_PENDING, []).append((channel, payload))


def send_pending(conn: Connection, committed: bool) -> None:
    """After a SQLite transaction: its notifications go out if it committed, and are dropped if not.

    A wake that cannot be sent is logged, never raised: the transaction has committed (its waiters poll)."""
    pending = conn.info.pop(_PENDING, None)
    if not pending or not committed:
        return
    try:
        directory = wakes.wake_dir(conn.engine.url.database)
        if directory is not None:
            wakes.send(directory, pending, EVENTS_CHANNEL)
    except Exception as exc:  # (said once: it may be every commit)
        log.log(logging.DEBUG if _unsent else logging.WARNING, "cannot wake the processes waiting (they poll): %s", exc)
        _unsent.append(exc)
        del _unsent[1:]


_unsent: list[Exception] = []  # the first wake that could not be sent, if any


RECONNECT_S = 2.0
EVENTS_GAP_S = 0.01  # the least time between two wakes of a process's event followers (SQLite's datagrams)


class Interest:
    """Notifications on one channel (for one key, or any) from when it was taken: one that comes while its
    holder re-reads the tables is kept for its next ``wait``, not lost (``Notifier.interest``)."""

    def __init__(self, notifier: Notifier, channel: str) -> None:
        self.notifier, self.channel = notifier, channel
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Until a notification has come since the last wait, or ``timeout`` passes; True if one came (or the
        listening connection dropped: re-read)."""
        if not self.event.is_set():
            if not await self.notifier.listen(self.channel):
                await asyncio.sleep(timeout)
                return False
            try:
                await asyncio.wait_for(self.event.wait(), timeout)
            except TimeoutError:
                return False
        self.event.clear()
        return True


class Notifier:
    def __init__(self, url: str | None, wake_dir: Path | None = None) -> None:
        self.url = url  # a PostgreSQL URL, or None (SQLite: wakes through ``wake_dir``, or none: waits are sleeps)
        self._wakes = wakes.Listener(wake_dir, self._delivered, EVENTS_GAP_S) if wake_dir is not None else None
        self._conn: Any = None
        self._started: asyncio.Task[None] | None = None
        self._retry_at = 0.0  # monotonic time before which no new connection is tried
        self._waiters: list[tuple[str, str | None, asyncio.Event]] = []
        self.connections = 0  # listening connections made (a reconnect adds one)

    @classmethod
    def for_url(cls, url: str) -> Notifier:
        """The notifier of a database: LISTEN on PostgreSQL, the file's wake sockets on SQLite."""
        if url.startswith("postgresql"):
            return cls(url)
        return cls(None, wakes.wake_dir(sqlite_path(url)))

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
        self._delivered(channel, payload)

    def _delivered(self, channel: str, payload: str) -> None:
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

    async def listen(self, channel: str | None = None) -> bool:
        """Listen now (for ``channel``: on SQLite, events have a socket of their own); whether notifications
        can arrive."""
        if self.url is not None:
            return await self._listening()
        if self._wakes is None:
            return False
        return self._wakes.bound(wakes.EVENTS if channel == EVENTS_CHANNEL else wakes.OTHERS)

    @contextlib.asynccontextmanager
    async def interest(self, channel: str, key: str | None) -> AsyncIterator[Interest]:
        """Take an interest in ``channel`` (for ``key``; None: any) until the block ends: take it before the
        first read of the tables it is about, and wait on it after each read (``Interest.wait``)."""
        await self.listen(channel)
        interest = Interest(self, channel)
        waiter = (channel, key, interest.event)
        self._waiters.append(waiter)
        try:
            yield interest
        finally:
            self._waiters.remove(waiter)

    async def wait(self, channel: str, key: str | None, timeout: float) -> bool:
        """Until a notification on ``channel`` (for ``key``) arrives or ``timeout`` passes; True if one arrived.

        Also True when the listening connection dropped (notifications may have been lost: re-read). One
        that comes between two waits is lost: a caller that reads in a loop holds an ``interest`` instead.
        """
        async with self.interest(channel, key) as interest:
            return await interest.wait(timeout)

    async def close(self) -> None:
        if self._wakes is not None:
            self._wakes.close()
        if self._started is not None and not self._started.done():
            self._started.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
