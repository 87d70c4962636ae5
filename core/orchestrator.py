"""The orchestrator: the one facade the CLI and the dashboard use.

It creates runs, drives them (taking the run's lease first), carries out
operator actions, and reads runs back (typed records, or the JSON views of
``views.py``). An action is carried out where the run is: by the controller
that drives it in this process, through the command channel to the process
that drives it elsewhere, or, on a run nobody drives, decided on the run as
the store has it and committed there. The same decider decides all three
(``engine.actions``).
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
import time
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

from core import views
from core.cluster.commands import CommandChannel
from core.cluster.lease import Holder, Identity, default_ttl_s, holder_state
from core.config import default_token_budget
from core.engine import actions
from core.engine.breaker import BreakerBoard
from core.engine.bus import EventBus, Subscription
from core.engine.controller import RunController
from core.engine.run_state import RunState, new_step_row
from core.errors import BadInput, LeaseHeld, LeaseLost, PlanError, StaleWrite, StepNotFound, TransitionError
from core.export import otlp_json
from core.model.events import Event, EventType, Gap
from core.model.plan import Plan, validate_plan
from core.model.states import RunStatus
from core.store import COMMANDS_CHANNEL, EVENTS_CHANNEL, Notifier, RunRecord, SpanRecord, StepRecord, Store, WorkerRecord, WriteBatch
from core.values import checked_input

FOLLOW_POLL_S = 0.5  # how often ``follow`` re-reads the store when nothing wakes it


class Delivery(StrEnum):
    """Where an operator action was carried out."""

    LIVE = "live"  # by the controller driving the run in this process
    REMOTE = "remote"  # by the process driving the run, through the command channel
    OFFLINE = "offline"  # in the store: nobody drives the run; the next driver (resume, a worker) carries on


def default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "operator"


def new_run_id(now: float) -> str:
    """Sortable and short enough to type: ``20261124-031502-3fa9c1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


