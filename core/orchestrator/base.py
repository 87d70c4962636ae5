"""The orchestrator's shared state: store, bus, identity, the controllers driving runs here.

Every part of the facade (``acting``, ``driving``, ``reading``) builds on it.
"""

from __future__ import annotations

import getpass
import secrets
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from core.cluster.commands import CommandChannel
from core.cluster.lease import Identity, default_ttl_s
from core.config import configured
from core.engine.breaker import BreakerBoard
from core.engine.bus import EventBus
from core.errors import PlanError, StepNotFound
from core.model.events import Event
from core.notifications import Notifications
from core.store import (
    Notifier,
    RunRecord,
    StepRecord,
    Store,
    WriteBatch,
)
from core.telemetry import LiveTraces

if TYPE_CHECKING:  # the engine and the plan's models load when a run is driven or decided on, not for a listing
    from core.engine.controller import RunController
    from core.engine.known_plans import KnownPlans
    from core.engine.run_state import RunState


class Delivery(StrEnum):
    """Where an operator action was carried out."""

    LIVE = "live"  # by the controller driving the run in this process
    REMOTE = "remote"  # by the process driving the run, through the command channel
    OFFLINE = "offline"  # in the store: nobody drives the run; the next driver (resume, a worker) carries on


def default_user() -> str:
    """``LOOPDECK_USER``, else the configuration's ``user``, else the login name (``--user`` wins over all)."""
    user = configured("user")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:
        return "operator"


def new_run_id(now: float) -> str:
    """Sortable and short enough to type: ``20261124-031502-3fa9c1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


class OrchestratorBase:
    """What every part of the orchestrator shares: the store, the bus, this process's identity, its controllers."""

    def __init__(
        self,
        store: Store,
        bus: EventBus | None = None,
        *,
        user: str | None = None,
        identity: Identity | None = None,
        lease_ttl_s: float | None = None,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        run_ids: Callable[[float], str] | None = None,
        shared_slots: bool | None = None,
        traces: LiveTraces | bool | None = True,
    ) -> None:
        self.store = store
        self.clock = clock  # timestamps of runs, steps and events (tests freeze it)
        self.run_ids = run_ids or new_run_id
        self.bus = bus or EventBus()
        self.user = user or default_user()
        self.identity = identity or Identity()
        self.lease_ttl_s = default_ttl_s() if lease_ttl_s is None else lease_ttl_s
        self.poll_s = poll_s
        # agents' limits held in the database, across processes: on by default on PostgreSQL (many workers)
        self.shared_slots = store.dialect == "postgresql" if shared_slots is None else shared_slots
        self._controllers: dict[str, RunController] = {}
        self._child_runs: set[str] = set()  # driven here as a parent's running step (``run_child``)
        self._reviewing: set[str] = set()  # runs whose drive waits for a plan decision
        self._known_plans: KnownPlans | None = None  # plans of runs created here (made at the first creation)
        self.notifier = Notifier.for_url(store.url)
        self.channel = CommandChannel(store, self.notifier)
        self.breakers = BreakerBoard()
        # spans sent to an OpenTelemetry collector as runs go (True: when OTEL_EXPORTER_OTLP_*ENDPOINT says where)
        self.traces = LiveTraces.from_env() if traces is True else traces or None
        self.notifications = Notifications(self._write_and_publish, clock)  # sends only for runs with targets

    @classmethod
    async def open(cls, db: str | None = None, *, create: bool = True, **kwargs: Any) -> Self:
        """Open the database (``create=False``: refuse one that does not exist) and an orchestrator on it."""
        if kwargs.get("lease_ttl_s") is None:
            kwargs["lease_ttl_s"] = default_ttl_s()  # a bad LOOPDECK_LEASE_S is refused before the database is touched
        store = await Store.open(db, create=create)
        try:
            return cls(store, **kwargs)
        except BaseException:
            await store.close()
            raise

    async def close(self) -> None:
        await self.notifications.aclose()
        if self.traces is not None:
            await self.traces.aclose()
        await self.notifier.close()
        await self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _write_and_publish(self, batch: WriteBatch) -> None:
        """Commit ``batch``, then publish its events here (subscribers of this process hear of it at once)."""
        ids = await self.store.write(batch)
        self.bus.publish(
            Event(i, row["run_id"], row["type"], row["step_key"], payload, row["created_at"])
            for i, row, payload in zip(ids, batch.events, batch.payloads, strict=True)
        )

    def _live_owners(self) -> list[str]:
        return [c.owner for c in self._controllers.values()] + ([self.identity.owner] if self._reviewing else [])

    def controller(self, run_id: str) -> RunController | None:
        return self._controllers.get(run_id)

    def drain(self) -> None:
        """Graceful shutdown: every run driven here launches nothing more and is handed back once idle. A child
        run is its parent's running step: it runs on, as a running step does (the grace period bounds it)."""
        for run_id, controller in list(self._controllers.items()):
            if run_id not in self._child_runs:
                controller.drain()

    async def run_state(self, run_id: str, *, lenient: bool = False) -> tuple[RunState, RunRecord]:
        """The run as the store has it, ready to decide on (and its record).

        ``lenient``: a stored plan this loopdeck refuses (written by an older
        one) is replaced by the bare list of the run's steps, enough to end it.
        """
        from core.engine.run_state import RunState
        from core.model.plan import stored_plan, validate_plan

        record, text = await self.store.get_run_and_plan_text(run_id)
        steps = await self.store.get_steps(run_id)
        try:
            plan = stored_plan(run_id, text)
        except PlanError:
            if not lenient:
                raise
            plan = validate_plan(
                {
                    "agents": {s.agent: {"kind": "sim"} for s in steps},
                    "steps": [{"key": s.key, "agent": s.agent} for s in steps],
                }
            )
        return RunState.from_records(record, plan, steps, calls=await self.store.calls_of(run_id)), record

    async def step(self, run_id: str, key: str) -> StepRecord:
        """One step; an unknown key is refused naming the keys the run has."""
        step = await self.store.get_step(run_id, key)
        if step is None:
            raise StepNotFound(run_id, key, [s.key for s in await self.store.get_steps(run_id)])
        return step
