"""Wake-ups across processes on one host, for SQLite: Unix datagram sockets, per waiting process.

PostgreSQL carries LISTEN/NOTIFY (``core.store.notify``); SQLite has nothing
like it, so a process waiting on another slept its whole poll: a driver
waiting for commands 250 ms (`loopdeck approve` on a run driven in another
terminal took ~0.5 s), a dashboard following a run driven elsewhere 50 ms.
Now a process that waits binds a datagram socket in a directory of its user's
(mode 0700) named after the database file, and a commit that NOTIFYs on
PostgreSQL sends ``"<channel> <payload>"`` there once it has committed.

Two kinds of socket keep the traffic apart: ``.cmd.sock`` for commands, their
answers and claimable runs (rare), bound by whoever waits on those, and
``.ev.sock`` for events (a commit's, up to thousands a second), bound only by
a process that follows runs, and sent only from other processes (a process's
own followers hear its events on its event bus). A flood of events therefore
never reaches a driver, nor fills the queue a command's wake waits in; a
follower's event wakes are coalesced (``Listener``).

As on PostgreSQL, a wake is a hint: the waiter re-reads the tables and waits
with a timeout, so a lost datagram (a process on another host, a full buffer,
a socket bound a moment late) costs one poll, never correctness. A socket left
by a killed process refuses datagrams; the sender removes it. Standard-library
sockets are all this takes (no library offers a cross-process wake for
SQLite); where Unix sockets are missing, everything polls as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("loopdeck.wakes")
EVENTS = "ev"  # the socket kind of event followers
OTHERS = "cmd"  # the socket kind of everything else: commands, answers, claimable runs
MAX_PATH = 100  # AF_UNIX paths are limited to ~108 bytes
RELIST_S = 1.0  # an event sender reuses its listing of a directory while unchanged, for this long at most
REBIND_S = 2.0  # after a failed bind, how long a listener polls before it tries again
_dirs: dict[str, Path | None] = {}


def wake_dir(database: str | os.PathLike[str] | None) -> Path | None:
    """The directory of the database file's wake sockets, inside one private to this user (the first socket
    bound there makes it, the last one closed removes it), or None when there is none to use: no file, no
    Unix sockets here, or no temporary directory this user alone owns. Never raises."""
    if database is None or str(database) in ("", ":memory:"):
        return None
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):  # (Windows: no datagram Unix sockets)
        return None
    name = str(database)
    if name not in _dirs:  # (asked at every commit that has events: the real path is worked out once)
        _dirs[name] = _private_dir(name)
    return _dirs[name]


def _private_dir(database: str) -> Path | None:
    try:
        base = Path(tempfile.gettempdir()) / f"loopdeck-{os.getuid()}"
        with contextlib.suppress(FileExistsError):
            base.mkdir(mode=0o700)
        info = os.lstat(base)  # (not followed: a link planted by another user is refused, not used)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.warning("not using %s for wake-ups (not a directory private to this user); polling instead", base)
            return None
        directory = base / hashlib.sha256(os.path.realpath(database).encode()).hexdigest()[:16]
    except OSError as exc:
        log.warning("no wake-up directory (%s); polling instead", exc)
        return None
    return directory if len(str(directory)) + 40 < MAX_PATH else None


# -- sending ------------------------------------------------------------------------------------


def send(directory: Path, messages: list[tuple[str, str]], events_channel: str) -> None:
    """Send each message to the processes waiting for it on this database, after the commit that made it
    true: events to other processes' event sockets, the rest to every process's other socket."""
    events = [m for m in messages if m[0] == events_channel]
    others = [m for m in messages if m[0] != events_channel]
    if events:
        _send_to(directory, _waiting(directory, EVENTS), events)
    if others:
        _send_to(directory, _waiting(directory, OTHERS), others)


def _send_to(directory: Path, names: list[str], messages: list[tuple[str, str]]) -> None:
    if not names:
        return
    data = "\n".join(f"{channel} {payload}" for channel, payload in messages).encode()
    sender = _sender()
    for name in names:
        path = os.path.join(directory, name)
        try:
            sender.sendto(data, path)
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:  # nobody bound it: a killed process's; tidy it away
                with contextlib.suppress(OSError):
                    os.unlink(path)
                _listed.pop(directory, None)
            # (gone meanwhile, or its queue full: that waiter polls)


_listed: dict[Path, tuple[int, float, list[str]]] = {}  # directory -> (its mtime, when listed, event sockets)


def _waiting(directory: Path, kind: str) -> list[str]:
    """The sockets of ``kind`` waiting in ``directory``: every process's for ``OTHERS``; other processes'
    for ``EVENTS``, from a listing reused while the directory's mtime is unchanged, for ``RELIST_S`` at
    most (a stat instead of a listing: 2 µs instead of 7 a commit; an mtime is as coarse as a tick)."""
    suffix = f".{kind}.sock"
    try:
        if kind != EVENTS:
            return [name for name in os.listdir(directory) if name.endswith(suffix)]
        stamp, now = os.stat(directory).st_mtime_ns, time.monotonic()
        known = _listed.get(directory)
        if known is not None and known[0] == stamp and now - known[1] < RELIST_S:
            return known[2]
        mine = f"{os.getpid()}-"
        names = [name for name in os.listdir(directory) if name.endswith(suffix) and not name.startswith(mine)]
    except OSError:
        return []
    _listed[directory] = (stamp, now, names)
    return names


_sending: socket.socket | None = None
_sending_lock = threading.Lock()


def _sender() -> socket.socket:
    """One unbound socket to send from, for the process (sends come from the loop and the writer's thread)."""
    global _sending
    with _sending_lock:
        if _sending is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            _sending = sock
        return _sending


# -- receiving ----------------------------------------------------------------------------------


class WakeSocket:
    """This process's socket of ``kind`` in a database's wake directory: bound on creation, removed at
    ``close`` (with the directory, when it was the last)."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}.{kind}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            for attempt in range(3):  # the last process to leave may remove the directory between the two
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)
                try:
                    self.sock.bind(str(self.path))
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def received(self) -> list[tuple[str, str]]:
        """Every ``(channel, payload)`` waiting in the socket."""
        found: list[tuple[str, str]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:  # (nothing more: BlockingIOError)
                return found
            for line in data.decode(errors="replace").splitlines():
                channel, _, payload = line.partition(" ")
                found.append((channel, payload))

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):  # (not empty: another process waits there)
            self.path.parent.rmdir()


class Listener:
    """A process's wake sockets on one database, bound on the running loop as waiters need them, their
    datagrams handed to ``deliver(channel, payload)``; events at most every ``events_gap_s`` (each wake
    makes a follower read the store again, and a run may commit thousands of times a second)."""

    def __init__(self, directory: Path, deliver: Callable[[str, str], None], events_gap_s: float) -> None:
        self.directory = directory
        self.deliver = deliver
        self.events_gap_s = events_gap_s
        self._sockets: dict[str, WakeSocket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry_at = 0.0  # (monotonic) after a failed bind, polling until then
        self._events_due: dict[str, tuple[str, str]] = {}  # run id -> its newest event wake, not delivered
        self._events_timer: asyncio.TimerHandle | None = None
        self._events_woken_at = float("-inf")  # (the loop's clock)

    def bound(self, kind: str) -> bool:
        """Whether the socket of ``kind`` is bound and read by the running loop (binding it if not)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.close()
            self._loop = loop
        if kind in self._sockets:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            sock = WakeSocket(self.directory, kind)
        except OSError as exc:
            log.warning("cannot bind a wake-up socket in %s (%s); polling for now", self.directory, exc)
            self._retry_at = time.monotonic() + REBIND_S
            return False
        self._sockets[kind] = sock
        loop.add_reader(sock.fileno(), self._readable, sock, kind)
        return True

    def _readable(self, sock: WakeSocket, kind: str) -> None:
        for channel, payload in sock.received():
            if kind == EVENTS:
                self._events_due[payload.split(" ", 1)[0]] = (channel, payload)
            else:
                self.deliver(channel, payload)
        if self._events_due and self._events_timer is None and self._loop is not None:
            at = max(self._loop.time(), self._events_woken_at + self.events_gap_s)
            self._events_timer = self._loop.call_at(at, self._deliver_events)

    def _deliver_events(self) -> None:
        due, self._events_due, self._events_timer = self._events_due, {}, None
        self._events_woken_at = self._loop.time() if self._loop is not None else 0.0
        for channel, payload in due.values():
            self.deliver(channel, payload)

    def close(self) -> None:
        """Stop reading, remove the sockets (a new loop binds its own)."""
        if self._events_timer is not None:
            self._events_timer.cancel()
        self._events_timer, self._events_due = None, {}
        loop, self._loop = self._loop, None
        for sock in self._sockets.values():
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
