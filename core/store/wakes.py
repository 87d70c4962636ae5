"""Wake-ups across processes on one host, for SQLite: a Unix datagram socket per waiting process.

PostgreSQL carries LISTEN/NOTIFY (``core.store.notify``); SQLite has nothing
like it, so a process waiting on another slept its whole poll: a driver
waiting for commands 250 ms (`loopdeck approve` on a run driven in another
terminal took ~0.5 s), a dashboard following a run driven elsewhere 50 ms.
Now each process that waits binds a datagram socket in a directory of its
user's (mode 0700) named after the database file, and a commit that NOTIFYs on
PostgreSQL sends ``"<channel> <payload>"`` to the sockets there once it has
committed (a commit's events only to other processes: this one's followers
hear them on its event bus). As on PostgreSQL, a wake is a hint: the waiter
re-reads the tables and waits with a timeout, so a lost datagram (a process on
another host, a full buffer, a socket bound a moment late) costs one poll,
never correctness. A socket left by a killed process refuses datagrams; the
sender removes it.

Standard-library sockets are all this takes (no library offers a cross-process
wake for SQLite); where Unix sockets are missing, everything polls as before.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger("loopdeck.wakes")
MAX_PATH = 100  # AF_UNIX paths are limited to ~108 bytes
SUFFIX = ".sock"
_dirs: dict[str, Path | None] = {}


def wake_dir(database: str | os.PathLike[str] | None) -> Path | None:
    """The directory of the database file's wake sockets, inside one private to this user (the first socket
    bound there makes it, the last one closed removes it), or None when there is none to use: no file, no
    Unix sockets here, or a parent directory this user does not own alone."""
    if database is None or str(database) in ("", ":memory:"):
        return None
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):  # (Windows: no datagram Unix sockets)
        return None
    name = str(database)
    if name not in _dirs:  # (asked at every commit that has events: the real path is worked out once)
        _dirs[name] = _private_dir(os.path.realpath(name))
    return _dirs[name]


def _private_dir(realpath: str) -> Path | None:
    base = Path(tempfile.gettempdir()) / f"loopdeck-{os.getuid()}"
    directory = base / hashlib.sha256(realpath.encode()).hexdigest()[:16]
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        info = base.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:  # another user's, or open to others: not ours to use
            log.warning("not using %s for wake-ups (not private to this user); polling instead", base)
            return None
    except OSError as exc:
        log.warning("no wake-up directory (%s); polling instead", exc)
        return None
    return directory if len(str(directory)) + 32 < MAX_PATH else None


def send(directory: Path, messages: list[tuple[str, str]], events_only: bool = False) -> None:
    """Send every message to every process waiting on this database, after the commit that made them true.

    ``events_only`` (a commit's events: up to thousands of commits a second) sends to other processes
    only (this one's followers hear its events on its event bus), and reuses the last listing of the
    directory while the directory has not changed (a stat instead of a listing: 2 µs instead of 7)."""
    names = _waiting(directory, events_only)
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
            # (gone meanwhile, or its buffer full: that waiter polls)


RELIST_S = 1.0  # a listing is reused while the directory's mtime is unchanged, for this long at most
_listed: dict[Path, tuple[int, float, list[str]]] = {}  # directory -> (its mtime, when listed, others' sockets)


def _waiting(directory: Path, others_only: bool) -> list[str]:
    """The sockets waiting in ``directory`` (``others_only``: those of other processes, from a listing reused
    while the directory's mtime is unchanged, for ``RELIST_S`` at most: an mtime is as coarse as a tick)."""
    try:
        if not others_only:
            return [name for name in os.listdir(directory) if name.endswith(SUFFIX)]
        stamp, now = os.stat(directory).st_mtime_ns, time.monotonic()
        known = _listed.get(directory)
        if known is not None and known[0] == stamp and now - known[1] < RELIST_S:
            return known[2]
        mine = f"{os.getpid()}-"
        names = [name for name in os.listdir(directory) if name.endswith(SUFFIX) and not name.startswith(mine)]
    except OSError:
        return []
    _listed[directory] = (stamp, now, names)
    return names


_sending: socket.socket | None = None


def _sender() -> socket.socket:
    """One unbound socket to send from, for the process (sends come from the loop and the writer's thread)."""
    global _sending
    if _sending is None:
        _sending = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        _sending.setblocking(False)
    return _sending


class WakeSocket:
    """This process's socket in a database's wake directory: bound on creation, removed at ``close``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        directory.mkdir(mode=0o700, exist_ok=True)  # (the last process to leave removed it)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind(str(self.path))
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
            except (BlockingIOError, InterruptedError):
                return found
            except OSError:
                return found
            for line in data.decode(errors="replace").splitlines():
                channel, _, payload = line.partition(" ")
                found.append((channel, payload))

    def close(self) -> None:
        """Close and remove the socket, and the directory if it was the last (no file left per database)."""
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):  # (not empty: another process waits there)
            self.path.parent.rmdir()
