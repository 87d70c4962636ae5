"""Operator actions: each a typed command, carried out where the run is.

By the controller that drives it in this process (LIVE), through the command
channel to the process that drives it elsewhere (REMOTE), or, on a run nobody
drives, decided on the run as the store has it and committed there (OFFLINE).
The same decider (``engine.actions.decide``) decides all three.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from core.cluster.lease import Holder, holder_state
from core.errors import BadInput, LoopdeckError, StaleWrite, TransitionError
from core.lazy import LazyModule
from core.model import commands
from core.model.events import EventType
from core.orchestrator.base import Delivery, OrchestratorBase
from core.store import RunRecord, Store, WriteBatch
from core.values import checked_input

if TYPE_CHECKING:
    from core import tools
    from core.engine import actions
else:  # the engine loads when an action is decided, not for a listing (core.lazy)
    actions = LazyModule("core.engine.actions")
    tools = LazyModule("core.tools")


class Acting(OrchestratorBase):
    """Operator actions, carried out where the run is (one decider: ``engine.actions``)."""

    async def approve(
        self,
        run_id: str,
        key: str,
        *,
        user: str | None = None,
        reason: str | None = None,
        input: Any = ...,
        timeout_s: float = 10.0,
    ) -> Delivery:
        """Approve a waiting step (optionally with edited input), wherever the run is driven."""
        edited = commands.KEEP if input is ... else checked_input(input)
        if edited is not commands.KEEP:
            state, _ = await self.run_state(await self.store.resolve_run_id(run_id))
            schema = state.step(key).spec.input_schema
            if schema is not None:
                try:
                    tools.check_arguments(key, schema, edited, what=f'the edited input of step "{key}"')
                except tools.ToolError as exc:
                    raise BadInput(str(exc)) from None
        return await self.act(run_id, commands.Approve(key, reason, edited), user=user, timeout_s=timeout_s)

    async def reject(
        self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None, timeout_s: float = 10.0
    ) -> Delivery:
        return await self.act(run_id, commands.Reject(key, reason), user=user, timeout_s=timeout_s)

    async def retry(self, run_id: str, key: str, *, user: str | None = None, timeout_s: float = 10.0) -> Delivery:
        """Give a failed step one more attempt (its skipped dependents wait for it again)."""
        return await self.act(run_id, commands.Retry(key), user=user, timeout_s=timeout_s)

    async def skip(
        self, run_id: str, key: str, *, user: str | None = None, reason: str | None = None, timeout_s: float = 10.0
    ) -> Delivery:
        """Skip a step that has not run yet (pending or waiting for approval)."""
        return await self.act(run_id, commands.Skip(key, reason), user=user, timeout_s=timeout_s)

    async def cancel(
        self, run_id: str, *, user: str | None = None, reason: str | None = None, timeout_s: float = 10.0
    ) -> Delivery:
        delivery = await self.act(run_id, commands.Cancel(reason), user=user, timeout_s=timeout_s)
        await self._cancel_children(run_id)
        return delivery

    async def _cancel_children(self, run_id: str) -> None:
        """A canceled run's unfinished child runs are canceled too (a driver does it itself; nobody else would)."""
        for child in await self.store.children_of(await self.store.resolve_run_id(run_id)):
            if not child.status.terminal:
                with contextlib.suppress(LoopdeckError):
                    await self.cancel(child.id, user="loopdeck", reason=f"its parent run {run_id} was canceled")

    async def finish(
        self,
        run_id: str,
        *,
        answer: Any = ...,
        status: str = "succeeded",
        reason: str | None = None,
        user: str | None = None,
        timeout_s: float = 10.0,
    ) -> Delivery:
        """End the run now: running attempts canceled, what has not run skipped, the run ``status``.

        ``answer`` (any JSON value) is the run's answer; left out, the answer is
        what its final steps produced. Refused on a run that already ended.
        """
        if status not in commands.FINISH_STATUSES:
            raise BadInput(f"--status is succeeded or failed, not {status!r}")
        given = answer is not ...
        command = commands.Finish(checked_input(answer) if given else None, status, reason, given)
        return await self.act(run_id, command, user=user, timeout_s=timeout_s)

    async def set_budget(
        self,
        run_id: str,
        limit: float | None,
        *,
        usd: bool = False,
        user: str | None = None,
        timeout_s: float = 10.0,
    ) -> Delivery:
        """Set a run's token budget, or with ``usd`` its budget in dollars (``None``: no limit); a run paused
        on its budget continues."""
        return await self.act(run_id, commands.SetBudget(limit, usd), user=user, timeout_s=timeout_s)

    async def replan(
        self,
        run_id: str,
        steps: Any,
        *,
        mode: str = "append",
        user: str | None = None,
        reason: str | None = None,
        timeout_s: float = 10.0,
    ) -> Delivery:
        """Append steps to a live run, or replace its steps that have not started (``replace_pending``)."""
        return await self.act(run_id, commands.Replan(steps, mode, reason), user=user, timeout_s=timeout_s)

    async def approve_plan(
        self,
        run_id: str,
        *,
        approve: bool = True,
        user: str | None = None,
        reason: str | None = None,
        plan: Any = None,
        steps: Any = None,
        timeout_s: float = 10.0,
    ) -> Delivery:
        """Approve or reject the plan a run awaits review of, wherever the run is driven.

        For a run that has not started, ``plan`` replaces the proposed plan (it is
        validated first) and rejecting ends the run ``rejected``. For a replan an
        agent proposed mid-run, ``steps`` replaces the proposed steps and rejecting
        drops the proposal: the run goes on with its current plan.
        """
        if plan is not None and not isinstance(plan, dict):
            plan = plan.model_dump(mode="json", exclude_unset=True)
        return await self.act(run_id, commands.DecidePlan(approve, reason, steps, plan), user=user, timeout_s=timeout_s)

    async def decide_call(
        self,
        run_id: str,
        call_id: str,
        *,
        approve: bool = True,
        arguments: Any = ...,
        reason: str | None = None,
        always: bool = False,
        user: str | None = None,
        timeout_s: float = 10.0,
    ) -> Delivery:
        """Answer a tool call that waits: run it (``arguments`` replace the model's) or refuse it (the model
        gets ``reason``). Edited arguments must be valid for the tool's input schema (``BadInput`` lists why).
        ``always``: also allow this tool for the rest of the run (a rule added to it, as an event)."""
        edited = commands.KEEP
        if arguments is not ...:
            if not approve:
                raise BadInput("edited arguments go with an approval; a rejected call does not run")
            edited = checked_input(arguments)
            run_id = await self.store.resolve_run_id(run_id)
            state, _ = await self.run_state(run_id)
            tool = state.call(call_id).tool
            try:
                tools.check_arguments(tool, await self._schema_of(run_id, call_id, tool, state.plan.skills), edited)
            except tools.ToolError as exc:
                raise BadInput(str(exc)) from None
        command = commands.DecideCall(call_id, approve, reason, edited, always)
        return await self.act(run_id, command, user=user, timeout_s=timeout_s)

    async def _schema_of(self, run_id: str, call_id: str, tool: str, skills: dict[str, str]) -> dict[str, Any]:
        """The input schema of a call's tool: a skill's from its signature; an MCP tool's as the call recorded it
        when it began to wait (starting the server here only to read a schema would run its side effects)."""
        if ":" not in tool:
            return tools.Toolbox(skills).spec(tool).input_schema
        for event in reversed(await self.store.events_since(run_id, 0, limit=1_000_000)):
            if event.type == EventType.TOOL_CALL_WAITING and event.payload.get("call") == call_id:
                return event.payload.get("schema") or {"type": "object"}
        return {"type": "object"}

    async def act(
        self, run_id: str, command: commands.Command, *, user: str | None = None, timeout_s: float = 10.0
    ) -> Delivery:
        """Carry out an action where the run is: here, through the driving process, or in the store."""
        user = user or self.user
        run_id = await self.store.resolve_run_id(run_id)
        controller = self._controllers.get(run_id)
        if controller is not None:
            await controller.perform(command, user)
            return Delivery.LIVE
        run = await self.store.get_run(run_id, plan=False)
        if isinstance(command, commands.ON_A_STEP) and self._driven_elsewhere(run):
            # its driver decides (and refuses with the same words): neither the engine nor the plan loads here
            await self.step(run_id, command.step)  # (an unknown step is still bad input, refused here: exit 2)
            return await self._send(run, command, user, timeout_s)
        state, run = await self.run_state(run_id, lenient=command.kind in commands.ENDS_RUN)
        effects = actions.decide(state, command, user, self.clock())  # refused here, before anything is queued
        if self._driven_elsewhere(run):
            return await self._send(run, command, user, timeout_s)
        await self._commit_offline(run_id, command, effects)
        return Delivery.OFFLINE

    async def _send(self, run: RunRecord, command: commands.Command, user: str, timeout_s: float) -> Delivery:
        """Through the command channel to the process that drives the run, which applies it."""
        driver = f"pid {run.lease.pid} on {run.lease.host}" if run.lease else "another process"
        await self.channel.send(run.id, command.kind, commands.to_payload(command), user, timeout_s, driver)
        return Delivery.REMOTE

    def _driven_elsewhere(self, run: RunRecord) -> bool:
        """Whether the live run's lease is held by a live process other than this one's controllers."""
        if run.status.terminal:
            return False  # (its driver is letting go: the store answers)
        held = holder_state(run.lease, self.identity, time.time(), set(self._live_owners()))
        return held in (Holder.ALIVE_HERE, Holder.ALIVE_ELSEWHERE)

    async def _commit_offline(self, run_id: str, command: commands.Command, effects: actions.Effects) -> None:
        """Nobody drives the run: commit the decision made on it as the store has it; ``resume`` carries on."""
        try:
            await self._write_and_publish(effects.batch)
        except StaleWrite as exc:
            raise TransitionError(
                f"run {run_id} changed while the {command.kind} was being applied; "
                f"look again (`loopdeck show {run_id}`)"
            ) from exc

    async def feedback(
        self,
        run_id: str,
        key: str,
        rating: str,
        *,
        comment: str | None = None,
        category: str | None = None,
        user: str | None = None,
    ) -> None:
        """Thumbs up or down on a finished step, with an optional comment and category."""
        if rating not in ("up", "down"):
            raise BadInput(f"feedback is 'up' or 'down', not {rating!r}")
        user = user or self.user
        run_id = await self.store.resolve_run_id(run_id)
        step = await self.step(run_id, key)
        if step.status.value not in ("succeeded", "failed"):
            raise TransitionError(
                f'step "{key}" is {step.status.value}; only a finished (succeeded or failed) step can be rated'
            )
        now = self.clock()
        payload = {"rating": rating, "comment": comment, "category": category, "user": user, "agent": step.agent}
        batch = WriteBatch(
            extras=[
                Store.feedback_extra(
                    {
                        "run_id": run_id,
                        "step_key": key,
                        "agent": step.agent,
                        "rating": rating,
                        "comment": comment,
                        "category": category,
                        "created_by": user,
                        "created_at": now,
                    }
                )
            ]
        )
        batch.event(run_id, EventType.STEP_FEEDBACK, key, payload, now)
        await self._write_and_publish(batch)
