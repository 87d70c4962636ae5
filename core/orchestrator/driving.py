"""Creating runs and driving them to their end, holding the run's lease."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cluster.lease import Holder, holder_state
from core.config import default_token_budget
from core.errors import LeaseHeld, LeaseLost, LoopdeckError, StaleWrite, TransitionError
from core.lazy import LazyModule
from core.model import commands
from core.model.events import EventType, iso
from core.model.states import RunStatus
from core.orchestrator.acting import Acting
from core.store import (
    COMMANDS_CHANNEL,
    RunRecord,
    Store,
    WriteBatch,
)
from core.values import dumps

if TYPE_CHECKING:
    from core import executors
    from core.engine import actions, deadlines, run_state
    from core.engine.known_plans import KnownPlans
    from core.executors import Result
    from core.model import plan as plans
    from core.model.plan import Plan
else:  # the engine loads when a run is created, driven or decided on, not for a listing (core.lazy)
    actions = LazyModule("core.engine.actions")
    executors = LazyModule("core.executors")
    plans = LazyModule("core.model.plan")
    deadlines = LazyModule("core.engine.deadlines")
    run_state = LazyModule("core.engine.run_state")


class Driving(Acting):
    """Creating runs and driving them: the lease first, a plan review waited out, then the controller."""

    async def create_run(
        self,
        plan: Plan,
        *,
        user: str | None = None,
        proposed_by: str | None = None,
        hold: bool = False,
        planning_tokens: tuple[int, int] = (0, 0),
        profile: dict[str, Any] | None = None,
        parent: tuple[str, str] | None = None,
    ) -> str:
        """Store a new run of ``plan`` and return its id.

        ``hold``: this process will drive it, so the run is created holding its
        lease (a worker on the same database must not claim it first).
        ``planning_tokens``: (prompt, completion) the planner spent writing the
        plan; they count toward the run's totals and its budget.
        ``profile``: the harness profile the plan was resolved with (``core.resolve_plan``), recorded.
        ``parent``: (run, step) when this is the child run of a sub_agent step (``run_child``).

        With ``plan_approval: required`` the run waits in ``awaiting_plan_approval``
        until an operator approves its plan (``approve_plan``); otherwise it is
        ``planning`` until a driver starts it.

        A driver in this process takes ``plan`` itself rather than validate the stored copy again, if
        ``validate_plan`` returned it and it is unchanged (``core.engine.known_plans``): change it no more
        while the run is driven.
        """
        now = self.clock()
        run_id = self.run_ids(now)
        review = plan.policy.plan_approval == "required"
        status = RunStatus.AWAITING_PLAN_APPROVAL if review else RunStatus.PLANNING
        run_row = {
            "id": run_id,
            "goal": plan.goal,
            "status": status.value,
            "reason": f"waiting for an operator to approve the plan (`loopdeck approve-plan {run_id}`)"
            if review
            else None,
            "plan_json": (text := plan.model_dump_json()),
            # a plan silent on its budget gets the environment's or the configuration's; an explicit null stays
            "token_budget": plan.policy.token_budget
            if "token_budget" in plan.policy.model_fields_set
            else default_token_budget(),
            "cost_budget_usd": plan.policy.cost_budget_usd,
            "deadline": now + plan.policy.approval_timeout_s if review and plan.policy.approval_timeout_s else None,
            "prompt_tokens": planning_tokens[0],
            "completion_tokens": planning_tokens[1],
            "created_by": user or self.user,
            "created_at": now,
            "updated_at": now,
            "ended_at": None,
            "proposal_json": None,
            "hold": None,
            "profile_json": dumps(profile) if profile is not None else None,
            "parent_run_id": parent[0] if parent else None,
            "parent_step": parent[1] if parent else None,
        }
        if hold:
            run_row.update(
                lock_owner=self.identity.owner,
                lock_host=self.identity.host,
                lock_pid=self.identity.pid,
                locked_until=time.time() + self.lease_ttl_s,
            )
        step_rows = [run_state.new_step_row(run_id, i, spec, plan.agent_of(spec)) for i, spec in enumerate(plan.steps)]
        batch = WriteBatch(extras=[Store.insert_run_extra(run_row, step_rows)])
        created: dict[str, Any] = {"goal": plan.goal, "steps": len(step_rows), "user": user or self.user}
        if profile is not None:
            created["profile"] = profile["name"]
        if parent is not None:
            created["parent"] = {"run": parent[0], "step": parent[1]}
        if any(planning_tokens):
            created["tokens"] = {"prompt": planning_tokens[0], "completion": planning_tokens[1], "planning": True}
        batch.event(run_id, EventType.RUN_CREATED, None, created, now)
        if review:
            batch.event(
                run_id,
                EventType.RUN_PLAN_PROPOSED,
                None,
                {"by": proposed_by or user or self.user, "steps": [s.key for s in plan.steps], "status": status.value},
                now,
            )
        await self._write_and_publish(batch)
        self._plans_known().remember(run_id, text, plan)
        return run_id

    def _plans_known(self) -> KnownPlans:
        if self._known_plans is None:
            from core.engine.known_plans import KnownPlans  # (a plan's models are loaded: it was given one)

            self._known_plans = KnownPlans()
        return self._known_plans

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
            from core.engine.controller import RunController  # the engine loads when a run is driven

            controller = await RunController.load(
                self.store,
                self.bus,
                run_id,
                owner=self.identity.owner,
                lease_ttl_s=self.lease_ttl_s,
                poll_s=self.poll_s,
                breakers=self.breakers,
                clock=self.clock,
                shared_slots=self.shared_slots,
                notifier=self.notifier,
                children=self,
                known_plans=self._known_plans,
            )
            if self.traces is not None:  # live traces: its spans go out as they become durable
                controller.commits.observers.append(self.traces.observer(run_id, run.goal, run.created_at))
            notify = self.notifications.observer(run_id, run.goal, controller.run.policy)
            if notify is not None:  # people told when it waits for them or ends
                controller.commits.observers.append(notify)
            self._controllers[run_id] = controller
            return await controller.drive()
        finally:
            self._controllers.pop(run_id, None)
            with contextlib.suppress(Exception):
                await self.store.write(WriteBatch(extras=[self.store.release_lease_extra(run_id, self.identity.owner)]))

    # -- child runs: a sub_agent step's plan ----------------------------------------------------------------

    async def run_child(self, parent: str, step: str, plan: dict[str, Any]) -> Result:
        """Run the step's child run here to its end (``ChildRuns``): a new one, or after a crash the one it
        had (unfinished: driven on; succeeded: its answer taken). Its final output is the step's, its tokens
        and cost the attempt's; canceled, the child run is canceled too."""
        child = await self._child_of(parent, step, plan)
        self._child_runs.add(child)
        try:
            status = await self.drive(child, wait_for_lease=True)
        finally:
            self._child_runs.discard(child)
        record = await self.store.get_run(child, plan=False)
        usage, cost = executors.Usage(record.prompt_tokens, record.completion_tokens), record.cost_usd or 0.0
        if status == RunStatus.SUCCEEDED:
            return executors.Result(record.result.answer if record.result else None, usage, cost)
        said = record.reason or (record.result.summary if record.result else "")
        raise executors.AttemptFailed(  # the child had its own retries; the step's agent did nothing wrong
            f"child run {child} ended {status.value}" + (f": {said}" if said else ""),
            usage,
            retryable=False,
            agent_fault=False,
            cost_usd=cost,
        )

    async def cancel_child(self, parent: str, step: str) -> bool:
        found = False
        for record in await self.store.children_of(parent):
            if record.parent_step == step and not record.status.terminal:
                found = True
                with contextlib.suppress(LoopdeckError):  # (ending already: canceled by another)
                    await self.cancel(record.id, user="loopdeck", reason=f'its parent step "{step}" was canceled')
        return found

    async def _child_of(self, parent: str, step: str, plan: dict[str, Any]) -> str:
        for record in reversed(await self.store.children_of(parent)):
            if record.parent_step == step:
                if not record.status.terminal or record.status == RunStatus.SUCCEEDED:
                    return record.id  # a crash came between: go on with it (or take what it found)
                break  # it failed: this attempt is a new child run
        run = await self.store.get_run(parent, plan=False)
        data = dict(plan)
        policy = data["policy"] = dict(data.get("policy") or {})
        if run.token_budget is not None:  # the child spends from what the parent has left
            own = policy.get("token_budget")
            left = max(0, run.token_budget - run.tokens)
            policy["token_budget"] = left if own is None else min(own, left)
        else:  # no limit but its own: never one this process's configuration would add
            policy.setdefault("token_budget", None)
        if run.cost_budget_usd is not None:
            own_usd = policy.get("cost_budget_usd")
            left_usd = max(0.0, run.cost_budget_usd - (run.cost_usd or 0.0))
            policy["cost_budget_usd"] = left_usd if own_usd is None else min(own_usd, left_usd)
        child_plan = plans.validate_plan(data, source=f'the plan of step "{step}" of run {parent}')
        return await self.create_run(child_plan, hold=True, parent=(parent, step), user=run.created_by)

    async def _take_lease(self, run_id: str, wait: bool, on_wait: Callable[[str], None] | None) -> RunRecord:
        while True:
            run = await self.store.get_run(run_id, plan=False)
            lease = run.lease
            if (
                lease is not None
                and lease.owner == self.identity.owner
                and run_id not in self._controllers
                and run_id not in self._reviewing
            ):
                return run  # created holding its lease (``create_run(hold=True)``): ours already
            state = holder_state(lease, self.identity, time.time(), set(self._live_owners()))
            if state == Holder.ALIVE_HERE:
                raise LeaseHeld(
                    f"run {run_id} is being driven by pid {lease.pid if lease else '?'} on this machine; "
                    f"stop that process first, or act on the run with `loopdeck approve`/`cancel`"
                )
            if state == Holder.ALIVE_ELSEWHERE and lease is not None:
                wait_s = max(0.0, (lease.until or 0) - time.time())
                message = (
                    f"run {run_id} is driven by pid {lease.pid} on {lease.host}; its lease expires in {wait_s:.1f}s"
                )
                if not wait:
                    raise LeaseHeld(message)
                if on_wait:
                    on_wait(message + "; waiting")
                await asyncio.sleep(min(wait_s + 0.05, self.lease_ttl_s))
                continue
            try:
                await self.store.take_lease(
                    run_id,
                    self.identity.owner,
                    self.identity.host,
                    self.identity.pid,
                    self.lease_ttl_s,
                    lease.owner if lease else None,
                )
            except StaleWrite:
                continue  # someone else moved first: look again
            return run

    async def _await_plan_review(self, run_id: str) -> RunRecord:
        """Hold the lease of a run whose plan awaits review, serving its decisions as they arrive."""
        self._reviewing.add(run_id)
        renew_every, renewed = self.lease_ttl_s / 3, time.monotonic()
        try:
            async with self.notifier.interest(COMMANDS_CHANNEL, run_id) as decided:  # decisions come as commands
                while True:
                    run = await self.store.get_run(run_id, plan=False)
                    if run.status != RunStatus.AWAITING_PLAN_APPROVAL:
                        return run
                    if run.deadline is not None and self.clock() >= run.deadline:
                        await self._plan_review_timed_out(run)
                        continue
                    await self.channel.answer_queued(
                        run_id,
                        lambda kind, payload, user: self._while_reviewing(
                            run_id, commands.from_payload(kind, payload), user
                        ),
                    )
                    if time.monotonic() - renewed >= renew_every:
                        await self.store.write(
                            WriteBatch(
                                extras=[self.store.renew_lease_extra(run_id, self.identity.owner, self.lease_ttl_s)]
                            )
                        )
                        renewed = time.monotonic()
                    wait = self.poll_s
                    if run.deadline is not None:
                        wait = max(0.0, min(self.poll_s, run.deadline - self.clock()))
                    await decided.wait(wait)
        finally:
            self._reviewing.discard(run_id)

    async def _plan_review_timed_out(self, run: RunRecord) -> None:
        """Nobody reviewed the plan in time: approve it, reject it, or fail the run (``on_approval_timeout``)."""
        state, _ = await self.run_state(run.id)
        policy, now = state.policy, self.clock()
        action = policy.on_approval_timeout
        reason = f"the plan's review timed out after {policy.approval_timeout_s:g}s"
        command: commands.Command = (
            commands.Finish(status="failed", reason=reason)
            if action == "fail"
            else commands.DecidePlan(approve=action == "approve", reason=reason)
        )
        effects = actions.decide(state, command, deadlines.TIMEOUT_USER, now)
        payload = {"gate": "plan", "deadline": iso(run.deadline), "action": action}
        timed_out = WriteBatch()  # first in the log, then the decision
        timed_out.event(run.id, EventType.APPROVAL_TIMED_OUT, None, payload, now)
        await self._write_and_publish(timed_out)
        await self._commit_offline(run.id, command, effects)

    async def _while_reviewing(self, run_id: str, command: commands.Command, user: str) -> None:
        """What a run whose plan awaits review accepts: the decision, or an end (cancel, finish)."""
        if not isinstance(command, (commands.DecidePlan, commands.Cancel, commands.Finish)):
            raise TransitionError(
                f"run {run_id} is awaiting plan approval; approve or reject its plan first "
                f"(`loopdeck approve-plan {run_id}`)"
            )
        state, _ = await self.run_state(run_id)
        await self._commit_offline(run_id, command, actions.decide(state, command, user, self.clock()))