class Orchestrator:
    def __init__(self, store: Store, bus: EventBus | None = None, *, user: str | None = None,
                 identity: Identity | None = None, lease_ttl_s: float | None = None, poll_s: float = 0.25,
                 clock: Callable[[], float] = time.time, run_ids: Callable[[float], str] | None = None,
                 shared_slots: bool | None = None) -> None:
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
        self._reviewing: set[str] = set()  # runs whose drive waits for a plan decision
        self.notifier = Notifier(store.url if store.dialect == "postgresql" else None)
        self.channel = CommandChannel(store, self.notifier)
        self.breakers = BreakerBoard()

    @classmethod
    async def open(cls, db: str | None = None, *, create: bool = True, **kwargs: Any) -> Orchestrator:
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
        await self.notifier.close()
        await self.store.close()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- runs ---------------------------------------------------------------------------

    async def create_run(self, plan: Plan, *, user: str | None = None, proposed_by: str | None = None,
                         hold: bool = False, planning_tokens: tuple[int, int] = (0, 0)) -> str:
        """Store a new run of ``plan`` and return its id.

        ``hold``: this process will drive it, so the run is created holding its
        lease (a worker on the same database must not claim it first).
        ``planning_tokens``: (prompt, completion) the planner spent writing the
        plan; they count toward the run's totals and its budget.

        With ``plan_approval: required`` the run waits in ``awaiting_plan_approval``
        until an operator approves its plan (``approve_plan``); otherwise it is
        ``planning`` until a driver starts it.
        """
        now = self.clock()
        run_id = self.run_ids(now)
        review = plan.policy.plan_approval == "required"
        status = RunStatus.AWAITING_PLAN_APPROVAL if review else RunStatus.PLANNING
        run_row = {
            "id": run_id, "goal": plan.goal, "status": status.value,
            "reason": f"waiting for an operator to approve the plan (`loopdeck approve-plan {run_id}`)" if review else None,
            "plan_json": plan.model_dump_json(),
            "token_budget": plan.policy.token_budget if plan.policy.token_budget is not None else default_token_budget(),
            "prompt_tokens": planning_tokens[0], "completion_tokens": planning_tokens[1], "created_by": user or self.user,
            "created_at": now, "updated_at": now, "ended_at": None, "proposal_json": None, "hold": None,
        }
        if hold:
            run_row.update(lock_owner=self.identity.owner, lock_host=self.identity.host, lock_pid=self.identity.pid,
                           locked_until=time.time() + self.lease_ttl_s)
        step_rows = [new_step_row(run_id, i, spec, plan.agent_of(spec)) for i, spec in enumerate(plan.steps)]
        batch = WriteBatch(extras=[Store.insert_run_extra(run_row, step_rows)])
        created: dict[str, Any] = {"goal": plan.goal, "steps": len(step_rows), "user": user or self.user}
        if any(planning_tokens):
            created["tokens"] = {"prompt": planning_tokens[0], "completion": planning_tokens[1], "planning": True}
        batch.event(run_id, EventType.RUN_CREATED, None, created, now)
        if review:
            batch.event(run_id, EventType.RUN_PLAN_PROPOSED, None, {"by": proposed_by or user or self.user,
                                                                    "steps": [s.key for s in plan.steps],
                                                                    "status": status.value}, now)
        await self._write_and_publish(batch)
        return run_id

    async def _write_and_publish(self, batch: WriteBatch) -> None:
        """Commit ``batch``, then publish its events here (subscribers of this process hear of it at once)."""
        ids = await self.store.write(batch)
        self.bus.publish(Event(i, row["run_id"], row["type"], row["step_key"], payload, row["created_at"])
                         for i, row, payload in zip(ids, batch.events, batch.payloads, strict=True))

    async def drive(self, run_id: str, *, wait_for_lease: bool = True, on_wait: Callable[[str], None] | None = None,
                    claimed: bool = False) -> RunStatus:
        """Take the run's lease and drive it to its end; returns the final status.

        A run held by a dead process on this host is taken over at once; a live
        holder on this host is never displaced (``LeaseHeld``); a holder on another
        host is waited out until its lease expires (or ``LeaseHeld`` if not waiting).
        """
        run_id = await self.store.resolve_run_id(run_id)
        if claimed:  # a worker's claim took the lease already
            run = await self.store.get_run(run_id, plan=False)
            if run.lease is None or run.lease.owner != self.identity.owner:
                raise LeaseLost(f"run {run_id} is no longer held by this worker")
        else:
            run = await self._take_lease(run_id, wait_for_lease, on_wait)
        try:
            if run.status == RunStatus.AWAITING_PLAN_APPROVAL and run.proposal is None:
                run = await self._await_plan_review(run_id)
            if run.status.terminal:
                return run.status
            controller = await RunController.load(
                self.store, self.bus, run_id, owner=self.identity.owner, lease_ttl_s=self.lease_ttl_s,
                poll_s=self.poll_s, breakers=self.breakers, clock=self.clock, shared_slots=self.shared_slots,
                notifier=self.notifier)
            self._controllers[run_id] = controller
            return await controller.drive()
        finally:
            self._controllers.pop(run_id, None)
            try:
                await self.store.write(WriteBatch(extras=[self.store.release_lease_extra(run_id, self.identity.owner)]))
            except Exception:  # noqa: BLE001 - best effort; the lease expires anyway
                pass

    async def _take_lease(self, run_id: str, wait: bool, on_wait: Callable[[str], None] | None) -> RunRecord:
        while True:
            run = await self.store.get_run(run_id, plan=False)
            lease = run.lease
            if lease is not None and lease.owner == self.identity.owner and run_id not in self._controllers \
                    and run_id not in self._reviewing:
                return run  # created holding its lease (``create_run(hold=True)``): ours already
            state = holder_state(lease, self.identity, time.time(), set(self._live_owners()))
            if state == Holder.ALIVE_HERE:
                raise LeaseHeld(f"run {run_id} is being driven by pid {lease.pid if lease else '?'} on this machine; "
                                f"stop that process first, or act on the run with `loopdeck approve`/`cancel`")
            if state == Holder.ALIVE_ELSEWHERE and lease is not None:
                wait_s = max(0.0, (lease.until or 0) - time.time())
                message = f"run {run_id} is driven by pid {lease.pid} on {lease.host}; its lease expires in {wait_s:.1f}s"
                if not wait:
                    raise LeaseHeld(message)
                if on_wait:
                    on_wait(message + "; waiting")
                await asyncio.sleep(min(wait_s + 0.05, self.lease_ttl_s))
                continue
            try:
                await self.store.take_lease(run_id, self.identity.owner, self.identity.host, self.identity.pid,
                                            self.lease_ttl_s, lease.owner if lease else None)
            except StaleWrite:
                continue  # someone else moved first: look again
            return run

    def _live_owners(self) -> list[str]:
        return [c.owner for c in self._controllers.values()] + ([self.identity.owner] if self._reviewing else [])

    async def _await_plan_review(self, run_id: str) -> RunRecord:
        """Hold the lease of a run whose plan awaits review, serving its decisions as they arrive."""
        self._reviewing.add(run_id)
        renew_every, renewed = self.lease_ttl_s / 3, time.monotonic()
        try:
            while True:
                run = await self.store.get_run(run_id, plan=False)
                if run.status != RunStatus.AWAITING_PLAN_APPROVAL:
                    return run
                await self.channel.answer_queued(run_id, lambda kind, payload, user: self._while_reviewing(
                    run_id, actions.from_payload(kind, payload), user))
                if time.monotonic() - renewed >= renew_every:
                    await self.store.write(WriteBatch(extras=[
                        self.store.renew_lease_extra(run_id, self.identity.owner, self.lease_ttl_s)]))
                    renewed = time.monotonic()
                await self.notifier.wait(COMMANDS_CHANNEL, run_id, self.poll_s)  # decisions arrive as commands
        finally:
            self._reviewing.discard(run_id)

    async def _while_reviewing(self, run_id: str, command: actions.Command, user: str) -> None:
        """What a run whose plan awaits review accepts: the decision, or a cancel."""
        if not isinstance(command, (actions.DecidePlan, actions.Cancel)):
            raise TransitionError(f"run {run_id} is awaiting plan approval; approve or reject its plan first "
                                  f"(`loopdeck approve-plan {run_id}`)")
        state, _ = await self.run_state(run_id)
        await self._commit_offline(run_id, command, actions.decide(state, command, user, self.clock()))

    def controller(self, run_id: str) -> RunController | None:
        return self._controllers.get(run_id)

    def drain(self) -> None:
        """Graceful shutdown: every run driven here launches nothing more and is handed back once idle."""
        for controller in list(self._controllers.values()):
            controller.drain()

    # -- operator actions -----------------------------------------------------------------

    async def approve(self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None,
                      input: Any = ..., timeout_s: float = 10.0) -> Delivery:
        """Approve a waiting step (optionally with edited input), wherever the run is driven."""
        edited = actions.KEEP if input is ... else checked_input(input)
        return await self.act(run_id, actions.Approve(key, reason, edited), user=user, timeout_s=timeout_s)

    async def reject(self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None,
                     timeout_s: float = 10.0) -> Delivery:
        return await self.act(run_id, actions.Reject(key, reason), user=user, timeout_s=timeout_s)

    async def retry(self, run_id: str, key: str, *, user: str | None = None, timeout_s: float = 10.0) -> Delivery:
        """Give a failed step one more attempt (its skipped dependents wait for it again)."""
        return await self.act(run_id, actions.Retry(key), user=user, timeout_s=timeout_s)

    async def skip(self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None,
                   timeout_s: float = 10.0) -> Delivery:
        """Skip a step that has not run yet (pending or waiting for approval)."""
        return await self.act(run_id, actions.Skip(key, reason), user=user, timeout_s=timeout_s)

    async def cancel(self, run_id: str, *, user: str | None = None, reason: str | None = None,
                     timeout_s: float = 10.0) -> Delivery:
        return await self.act(run_id, actions.Cancel(reason), user=user, timeout_s=timeout_s)

    async def set_budget(self, run_id: str, limit: int | None, *, user: str | None = None,
                         timeout_s: float = 10.0) -> Delivery:
        """Set a run's token budget (``None``: no limit); a run paused on its budget continues."""
        return await self.act(run_id, actions.SetBudget(limit), user=user, timeout_s=timeout_s)

    async def replan(self, run_id: str, steps: Any, *, mode: str = "append", user: str | None = None,
                     reason: str | None = None, timeout_s: float = 10.0) -> Delivery:
        """Append steps to a live run, or replace its steps that have not started (``replace_pending``)."""
        return await self.act(run_id, actions.Replan(steps, mode, reason), user=user, timeout_s=timeout_s)

    async def approve_plan(self, run_id: str, *, approve: bool = True, user: str | None = None,
                           reason: str | None = None, plan: Any = None, steps: Any = None,
                           timeout_s: float = 10.0) -> Delivery:
        """Approve or reject the plan a run awaits review of, wherever the run is driven.

        For a run that has not started, ``plan`` replaces the proposed plan (it is
        validated first) and rejecting ends the run ``rejected``. For a replan an
        agent proposed mid-run, ``steps`` replaces the proposed steps and rejecting
        drops the proposal: the run goes on with its current plan.
        """
        if plan is not None and not isinstance(plan, dict):
            plan = plan.model_dump(mode="json", exclude_unset=True)
        return await self.act(run_id, actions.DecidePlan(approve, reason, steps, plan), user=user, timeout_s=timeout_s)

    async def act(self, run_id: str, command: actions.Command, *, user: str | None = None,
                  timeout_s: float = 10.0) -> Delivery:
        """Carry out an action where the run is: here, through the driving process, or in the store."""
        user = user or self.user
        run_id = await self.store.resolve_run_id(run_id)
        controller = self._controllers.get(run_id)
        if controller is not None:
            await controller.perform(command, user)
            return Delivery.LIVE
        state, run = await self.run_state(run_id, lenient=isinstance(command, actions.Cancel))
        effects = actions.decide(state, command, user, self.clock())  # refused here, before anything is queued
        if holder_state(run.lease, self.identity, time.time(), set(self._live_owners())) \
                in (Holder.ALIVE_HERE, Holder.ALIVE_ELSEWHERE):
            driver = f"pid {run.lease.pid} on {run.lease.host}" if run.lease else "another process"
            await self.channel.send(run_id, command.kind, actions.to_payload(command), user, timeout_s, driver)
            return Delivery.REMOTE
        await self._commit_offline(run_id, command, effects)
        return Delivery.OFFLINE

    async def _commit_offline(self, run_id: str, command: actions.Command, effects: actions.Effects) -> None:
        """Nobody drives the run: commit the decision made on it as the store has it; ``resume`` carries on."""
        try:
            await self._write_and_publish(effects.batch)
        except StaleWrite as exc:
            raise TransitionError(f"run {run_id} changed while the {command.kind} was being applied; "
                                  f"look again (`loopdeck show {run_id}`)") from exc

    async def run_state(self, run_id: str, *, lenient: bool = False) -> tuple[RunState, RunRecord]:
        """The run as the store has it, ready to decide on (and its record).

        ``lenient``: a stored plan this loopdeck refuses (written by an older
        one) is replaced by the bare list of the run's steps, enough to end it.
        """
        record = await self.store.get_run(run_id)
        steps = await self.store.get_steps(run_id)
        try:
            plan = validate_plan(record.plan, source=f"run {run_id}")
        except PlanError:
            if not lenient:
                raise
            plan = validate_plan({"agents": {s.agent: {"kind": "sim"} for s in steps},
                                  "steps": [{"key": s.key, "agent": s.agent} for s in steps]})
        return RunState.from_records(record, plan, steps), record

    async def feedback(self, run_id: str, key: str, rating: str, *, comment: str | None = None,
                       category: str | None = None, user: str | None = None) -> None:
        """Thumbs up or down on a finished step, with an optional comment and category."""
        if rating not in ("up", "down"):
            raise BadInput(f"feedback is 'up' or 'down', not {rating!r}")
        user = user or self.user
        run_id = await self.store.resolve_run_id(run_id)
        step = await self.step(run_id, key)
        if step.status.value not in ("succeeded", "failed"):
            raise TransitionError(f'step "{key}" is {step.status.value}; only a finished (succeeded or failed) step '
                                  "can be rated")
        now = self.clock()
        payload = {"rating": rating, "comment": comment, "category": category, "user": user, "agent": step.agent}
        batch = WriteBatch(extras=[Store.feedback_extra({
            "run_id": run_id, "step_key": key, "agent": step.agent, "rating": rating, "comment": comment,
            "category": category, "created_by": user, "created_at": now})])
        batch.event(run_id, EventType.STEP_FEEDBACK, key, payload, now)
        await self._write_and_publish(batch)

    # -- reading ----------------------------------------------------------------------------

    async def resolve_run_id(self, run_id: str) -> str:
        return await self.store.resolve_run_id(run_id)

    async def run(self, run_id: str, *, plan: bool = True) -> RunRecord:
        return await self.store.get_run(await self.store.resolve_run_id(run_id), plan=plan)

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self.store.get_steps(run_id)

    async def step(self, run_id: str, key: str) -> StepRecord:
        """One step; an unknown key is refused naming the keys the run has."""
        step = await self.store.get_step(run_id, key)
        if step is None:
            raise StepNotFound(run_id, key, [s.key for s in await self.store.get_steps(run_id)])
        return step

    async def events_since(self, run_id: str | None, after_id: int = 0, limit: int = 10_000) -> list[Event]:
        return await self.store.events_since(run_id, after_id, limit)

    async def spans(self, run_id: str) -> list[SpanRecord]:
        return await self.store.spans_of(run_id)

    async def workers(self) -> list[WorkerRecord]:
        return await self.store.list_workers()

    async def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Runs, newest first, with step progress: JSON-ready."""
        records = await self.store.list_runs(limit)
        return views.listing(records, await self.store.step_counts([r.id for r in records]))

    async def snapshot(self, run_id: str, *, events: bool = True) -> dict[str, Any]:
        """The ``show --json`` object: run, steps and events."""
        run_id = await self.store.resolve_run_id(run_id)
        return views.snapshot(
            await self.store.get_run(run_id), await self.store.get_steps(run_id), await self.store.spans_of(run_id),
            await self.store.feedback_of(run_id), await self.store.agent_summary(run_id),
            await self.store.events_since(run_id, 0, limit=1_000_000) if events else None)

    async def step_context(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """The context the step gets (or got) from its dependencies' outputs, per the run's policy."""
        run_id = await self.store.resolve_run_id(run_id)
        plan = (await self.store.get_run(run_id)).plan or {}
        context = views.step_context(plan, key, await self.store.get_steps(run_id))
        if context is None:
            raise StepNotFound(run_id, key, [s["key"] for s in plan.get("steps", [])])
        return context

    async def agents(self) -> dict[str, dict[str, Any]]:
        """Every agent that ran, across runs: attempts, failures, tokens, feedback."""
        return await self.store.agent_summary(None)

    async def export_otlp(self, run_id: str) -> dict[str, Any]:
        run_id = await self.store.resolve_run_id(run_id)
        return otlp_json(await self.store.get_run(run_id, plan=False), await self.store.spans_of(run_id))

    # -- following ---------------------------------------------------------------------------

    async def wait_for_events(self, run_id: str | None, timeout: float) -> bool:
        """Until another process commits events of the run (PostgreSQL NOTIFY) or ``timeout``: a hint to re-read."""
        return await self.notifier.wait(EVENTS_CHANNEL, run_id, timeout)

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
            while True:
                for event in await self.store.events_since(run_id, last):
                    last = event.id
                    yield event
                while True:
                    item = await self._next_live(sub, run_id)
                    if item is None or isinstance(item, Gap):
                        break  # read what the store has
                    if item.id > last:
                        last = item.id
                        yield item
        finally:
            sub.close()

    async def _next_live(self, sub: Subscription, run_id: str | None) -> Event | Gap | None:
        """The next event published here, or None when another process may have written some."""
        local = asyncio.ensure_future(sub.get())
        remote = asyncio.ensure_future(self.notifier.wait(EVENTS_CHANNEL, run_id, FOLLOW_POLL_S))
        try:
            done, _ = await asyncio.wait({local, remote}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            remote.cancel()
        if local in done:
            return local.result()
        local.cancel()
        return None
