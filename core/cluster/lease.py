"""Run leases: exactly one process drives a run.

A lease names its holder (a random owner token, the host and the pid) and an
expiry renewed by a heartbeat. On the same host we can ask the OS whether the
holder lives, so a crashed driver is taken over at once and a live one is never
displaced; for a holder on another host we wait for the lease to expire.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.locations import DEFAULT_LEASE_S, plain_setting
from core.model.events import iso
from core.store.records import Lease


def default_ttl_s() -> float:
    """Seconds a lease lasts unless renewed: ``LOOPDECK_LEASE_S``, else 15 (read when a process opens)."""
    known, value = plain_setting("lease_s")
    if known and value is None:
        return DEFAULT_LEASE_S
    from core.settings import load_settings  # a value given: the settings check it

    return load_settings().lease_s


class Holder(StrEnum):
    FREE = "free"  # nobody holds it
    DEAD = "dead"  # the holder ran on this host and its process is gone
    EXPIRED = "expired"  # held elsewhere, but not renewed in time
    ALIVE_HERE = "alive_here"  # a live process on this host holds it
    ALIVE_ELSEWHERE = "alive_elsewhere"  # another host holds it and renews it


@dataclass(frozen=True)
class Identity:
    """Who this process is, as written into the leases it takes."""

    owner: str = field(default_factory=lambda: secrets.token_hex(8))
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def holder_state(lease: Lease | None, me: Identity, now: float, live_owners: set[str]) -> Holder:
    """Classify the current holder of a run's lease, seen from process ``me``."""
    if lease is None:
        return Holder.FREE
    if lease.host == me.host:
        pid = lease.pid or 0
        if pid == me.pid:  # an earlier driver in this very process
            return Holder.ALIVE_HERE if lease.owner in live_owners else Holder.DEAD
        return Holder.ALIVE_HERE if pid_alive(pid) else Holder.DEAD
    if (lease.until or 0) < now:
        return Holder.EXPIRED
    return Holder.ALIVE_ELSEWHERE


def describe_driver(lease: Lease | None, holder: Holder) -> dict[str, Any]:
    """Who drives a live run, for people and tools (``run.driver`` in ``show --json``, ``runs --json``).

    ``state``: ``alive`` (a process holds its lease), ``gone`` (the holder died
    or stopped renewing), ``none`` (nobody holds it: stopped, or queued for a
    worker); ``text`` says it in a line.
    """
    where = {"host": lease.host, "pid": lease.pid, "expires_at": iso(lease.until)} if lease else {}
    if holder in (Holder.ALIVE_HERE, Holder.ALIVE_ELSEWHERE) and lease is not None:
        return {"state": "alive", **where, "text": f"driven by pid {lease.pid} on host {lease.host}"}
    if lease is None:
        return {"state": "none", "text": "no driver — no process holds its lease (loopdeck resume, or a worker)"}
    at = time.strftime("%H:%M:%S UTC", time.gmtime(lease.until or 0))
    if holder == Holder.DEAD:
        gone = "stopped" if lease.pid == os.getpid() else "has exited"  # (this process: its driver stopped)
        how = f"pid {lease.pid} on host {lease.host} {gone}"
    else:
        how = f"lease expired at {at}, pid {lease.pid} on host {lease.host}"
    return {"state": "gone", **where, "text": f"driver gone — {how}"}
