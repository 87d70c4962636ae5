"""The orchestrator: the one facade the CLI and the dashboard use.

It creates runs, drives them (taking the run's lease first), answers gates,
cancels, and reads runs back as JSON-ready snapshots. An action on a run that
another process drives is queued in the store's commands inbox and applied by
that process; on a run nobody drives it is applied to the store directly.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

from core.engine.breaker import BreakerBoard
from core.values import checked_input
from core.engine.budget import check_token_budget
from core.config import default_token_budget
from core.model.context import Upstream, build_context
from core.engine.bus import EventBus, Subscription
from core.engine.controller import RunController, answer_command, new_step_row, record_replan
from core.errors import (BadInput, CommandTimeout, LeaseHeld, LeaseLost, StaleWrite, StepNotFound,
                     TransitionError)
from core.model.events import Event, EventType, Gap, iso
from core.cluster.lease import Holder, Identity, default_ttl_s, holder_state
from core.store.notify import Notifier
from core.export import otlp_json
from core.model.plan import Plan, Policy, validate_plan
from core.model.replan import Replan, prepare_replan
from core.model.states import RunStatus, StepStatus, check_step
from core.store.store import Store, notify
from core.store.writer import COMMANDS_CHANNEL, EVENTS_CHANNEL, RUNS_CHANNEL, WriteBatch


_PAST = {"approve": "approved", "reject": "rejected", "cancel": "canceled", "budget": "given a new budget",
         "replan": "replanned", "skip": "changed", "retry": "changed", "plan": "given a plan decision"}


class Delivery(StrEnum):
    """Where an operator action was carried out."""

    LIVE = "live"  # by the controller driving the run in this process
    REMOTE = "remote"  # by the process driving the run, through the commands inbox
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
        self._reviewing: set[str] = set()  # runs whose drive waits for a plan decision
        self.notifier = Notifier(store.url if store.dialect == "postgresql" else None)
        self.breakers = BreakerBoard()

    @classmethod
    async def open(cls, db: str | None = None, *, create: bool = True, **kwargs: Any) -> "Orchestrator":
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

    async def wait_for_events(self, run_id: str | None, timeout: float) -> bool:
        """Until another process commits events of the run (PostgreSQL NOTIFY) or ``timeout``: a hint to re-read."""
        return await self.notifier.wait(EVENTS_CHANNEL, run_id, timeout)

    async def __aenter__(self) -> "Orchestrator":
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
            "created_at": now, "updated_at": now, "ended_at": None, "proposal_json": None,
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

    async def drive(
        self,
        run_id: str,
        *,
        wait_for_lease: bool = True,
        on_wait: Callable[[str], None] | None = None,
        claimed: bool = False,
    ) -> RunStatus:
        """Take the run's lease and drive it to its end; returns the final status.

        A run held by a dead process on this host is taken over at once; a live
        holder on this host is never displaced (``LeaseHeld``); a holder on another
        host is waited out until its lease expires (or ``LeaseHeld`` if not waiting).
        """
        run_id = await self.store.resolve_run_id(run_id)
        if claimed:  # a worker's claim took the lease already
            run = await self.store.get_run(run_id)
            if run["lock_owner"] != self.identity.owner:
                raise LeaseLost(f"run {run_id} is no longer held by this worker")
        else:
            run = await self._take_lease(run_id, wait_for_lease, on_wait)
        try:
            if run["status"] == RunStatus.AWAITING_PLAN_APPROVAL.value and not run["proposal_json"]:
                run = await self._await_plan_review(run_id)
            if RunStatus(run["status"]).terminal:
                return RunStatus(run["status"])
            controller = await RunController.load(
                self.store, self.bus, run_id, owner=self.identity.owner,
                lease_ttl_s=self.lease_ttl_s, poll_s=self.poll_s, breakers=self.breakers, clock=self.clock,
                shared_slots=self.shared_slots, notifier=self.notifier,
            )
            self._controllers[run_id] = controller
            return await controller.drive()
        finally:
            self._controllers.pop(run_id, None)
            try:
                await self.store.write(WriteBatch(extras=[self.store.release_lease_extra(run_id, self.identity.owner)]))
            except Exception:  # noqa: BLE001 - best effort; the lease expires anyway
                pass

    async def _take_lease(self, run_id: str, wait: bool, on_wait: Callable[[str], None] | None) -> dict[str, Any]:
        while True:
            run = await self.store.get_run(run_id)
            if run["lock_owner"] == self.identity.owner and run_id not in self._controllers \
                    and run_id not in self._reviewing:
                return run  # created holding its lease (``create_run(hold=True)``): ours already
            state = holder_state(run, self.identity, time.time(), set(self._live_owners()))
            if state == Holder.ALIVE_HERE:
                raise LeaseHeld(
                    f"run {run_id} is being driven by pid {run['lock_pid']} on this machine; "
                    f"stop that process first, or act on the run with `loopdeck approve`/`cancel`"
                )
            if state == Holder.ALIVE_ELSEWHERE:
                wait_s = max(0.0, (run["locked_until"] or 0) - time.time())
                message = (f"run {run_id} is driven by pid {run['lock_pid']} on {run['lock_host']}; "
                           f"its lease expires in {wait_s:.1f}s")
                if not wait:
                    raise LeaseHeld(message)
                if on_wait:
                    on_wait(message + "; waiting")
                await asyncio.sleep(min(wait_s + 0.05, self.lease_ttl_s))
                continue
            try:
                await self.store.take_lease(run_id, self.identity.owner, self.identity.host, self.identity.pid,
                                            self.lease_ttl_s, run["lock_owner"])
            except StaleWrite:
                continue  # someone else moved first: look again
            return run

    def _live_owners(self) -> list[str]:
        return [c.owner for c in self._controllers.values()] + ([self.identity.owner] if self._reviewing else [])

    async def _await_plan_review(self, run_id: str) -> dict[str, Any]:
        """Hold the lease of a run whose plan awaits review, applying decisions as they arrive."""
        self._reviewing.add(run_id)
        renew_every = self.lease_ttl_s / 3
        renewed = time.monotonic()
        try:
            while True:
                run = await self.store.get_run(run_id)
                if run["status"] != RunStatus.AWAITING_PLAN_APPROVAL.value:
                    return run
                for command in await self.store.queued_commands(run_id):
                    await answer_command(self.store, command, lambda kind, payload, user: self._act_while_reviewing(
                        run, kind, payload, user))
                if time.monotonic() - renewed >= renew_every:
                    await self.store.write(WriteBatch(extras=[
                        self.store.renew_lease_extra(run_id, self.identity.owner, self.lease_ttl_s)]))
                    renewed = time.monotonic()
                await self.notifier.wait(COMMANDS_CHANNEL, run_id, self.poll_s)  # decisions arrive as commands
        finally:
            self._reviewing.discard(run_id)

    async def _act_while_reviewing(self, run: dict[str, Any], kind: str, payload: dict[str, Any], user: str) -> bool:
        """What a run whose plan awaits review accepts: the decision, or a cancel."""
        if kind not in ("plan", "cancel"):
            raise TransitionError(f"run {run['id']} is awaiting plan approval; approve or reject its plan first "
                                  f"(`loopdeck approve-plan {run['id']}`)")
        await self._act_offline(dict(run), kind, payload, user)
        return True

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
        payload: dict[str, Any] = {"step": key, "reason": reason}
        if input is not ...:
            payload["input"] = checked_input(input)
        return await self._act(run_id, "approve", payload, user, timeout_s)

    async def reject(self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None,
                     timeout_s: float = 10.0) -> Delivery:
        return await self._act(run_id, "reject", {"step": key, "reason": reason}, user, timeout_s)

    async def retry(self, run_id: str, key: str, *, user: str | None = None, timeout_s: float = 10.0) -> Delivery:
        """Give a failed step of a live run one more attempt (its skipped dependents wait for it again)."""
        return await self._act(run_id, "retry", {"step": key}, user, timeout_s)

    async def skip(self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None,
                   timeout_s: float = 10.0) -> Delivery:
        """Skip a step that has not run yet (pending or waiting for approval)."""
        return await self._act(run_id, "skip", {"step": key, "reason": reason}, user, timeout_s)

    async def cancel(self, run_id: str, *, user: str | None = None, reason: str | None = None,
                     timeout_s: float = 10.0) -> Delivery:
        return await self._act(run_id, "cancel", {"reason": reason}, user, timeout_s)

    async def set_budget(self, run_id: str, limit: int | None, *, user: str | None = None, timeout_s: float = 10.0) -> Delivery:
        """Set a run's token budget (``None``: no limit); a run paused on its budget continues."""
        return await self._act(run_id, "budget", {"limit": check_token_budget(limit)}, user, timeout_s)

    async def replan(self, run_id: str, steps: Any, *, mode: str = "append", user: str | None = None,
                     reason: str | None = None, timeout_s: float = 10.0) -> Delivery:
        """Append steps to a live run, or replace its steps that have not started (``replace_pending``)."""
        return await self._act(run_id, "replan", {"steps": steps, "mode": mode, "reason": reason}, user, timeout_s)

    async def approve_plan(self, run_id: str, *, approve: bool = True, user: str | None = None,
                           reason: str | None = None, plan: Any = None, steps: Any = None,
                           timeout_s: float = 10.0) -> Delivery:
        """Approve or reject the plan a run awaits review of, wherever the run is driven.

        For a run that has not started, ``plan`` replaces the proposed plan (it is
        validated first) and rejecting ends the run ``rejected``. For a replan an
        agent proposed mid-run, ``steps`` replaces the proposed steps and rejecting
        drops the proposal: the run goes on with its current plan.
        """
        payload: dict[str, Any] = {"approve": approve, "reason": reason}
        if plan is not None:
            payload["plan"] = plan if isinstance(plan, dict) else plan.model_dump(mode="json", exclude_unset=True)
        if steps is not None:
            payload["steps"] = steps
        return await self._act(run_id, "plan", payload, user, timeout_s)

    async def feedback(self, run_id: str, key: str, rating: str, *, comment: str | None = None,
                       category: str | None = None, user: str | None = None) -> None:
        """Thumbs up or down on a finished step, with an optional comment and category."""
        if rating not in ("up", "down"):
            raise BadInput(f"feedback is 'up' or 'down', not {rating!r}")
        user = user or self.user
        run_id = await self.store.resolve_run_id(run_id)
        row = await self._step_row(run_id, key)
        if row["status"] not in ("succeeded", "failed"):
            raise TransitionError(f'step "{key}" is {row["status"]}; only a finished (succeeded or failed) step can be rated')
        now = self.clock()
        payload = {"rating": rating, "comment": comment, "category": category, "user": user, "agent": row["agent"]}
        batch = WriteBatch(extras=[Store.feedback_extra({
            "run_id": run_id, "step_key": key, "agent": row["agent"], "rating": rating, "comment": comment,
            "category": category, "created_by": user, "created_at": now})])
        batch.event(run_id, EventType.STEP_FEEDBACK, key, payload, now)
        await self._write_and_publish(batch)

    async def step_context(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """The context the step gets (or got) from its dependencies' outputs, per the run's policy."""
        run_id = await self.store.resolve_run_id(run_id)
        plan = json.loads((await self.store.get_run(run_id))["plan_json"])  # stored validated: no need to re-validate
        spec = next((s for s in plan["steps"] if s["key"] == key), None)
        if spec is None:
            raise StepNotFound(run_id, key, [s["key"] for s in plan["steps"]])
        deps = set(spec.get("depends_on") or ())
        rows = [r for r in await self.store.get_steps(run_id) if r["key"] in deps]
        upstream = [
            Upstream(r["key"], r["title"], r["type"], json.loads(r["output_json"]) if r["output_json"] else None, r["ended_at"] or 0.0)
            for r in rows if r["status"] == StepStatus.SUCCEEDED.value
        ]
        return build_context(Policy.model_validate(plan.get("policy") or {}), upstream)

    async def agents(self) -> dict[str, dict[str, Any]]:
        """Every agent that ran, across runs: attempts, failures, tokens, feedback."""
        return await self.store.agent_summary(None)

    async def export_otlp(self, run_id: str) -> dict[str, Any]:
        run_id = await self.store.resolve_run_id(run_id)
        return otlp_json(await self.store.get_run(run_id), await self.store.spans_of(run_id))

    async def _act(self, run_id: str, kind: str, payload: dict[str, Any], user: str | None, timeout_s: float) -> Delivery:
        """Carry out an action where the run is: here, through the driving process, or in the store."""
        user = user or self.user
        run_id = await self.store.resolve_run_id(run_id)
        controller = self._controllers.get(run_id)
        if controller is not None:
            if kind == "cancel":  # waits for the run's last write
                await controller.cancel(user=user, reason=payload.get("reason"))
            else:
                await controller.perform(kind, payload, user)
            return Delivery.LIVE
        run = await self.store.get_run(run_id)
        self._check_run_open(run, kind)
        if kind == "plan":
            self._check_reviewable(run, payload)
        if "step" in payload:
            await self._check_step(run_id, payload["step"], kind)
        if kind == "replan":  # bad steps are bad input here, before anything is queued
            await self._prepare_replan(run, payload)
        state = holder_state(run, self.identity, time.time(), set(self._live_owners()))
        if state in (Holder.ALIVE_HERE, Holder.ALIVE_ELSEWHERE):
            await self._act_remote(run, kind, payload, user, timeout_s)
            return Delivery.REMOTE
        await self._act_offline(run, kind, payload, user)
        return Delivery.OFFLINE

    async def _prepare_replan(self, run: dict[str, Any], payload: dict[str, Any]) -> tuple[Replan, list[dict[str, Any]]]:
        plan = validate_plan(json.loads(run["plan_json"]), source=f"run {run['id']}")
        rows = await self.store.get_steps(run["id"])
        statuses = {r["key"]: (r["status"], r["attempts"]) for r in rows}
        return prepare_replan(plan, run["id"], statuses, payload["steps"], payload["mode"]), rows

    @staticmethod
    def _check_reviewable(run: dict[str, Any], payload: dict[str, Any]) -> Plan | None:
        """A plan decision needs a run awaiting one; an edited plan must be valid. Returns the edited plan, if any."""
        if run["status"] != RunStatus.AWAITING_PLAN_APPROVAL.value:
            raise TransitionError(f"run {run['id']} is {run['status']}; only a run awaiting plan approval can have "
                                  "its plan approved or rejected")
        if payload.get("plan") is None:
            return None
        if run["proposal_json"]:
            raise BadInput(f"run {run['id']} has started; an edited replan gives steps, not a whole plan")
        return validate_plan(payload["plan"], source="edited plan")

    @staticmethod
    def _check_run_open(run: dict[str, Any], kind: str) -> None:
        status = RunStatus(run["status"])
        if status.terminal:
            raise TransitionError(f"run {run['id']} is {status.value}; an ended run can no longer be {_PAST[kind]}")

    async def _check_step(self, run_id: str, key: str, kind: str) -> dict[str, Any]:
        row = await self._step_row(run_id, key)
        check_step(key, StepStatus(row["status"]), {"retry": "rerun"}.get(kind, kind))
        return row

    async def _step_row(self, run_id: str, key: str) -> dict[str, Any]:
        """The step's row; an unknown key is refused naming the keys the run has."""
        row = await self.store.get_step(run_id, key)
        if row is None:
            raise StepNotFound(run_id, key, [s["key"] for s in await self.store.get_steps(run_id)])
        return row

    async def _act_remote(self, run: dict[str, Any], kind: str, payload: dict[str, Any], user: str, timeout_s: float) -> None:
        command_id = await self.store.enqueue_command(run["id"], kind, payload, user)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            command = await self.store.get_command(command_id)
            if command["state"] == "applied":
                return
            if command["state"] == "refused":
                raise TransitionError(command["result"])
        raise CommandTimeout(
            f"run {run['id']} is driven by pid {run['lock_pid']} on {run['lock_host']}, which did not answer within "
            f"{timeout_s:g}s; the {kind} stays queued (command {command_id}) and is applied when that process reads it"
        )

    async def _act_offline(self, run: dict[str, Any], kind: str, payload: dict[str, Any], user: str) -> None:
        """Nobody drives the run: apply the action to the store; the next ``resume`` carries on from it."""
        run_id, now = run["id"], self.clock()
        batch = WriteBatch()
        if kind == "retry":
            raise TransitionError(f"run {run_id} is not being driven; resume it first (`loopdeck resume {run_id}`), "
                                  "then retry the step")
        if kind == "plan":
            await self._decide_plan_offline(run, payload, user, batch)
        elif kind == "replan":
            self._offline_replan(run, await self._prepare_replan(run, payload), payload["mode"], user,
                                 payload.get("reason"), batch)
        elif kind == "budget":
            run.update(token_budget=payload["limit"], updated_at=now)
            batch.run(run_id, run)
            batch.event(run_id, EventType.BUDGET_CHANGED, None, {"from": None, "to": payload["limit"], "user": user}, now)
        elif kind == "cancel":
            reason = f"canceled by {user}" + (f": {payload['reason']}" if payload.get("reason") else "")
            await self._end_offline(run, RunStatus.CANCELED, reason, batch)
        else:
            row = await self._check_step(run_id, payload["step"], kind)
            key = row["key"]
            if kind == "approve":
                row.update(status=StepStatus.PENDING.value, approved_by=user)
                event = {"user": user, "reason": payload.get("reason"), "input_edited": "input" in payload}
                if "input" in payload:
                    row["input_json"] = json.dumps(payload["input"])
                    event["input"] = payload["input"]
                batch.step(run_id, key, StepStatus.WAITING_USER.value, row["attempts"], row)
                batch.event(run_id, EventType.STEP_APPROVED, key, event, now)
            elif kind == "skip":
                error = f"skipped by {user}" + (f": {payload['reason']}" if payload.get("reason") else "")
                expect = row["status"]
                row.update(status=StepStatus.SKIPPED.value, ended_at=now, error=error)
                batch.step(run_id, key, expect, row["attempts"], row)
                batch.event(run_id, EventType.STEP_SKIPPED, key, {"reason": error, "user": user}, now)
            else:
                error = f"rejected by {user}" + (f": {payload['reason']}" if payload.get("reason") else "")
                row.update(status=StepStatus.REJECTED.value, ended_at=now, error=error)
                batch.step(run_id, key, StepStatus.WAITING_USER.value, row["attempts"], row)
                batch.event(run_id, EventType.STEP_REJECTED, key, {"user": user, "reason": payload.get("reason")}, now)
        try:
            await self._write_and_publish(batch)
        except StaleWrite as exc:
            raise TransitionError(f"run {run_id} changed while the {kind} was being applied; look again (`loopdeck show {run_id}`)") from exc

    async def _end_offline(self, run: dict[str, Any], status: RunStatus, reason: str, batch: WriteBatch) -> None:
        """End a run nobody drives: skip its unfinished steps, write its verdict."""
        run_id, now = run["id"], self.clock()
        for row in await self.store.get_steps(run_id):
            if not StepStatus(row["status"]).terminal:
                expect = row["status"]
                row.update(status=StepStatus.SKIPPED.value, ended_at=now, error=f"run {status.value}: {reason}")
                batch.step(run_id, row["key"], expect, row["attempts"], row)
                batch.event(run_id, EventType.STEP_SKIPPED, row["key"], {"reason": row["error"]}, now)
        run.update(status=status.value, reason=reason, updated_at=now, ended_at=now)
        batch.run(run_id, run)
        batch.event(run_id, EventType.RUN_ENDED, None, {"status": status.value, "reason": reason}, now)

    async def _decide_plan_offline(self, run: dict[str, Any], payload: dict[str, Any], user: str,
                                   batch: WriteBatch) -> None:
        """A plan decision on a run no controller drives (not started yet, or its driver is gone)."""
        edited = self._check_reviewable(run, payload)
        run_id, now = run["id"], self.clock()
        approve, reason = bool(payload.get("approve")), payload.get("reason")
        event = {"user": user, "reason": reason,
                 "edited": payload.get("plan") is not None or payload.get("steps") is not None}
        proposal = json.loads(run["proposal_json"] or "null")
        if proposal is None and not approve:  # the run never started: rejecting its plan ends it
            batch.event(run_id, EventType.RUN_PLAN_REJECTED, None, {**event, "status": RunStatus.REJECTED.value}, now)
            why = f"plan rejected by {user}" + (f": {reason}" if reason else "")
            await self._end_offline(run, RunStatus.REJECTED, why, batch)
            return
        if proposal is None:
            if edited is not None:
                old = [r["key"] for r in await self.store.get_steps(run_id)]
                rows = [new_step_row(run_id, i, spec, edited.agent_of(spec)) for i, spec in enumerate(edited.steps)]
                batch.extras.append(self.store.replan_extra(run_id, edited.model_dump_json(), old, rows))
            run.update(status=RunStatus.PLANNING.value, reason=None, updated_at=now)
            batch.extras.append(lambda conn: notify(conn, RUNS_CHANNEL, run_id))  # approved: a worker may start it now
        else:
            event["proposed_by"] = proposal["by"]
            if approve:
                steps = payload["steps"] if payload.get("steps") is not None else proposal["steps"]
                self._offline_replan(run, await self._prepare_replan(run, {"steps": steps, "mode": proposal["mode"]}),
                                     proposal["mode"], user, f'proposed by step "{proposal["by"]}", approved by {user}', batch)
            run.update(status=RunStatus.RUNNING.value, reason=None, updated_at=now, proposal_json=None)
        batch.run(run_id, run)
        batch.event(run_id, EventType.RUN_PLAN_APPROVED if approve else EventType.RUN_PLAN_REJECTED, None,
                    {**event, "status": run["status"]}, now)

    def _offline_replan(self, run: dict[str, Any], prepared: tuple[Replan, list[dict[str, Any]]], mode: str,
                        user: str, reason: str | None, batch: WriteBatch) -> None:
        change, rows = prepared
        next_idx = max((r["idx"] for r in rows), default=-1) + 1
        record_replan(batch, self.store, run["id"], change, next_idx, mode, user, reason, self.clock())

    # -- reading ----------------------------------------------------------------------------

    async def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Runs, newest first, with step progress: JSON-ready."""
        rows = await self.store.list_runs(limit)
        counts = await self.store.step_counts([r["id"] for r in rows])
        out = []
        for r in rows:
            c = counts.get(r["id"], {})
            out.append({
                "id": r["id"], "goal": r["goal"], "status": r["status"], "created_at": iso(r["created_at"]),
                "ended_at": iso(r["ended_at"]), "steps": sum(c.values()),
                "done": sum(n for s, n in c.items() if StepStatus(s).terminal),
                "tokens": r["prompt_tokens"] + r["completion_tokens"], "token_budget": r["token_budget"],
            })
        return out

    async def snapshot(self, run_id: str, *, events: bool = True) -> dict[str, Any]:
        """The ``show --json`` object: run, steps and events."""
        run_id = await self.store.resolve_run_id(run_id)
        run = await self.store.get_run(run_id)
        steps = await self.store.get_steps(run_id)
        plan = json.loads(run["plan_json"])
        depends_on = {s["key"]: s.get("depends_on", []) for s in plan.get("steps", [])}
        out: dict[str, Any] = {
            "run": {
                "id": run["id"], "goal": run["goal"], "status": run["status"], "reason": run["reason"],
                "tokens": _tokens(run), "token_budget": run["token_budget"],
                "created_at": iso(run["created_at"]), "ended_at": iso(run["ended_at"]),
                "created_by": run["created_by"],
                "max_concurrency": (plan.get("policy") or {}).get("max_concurrency"),
                "lease": {"host": run["lock_host"], "pid": run["lock_pid"], "expires_at": iso(run["locked_until"])}
                if run["lock_owner"] else None,
            },
            "plan": plan,
            "proposal": json.loads(run["proposal_json"]) if run["proposal_json"] else None,
            "steps": [
                {
                    "key": s["key"], "title": s["title"], "type": s["type"], "agent": s["agent"],
                    "depends_on": depends_on.get(s["key"], []),
                    "status": s["status"], "attempts": s["attempts"],
                    "input": json.loads(s["input_json"]) if s["input_json"] else None,
                    "output": json.loads(s["output_json"]) if s["output_json"] else None,
                    "error": s["error"], "tokens": _tokens(s), "approved_by": s["approved_by"],
                    "started_at": iso(s["started_at"]), "ended_at": iso(s["ended_at"]),
                }
                for s in steps
            ],
        }
        out["spans"] = [
            {"step": sp["step_key"], "attempt": sp["attempt"], "agent": sp["agent"], "status": sp["status"],
             "started_at": iso(sp["started_at"]), "ended_at": iso(sp["ended_at"]),
             "tokens": _tokens(sp), "error": sp["error"]}
            for sp in await self.store.spans_of(run_id)
        ]
        out["feedback"] = [
            {"step": f["step_key"], "agent": f["agent"], "rating": f["rating"], "comment": f["comment"],
             "category": f["category"], "user": f["created_by"], "created_at": iso(f["created_at"])}
            for f in await self.store.feedback_of(run_id)
        ]
        out["agents"] = await self.store.agent_summary(run_id)
        if events:
            out["events"] = [e.to_json() for e in await self.store.events_since(run_id, 0, limit=1_000_000)]
        return out

    async def _next_live(self, sub: Subscription, run_id: str | None) -> Event | Gap | None:
        """The next event published here, or None when another process may have written some.

        Runs driven in this process publish on the bus; runs driven elsewhere are
        only in the store, and a NOTIFY (PostgreSQL) or a short timeout says when to look.
        """
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

    def subscribe(self, run_id: str | None = None, maxsize: int | None = None) -> Subscription:
        """Live events of runs driven in this process (see ``follow`` for a gap-free stream)."""
        return self.bus.subscribe(run_id, maxsize)

    async def follow(self, run_id: str | None, since_id: int = 0, maxsize: int | None = None) -> AsyncIterator[Event]:
        """Every event after ``since_id``, then live ones, in id order, with no gaps or repeats.

        Reads the store first and whenever the subscription reports a ``Gap``,
        so a slow reader catches up from the database instead of slowing the run.
        """
        sub = self.bus.subscribe(run_id, maxsize)
        last = since_id
        try:
            for event in await self.store.events_since(run_id, last):
                last = event.id
                yield event
            while True:
                item = await self._next_live(sub, run_id)
                if item is None:  # woken by another process (or a quiet spell): read what it committed
                    for event in await self.store.events_since(run_id, last):
                        last = event.id
                        yield event
                    continue
                if isinstance(item, Gap):
                    for event in await self.store.events_since(run_id, last):
                        last = event.id
                        yield event
                    continue
                if item.id > last:
                    last = item.id
                    yield item
        finally:
            sub.close()


FOLLOW_POLL_S = 0.5  # how often ``follow`` re-reads the store when nothing wakes it


def _tokens(row: dict[str, Any]) -> dict[str, int]:
    p, c = row["prompt_tokens"], row["completion_tokens"]
    return {"prompt": p, "completion": c, "total": p + c}
