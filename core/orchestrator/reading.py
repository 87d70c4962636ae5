"""Reading runs back: typed records, the JSON views of ``views.py``, events followed live."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from core import views
from core.cluster.lease import describe_driver, holder_state
from core.engine.bus import Subscription
from core.errors import StepNotFound
from core.export import otlp_json
from core.model.events import Event, Gap
from core.model.result import RunResult
from core.orchestrator.base import OrchestratorBase
from core.store import (
    EVENTS_CHANNEL,
    Interest,
    RunRecord,
    SpanRecord,
    StepRecord,
    ToolCallRecord,
    WorkerRecord,
)

FOLLOW_POLL_S = 0.5  # how often ``follow`` re-reads the store when nothing wakes it


class Reading(OrchestratorBase):
    """Reads for the front ends: typed records, JSON views, and events followed live without gaps."""

    async def resolve_run_id(self, run_id: str) -> str:
        return await self.store.resolve_run_id(run_id)

    async def run(self, run_id: str, *, plan: bool = True) -> RunRecord:
        return await self.store.get_run(await self.store.resolve_run_id(run_id), plan=plan)

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self.store.get_steps(run_id)

    async def events_since(self, run_id: str | None, after_id: int = 0, limit: int = 10_000) -> list[Event]:
        return await self.store.events_since(run_id, after_id, limit)

    async def event_count(self, run_id: str) -> int:
        return await self.store.event_count(await self.store.resolve_run_id(run_id))

    async def spans(self, run_id: str) -> list[SpanRecord]:
        return await self.store.spans_of(run_id)

    async def workers(self) -> list[WorkerRecord]:
        return await self.store.list_workers()

    async def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Runs, newest first, with step progress: JSON-ready."""
        records = await self.store.list_runs(limit)
        ids = [r.id for r in records]
        counts, waiting = await self.store.step_counts(ids), await self.store.waiting_of(ids)
        return views.listing(records, counts, {r.id: self.driver_of(r) for r in records}, waiting)

    async def snapshot(self, run_id: str, *, events: bool = True, spans: bool = True) -> dict[str, Any]:
        """The ``show --json`` object: run, steps and events (without ``events`` or ``spans`` when not asked
        for: the dashboard shows no spans)."""
        snap, events_ = await self._snapshot(run_id, events, spans)
        if events_ is not None:
            snap["events"] = [e.to_json() for e in events_]
        return snap

    async def snapshot_and_events(self, run_id: str) -> tuple[dict[str, Any], list[Event]]:
        """The snapshot without spans or events, and the run's events as they were read with it, as records:
        what the dashboard folds into its view (a 20,000-step run's 40,000 events made text and read back
        took ~0.2 s of its opening)."""
        snap, events = await self._snapshot(run_id, True, False)
        assert events is not None
        return snap, events

    async def _snapshot(self, run_id: str, events: bool, spans: bool) -> tuple[dict[str, Any], list[Event] | None]:
        run_id = await self.store.resolve_run_id(run_id)
        s = self.store
        run, steps, spans_, events_, calls, children, feedback, agents = await self._together(
            s.get_run(run_id),
            s.get_steps(run_id),
            s.spans_of(run_id) if spans else _nothing(),
            s.events_since(run_id, 0, limit=1_000_000) if events else _nothing(),
            s.calls_of(run_id),
            s.children_of(run_id),
            s.feedback_of(run_id),
            s.agent_summary(run_id),
        )
        snap = views.snapshot(run, steps, spans_, feedback, agents, None, calls, children, self.driver_of(run))
        return snap, events_

    async def _together(self, *reads: Awaitable[Any]) -> list[Any]:
        """Reads at once on SQLite, on the store's reader threads (a 20,000-step run's snapshot, read one part
        after another, took 0.6 s); one after another on PostgreSQL, where each would hold a pooled
        connection (a dashboard per browser tab, each holding eight)."""
        if self.store.dialect == "sqlite":
            return list(await asyncio.gather(*reads))
        done: list[Any] = []
        try:
            for read in reads:
                done.append(await read)
        finally:
            for left in reads[len(done) + 1 :]:
                if inspect.iscoroutine(left):
                    left.close()  # (never awaited once one failed: closed, not warned about)
        return done

    def driver_of(self, run: RunRecord) -> dict[str, Any] | None:
        """Who drives the run (``run.driver``): alive, gone (its lease expired or its process died) or none; None
        once it ended (no process is asked after: the runs list asks of every run it shows, every second)."""
        if run.status.terminal:
            return None
        live = {*self._live_owners(), self.identity.owner}  # (a run created holding its lease is ours already)
        return describe_driver(run.lease, holder_state(run.lease, self.identity, time.time(), live))

    async def driver(self, run_id: str) -> dict[str, Any] | None:
        """``driver_of`` read afresh (the dashboard asks every second whether its run's driver is still there)."""
        return self.driver_of(await self.store.get_run(await self.store.resolve_run_id(run_id), plan=False))

    async def children(self, run_id: str) -> list[dict[str, Any]]:
        """The child runs of a run's sub_agent steps (``run.children`` of ``show --json``), oldest first."""
        run_id = await self.store.resolve_run_id(run_id)
        return [views.child_json(c) for c in await self.store.children_of(run_id)]

    async def tool_calls(self, run_id: str) -> list[ToolCallRecord]:
        """A run's tool calls, in the order they were asked for (``loopdeck calls``)."""
        run_id = await self.store.resolve_run_id(run_id)
        return await self.store.calls_of(run_id)

    async def result(self, run_id: str) -> RunResult | None:
        """The run's result (answer, summary, evidence) once it ended; None while it is live."""
        run_id = await self.store.resolve_run_id(run_id)
        run = await self.store.get_run(run_id)
        return views.result_of(run, await self.store.get_steps(run_id))

    async def step_context(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """The context the step gets (or got) from its dependencies' outputs, per the run's policy."""
        run_id = await self.store.resolve_run_id(run_id)
        outline = await self.store.plan_outline(run_id)
        depends_on = outline.depends_on.get(key)
        if depends_on is None:
            if await self.store.get_step(run_id, key) is None:
                raise StepNotFound(run_id, key, list(outline.depends_on))
            depends_on = ()  # (a damaged stored plan does not list it: no dependency known)
        return views.step_context(outline.policy, depends_on, await self.store.get_steps(run_id, depends_on))

    async def agents(self) -> dict[str, dict[str, Any]]:
        """Every agent that ran, across runs: attempts, failures, tokens, feedback."""
        return await self.store.agent_summary(None)

    async def export_otlp(self, run_id: str) -> dict[str, Any]:
        run_id = await self.store.resolve_run_id(run_id)
        return otlp_json(await self.store.get_run(run_id, plan=False), await self.store.spans_of(run_id))

    # -- following ---------------------------------------------------------------------------

    async def wait_for_events(self, run_id: str | None, timeout: float) -> bool:
        """Until events of the run are committed — by this process (its event bus: a dashboard driving its run
        hears at once) or another (NOTIFY, or a datagram on SQLite) — or ``timeout``: a hint to re-read the
        store. One committed while the caller reads is missed: a loop that reads holds ``events_coming``."""
        async with self.events_coming(run_id) as coming:
            return await coming.wait(timeout)

    @contextlib.asynccontextmanager
    async def events_coming(self, run_id: str | None) -> AsyncIterator[EventsComing]:
        """Events of the run committed from now on, by this process or another, for a reader that re-reads
        the store between waits (the dashboard's feed): take it before the first read, wait on it after each."""
        doorbell = self.bus.subscribe(run_id, maxsize=1)  # (only whether something came: a Gap will do)
        try:
            async with self.notifier.interest(EVENTS_CHANNEL, run_id) as committed:
                yield EventsComing(doorbell, committed)
        finally:
            doorbell.close()

    def subscribe(self, run_id: str | None = None, maxsize: int | None = None) -> Subscription:
        """Live events of runs driven in this process (see ``follow`` for a gap-free stream)."""
        return self.bus.subscribe(run_id, maxsize)

    async def follow(self, run_id: str | None, since_id: int = 0, maxsize: int | None = None) -> AsyncIterator[Event]:
        """Every event after ``since_id``, then live ones, in id order, with no gaps or repeats.

        Reads the store first and whenever the subscription reports a ``Gap`` (or
        another process may have written), so a slow reader catches up from the
        database instead of slowing the run.
        """
        sub = self.bus.subscribe(run_id, maxsize)
        last = since_id
        try:
            async with self.notifier.interest(EVENTS_CHANNEL, run_id) as committed:  # (kept while it reads)
                while True:
                    for event in await self.store.events_since(run_id, last):
                        last = event.id
                        yield event
                    while True:
                        item = await _next(sub, committed, FOLLOW_POLL_S)
                        if not isinstance(item, Event):
                            break  # a Gap, or another process may have written: read what the store has
                        if item.id > last:
                            last = item.id
                            yield item
        finally:
            sub.close()


class EventsComing:
    """Whether events came since the last wait: published here (the doorbell) or committed elsewhere."""

    def __init__(self, doorbell: Subscription, committed: Interest) -> None:
        self.doorbell, self.committed = doorbell, committed

    async def wait(self, timeout: float) -> bool:
        """Until events come (or came since the last wait), or ``timeout``: True if they did."""
        if self.doorbell.get_nowait():
            self.committed.event.clear()  # (the store is read next: that covers both)
            return True
        return await _next(self.doorbell, self.committed, timeout) is not False


async def _next(sub: Subscription, committed: Interest, timeout: float) -> Event | Gap | bool:
    """The next event published here; else whether another process committed some (the interest's wait:
    True) before ``timeout`` (False)."""
    local = asyncio.ensure_future(sub.get())
    remote = asyncio.ensure_future(committed.wait(timeout))
    try:
        done, _ = await asyncio.wait({local, remote}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # (the reader left, or one came first: the other wait must not outlive it and fail unheard)
        for waiting in (local, remote):
            waiting.cancel()
    return local.result() if local in done else remote.result()


async def _nothing() -> None:
    """A part of a snapshot not asked for."""
    return None
