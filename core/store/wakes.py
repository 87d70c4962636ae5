"""Wake-ups across processes on one host, for SQLite: a Unix datagram socket per waiting process.

PostgreSQL carries LISTEN/NOTIFY (``core.store.notify``); SQLite has nothing
like it, so a process waiting for a command's answer, or a driver waiting for
commands, slept its whole poll (50-250 ms): `loopdeck approve` on a run driven
in another terminal took ~0.5 s. Now each process that waits binds a datagram
socket in a directory of its user's (mode 0700) named after the database file,
and a commit that NOTIFYs on PostgreSQL sends ``"<channel> <payload>"`` to
every socket there once it has committed. As on PostgreSQL, a wake is a hint:
the waiter re-reads the tables and waits with a timeout, so a lost datagram (a
process on another host, a full buffer, a socket bound a moment late) costs
one poll, never correctness. A socket left by a killed process refuses
datagrams; the sender removes it.

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
    key = os.path.realpath(database)
    if key not in _dirs:
        _dirs[key] = _private_dir(key)
    return _dirs[key]


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


def send(directory: Path, messages: list[tuple[str, str]]) -> None:
    """Send every message to every process waiting on this database (after the commit that made them true)."""
    data = "\n".join(f"{channel} {payload}" for channel, payload in messages).encode()
    try:
        names = [name for name in os.listdir(directory) if name.endswith(SUFFIX)]
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for name in names:
            path = directory / name
            try:
                sender.sendto(data, str(path))
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED:  # nobody bound it: a killed process's; tidy it away
                    with contextlib.suppress(OSError):
                        path.unlink()
                # (gone meanwhile, or its buffer full: that waiter polls)


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
