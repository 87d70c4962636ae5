"""A worker: a long-running process that claims runs nobody drives and drives them.

Many workers on many machines share one database, the way Prefect, Airflow
and Temporal scale: the database is the coordinator. A worker claims up to
its free slots at a time (``FOR UPDATE SKIP LOCKED``, so workers never queue
on the same rows), drives each claimed run with its lease renewed by the
run's heartbeat, and wakes on NOTIFY when a run is submitted or handed back
(else it polls). A run whose worker went silent is orphaned when its lease
expires and another worker takes it over: completed steps stay completed;
a step that was running is retried with its attempt counted.

A run a worker cannot drive (its stored plan refused by this loopdeck, written
by a newer one or damaged; the database failing) is left to others for a while,
1 s after the first failure, doubling up to ``RETRY_MAX_S``: claimed again at
once, one such run took a worker's whole attention (hundreds of claims a
second, each one a note). The note says when it is tried again.

Shutdown (SIGTERM, or ``stop``): claim nothing more, let running steps finish
for up to ``grace_s``, then hand every run back (its lease released, so
another worker continues at once). The final writes are shielded from
cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import LoopdeckError
from core.orchestrator import Orchestrator
from core.store import RUNS_CHANNEL, Interest, WriteBatch

log = logging.getLogger("loopdeck.worker")

RETRY_FIRST_S = 1.0  # a run this worker could not drive is left alone this long after its first failure,
RETRY_MAX_S = 300.0  # doubling after each next one up to this
SKIPPED_MAX = 1_000  # runs a claim leaves out at most (those waiting longest); the rest may be claimed early


@dataclass
class WorkerStats:
    claimed: int = 0
    finished: dict[str, int] = field(default_factory=dict)  # final status -> runs
    handed_back: int = 0


class Worker:
    def __init__(
        self,
        orch: Orchestrator,
        *,
        name: str | None = None,
        max_runs: int = 4,
        poll_s: float = 1.0,
        grace_s: float = 30.0,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        if max_runs < 1:
            raise ValueError("a worker drives at least one run at a time")
        self.orch = orch
        orch.shared_slots = True  # agent limits hold across every worker on the database (SQLite ones too)
        self.name = name or f"{socket.gethostname()}-{orch.identity.pid}"
        self.max_runs = max_runs
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.note = on_note or (lambda _msg: None)
        self.stats = WorkerStats()
        self._drives: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._failing: dict[str, tuple[float, float]] = {}  # run -> (claimed again from, the last wait): monotonic

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler)."""
        self._stopping.set()

    async def run(self) -> WorkerStats:
        """Claim and drive runs until ``stop``; then drain and hand back what is left."""
        ident = self.orch.identity
        await self.orch.store.register_worker(ident.owner, self.name, ident.host, ident.pid)
        heartbeat = asyncio.create_task(self._heartbeat(), name="worker-heartbeat")
        self.note(f"worker {self.name} started (up to {self.max_runs} runs at a time)")
        try:
            async with self.orch.notifier.interest(RUNS_CHANNEL, None) as claimable:  # (one mid-claim is kept)
                while not self._stopping.is_set():
                    free = self.max_runs - len(self._drives)
                    if free > 0 and await self._claim(free):
                        continue  # claimed some: look again at once, more may be waiting
                    await self._sleep(claimable)
        finally:
            await asyncio.shield(self._shutdown(heartbeat))
        return self.stats

    async def _claim(self, free: int) -> bool:
        ident = self.orch.identity
        try:
            run_ids = await self.orch.store.claim_runs(
                ident.owner, ident.host, ident.pid, self.orch.lease_ttl_s, free, skip=self._left_alone()
            )
        except LoopdeckError as exc:
            self.note(f"cannot claim runs: {exc}")
            return False
        for run_id in run_ids:
            self.stats.claimed += 1
            self._drives[run_id] = asyncio.create_task(self._drive(run_id), name=f"drive-{run_id}")
        return bool(run_ids) and len(run_ids) == free

    async def _sleep(self, claimable: Interest) -> None:
        """Until a run is submitted or handed back (NOTIFY), a drive ends, a stop, or the poll interval."""
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(claimable.wait(self.poll_s)),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        if self._drives:
            waits.append(
                asyncio.ensure_future(asyncio.wait(list(self._drives.values()), return_when=asyncio.FIRST_COMPLETED))
            )  # a slot frees
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _left_alone(self) -> list[str]:
        """The runs this worker failed to drive whose wait is not over (a wait long over is forgotten)."""
        now = time.monotonic()
        for run_id, (until, _) in list(self._failing.items()):
            if until + RETRY_MAX_S < now:
                del self._failing[run_id]
        waiting = sorted(((until, run_id) for run_id, (until, _) in self._failing.items() if until > now), reverse=True)
        return [run_id for _, run_id in waiting[:SKIPPED_MAX]]  # (a claim's parameters are bounded)

    def _failed(self, run_id: str, why: str) -> None:
        """The drive stopped on an error: the run is left to other workers for a while, longer each time."""
        _, last = self._failing.get(run_id, (0.0, 0.0))
        wait = min(RETRY_MAX_S, last * 2) if last else RETRY_FIRST_S
        self._failing[run_id] = (time.monotonic() + wait, wait)
        self.note(f"run {run_id} stopped here, tried again by this worker in {wait:g} s: {why}")

    async def _drive(self, run_id: str) -> None:
        try:
            status = await self.orch.drive(run_id, claimed=True)
        except LoopdeckError as exc:
            self._failed(run_id, str(exc))
            return
        except Exception as exc:
            log.error("run %s: unexpected error: %s: %s", run_id, type(exc).__name__, exc, exc_info=exc)
            self._failed(run_id, f"unexpected error: {type(exc).__name__}: {exc}")
            return
        except asyncio.CancelledError:
            self.stats.handed_back += 1
            self.note(f"run {run_id} handed back after the grace period")
            raise
        finally:
            self._drives.pop(run_id, None)
        self._failing.pop(run_id, None)
        if status.terminal:
            self.stats.finished[status.value] = self.stats.finished.get(status.value, 0) + 1
            self.note(f"run {run_id} ended {status.value}")
        else:
            self.stats.handed_back += 1
            self.note(f"run {run_id} handed back ({status.value})")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.orch.lease_ttl_s / 3)
            try:
                await self.orch.store.write(
                    WriteBatch(extras=[self.orch.store.worker_heartbeat_extra(self.orch.identity.owner)])
                )
            except Exception as exc:
                self.note(f"worker heartbeat failed: {exc}")

    async def _shutdown(self, heartbeat: asyncio.Task[None]) -> None:
        drives = list(self._drives.values())
        if drives:
            self.note(
                f"stopping: {len(drives)} run(s) finish their running steps (up to {self.grace_s:g}s), "
                "then are handed back"
            )
            self.orch.drain()
            _, late = await asyncio.wait(drives, timeout=self.grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*drives, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        try:
            await self.orch.store.write(
                WriteBatch(extras=[self.orch.store.worker_heartbeat_extra(self.orch.identity.owner, stopped=True)])
            )
        except LoopdeckError as exc:
            self.note(f"could not record the worker's stop: {exc}")
        done = ", ".join(f"{n} {s}" for s, n in sorted(self.stats.finished.items())) or "none finished"
        self.note(
            f"worker {self.name} stopped: {self.stats.claimed} claimed, {done}, {self.stats.handed_back} handed back"
        )
