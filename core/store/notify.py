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
    """After a SQLite transaction: its notifications go out if it committed, and are dropped if not."""
    pending = conn.info.pop(_PENDING, None)
    if pending and committed:
        directory = wakes.wake_dir(conn.engine.url.database)
        if directory is not None:
            wakes.send(directory, pending, events_only=all(channel == EVENTS_CHANNEL for channel, _ in pending))


RECONNECT_S = 2.0
EVENTS_GAP_S = 0.01  # the least time between two wakes of a process's event followers (SQLite's datagrams)


class Notifier:
    def __init__(self, url: str | None, wake_dir: Path | None = None) -> None:
        self.url = url  # a PostgreSQL URL, or None (SQLite: wakes through ``wake_dir``, or none: waits are sleeps)
        self._wake_dir = wake_dir
        self._socket: wakes.WakeSocket | None = None
        self._socket_loop: asyncio.AbstractEventLoop | None = None
        self._events_due: dict[str, str] = {}  # run id -> its newest events' wake, not yet delivered
        self._events_timer: asyncio.TimerHandle | None = None
        self._events_woken_at = float("-inf")  # (the socket's loop's clock)
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

    def _bound(self) -> bool:
        """Whether this process's wake socket is bound and read by the running loop (binding it if not)."""
        if self._wake_dir is None:
            return False
        loop = asyncio.get_running_loop()
        if self._socket is not None and self._socket_loop is loop:
            return True
        self._unbind()
        try:
            self._socket = wakes.WakeSocket(self._wake_dir)
        except OSError as exc:
            log.warning("cannot bind a wake-up socket (%s); polling instead", exc)
            self._wake_dir = None
            return False
        loop.add_reader(self._socket.fileno(), self._woken)
        self._socket_loop = loop
        return True

    def _woken(self) -> None:
        """Datagrams arrived: wake their waiters; events' wakes at most every ``EVENTS_GAP_S`` (a run commits
        up to thousands of groups a second, and each wake makes its followers read the store again)."""
        if self._socket is None:
            return
        for channel, payload in self._socket.received():
            if channel == EVENTS_CHANNEL:
                self._events_due[payload.split(" ", 1)[0]] = payload
            else:
                self._received(None, 0, channel, payload)
        if self._events_due and self._events_timer is None:
            assert self._socket_loop is not None
            at = max(self._socket_loop.time(), self._events_woken_at + EVENTS_GAP_S)
            self._events_timer = self._socket_loop.call_at(at, self._wake_for_events)

    def _wake_for_events(self) -> None:
        due, self._events_due, self._events_timer = self._events_due, {}, None
        self._events_woken_at = self._socket_loop.time() if self._socket_loop is not None else 0.0
        for payload in due.values():
            self._received(None, 0, EVENTS_CHANNEL, payload)

    def _unbind(self) -> None:
        if self._events_timer is not None:
            self._events_timer.cancel()
            self._events_timer, self._events_due = None, {}
        sock, loop, self._socket, self._socket_loop = self._socket, self._socket_loop, None, None
        if sock is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
            sock.close()

    async def listen(self) -> bool:
        """Start listening now, so that nothing sent from here on is missed; whether notifications can arrive.

        A sender calls it before it queues a command, so that the answer cannot come before it listens."""
        if self.url is None:
            return self._bound()
        return await self._listening()

    async def wait(self, channel: str, key: str | None, timeout: float) -> bool:
        """Until a notification on ``channel`` (for ``key``) arrives or ``timeout`` passes; True if one arrived.

        Also True when the listening connection dropped (notifications may have been lost: re-read).
        """
        if not await self.listen():
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
        self._unbind()
        if self._started is not None and not self._started.done():
            self._started.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
