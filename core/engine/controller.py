"""The run controller: drives one run to its end, work-conserving and durable.

Decisions are taken synchronously on the in-memory ``RunState`` (so two
coroutines can never take the same decision), through the transitions and
deciders shared with offline actions, then committed through the group
writer as a compare-and-set, and only then published on the bus. An
attempt's executor starts while its ``running`` record is being committed (a
fraction of a millisecond; waiting for it would put a commit on the critical
path of every step), and its result is applied only once that record is
durable: a crash in between leaves the step ``pending`` in the store, which
runs it again under the same attempt number, exactly as the store says. A
step starts the moment its dependencies are met and a slot is free; a retry
waits on a timer while every other step goes on; an approval gate holds only
its own step (and, with ``stop_on_approval_required``, new launches).

Its parts, each in a module of its own: ``attempts`` (the executor call,
timeouts, streamed output), ``holdings`` (an attempt's slot, reservation and
probe, taken and given back together), ``metering`` (each model call's budget
and span), ``tool_calls`` (each tool call recorded, gated and run), ``routing`` (breakers and
alternatives), ``slot_pool`` (agent limits across processes), ``commits``
(writes published once durable), ``supervision`` (nothing dies unnoticed),
``transitions`` and ``actions`` (every change of status). A
commit that fails (the store is gone, or a compare-and-set found the row
changed: another process took the run over) stops the controller; the
database stays the truth, and ``resume`` continues from it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from core.cluster.commands import CommandChannel
from core.cluster.slots import SlotBroker
from core.engine import actions, transitions
from core.engine.attempts import AttemptRunner, Outcome
from core.engine.breaker import BreakerBoard
from core.engine.budget import Budget
from core.engine.bus import EventBus
from core.engine.commits import Commits
from core.engine.deadlines import Deadlines
from core.engine.delegation import Delegation
from core.engine.holdings import Holdings
from core.engine.known_plans import KnownPlans
from core.engine.metering import Metering
from core.engine.routing import Routing
from core.engine.run_state import RunMode, RunState, StepState
from core.engine.slot_pool import SlotPool
from core.engine.supervision import Supervisor
from core.engine.tool_calls import ToolCalls
from core.engine.transitions import Effects
from core.errors import LoopdeckError
from core.executors import AttemptFailed, ChildRuns, Executor, Result
from core.model import commands
from core.model.events import EventType
from core.model.plan import stored_plan
from core.model.states import CallStatus, RunStatus, StepStatus
from core.store import Notifier, Store, WriteBatch
from core.tools import Toolbox

E = EventType
S = StepStatus


class RunController:
    """Drives one run. Create it with ``load`` (the run must already be in the store)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        run: RunState,
        *,
        owner: str,
        lease_ttl_s: float,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        executors: dict[str, Executor] | None = None,
        breakers: BreakerBoard | None = None,
        shared_slots: bool = False,
        notifier: Notifier | None = None,
        children: ChildRuns | None = None,
    ) -> None:
        self.store, self.bus, self.run = store, bus, run
        self.run_id = run.run_id
        self.owner, self.lease_ttl_s, self.poll_s, self.clock = owner, lease_ttl_s, poll_s, clock
        self.notifier = notifier or Notifier(None)
        self.sup = Supervisor(run.run_id, lambda: self.attempts.leave(), self._fail)  # (attempts: made below)
        self.commits = Commits(store, bus, self.sup)
        self.routing = Routing(run, breakers or BreakerBoard(clock), clock, self.commits.emit, self.sup.schedule)
        run.index.set_admits(self._admits)
        broker = SlotBroker(store, f"{owner}:{run.run_id}", lease_ttl_s) if shared_slots else None
        self.slots = SlotPool(run, broker, self.sup.spawn, self.sup.fatal, self._pump)
        toolbox = Toolbox(run.plan.skills, run.plan.mcp_servers)
        self.tool_calls = ToolCalls(run, self.commits, clock, toolbox, self.routing.board)
        self.holdings = Holdings(run, self.slots, self.routing)
        self.metering = Metering(run, self.holdings, self.commits, clock, self._budget_exhausted)
        self.deadlines = Deadlines(run, clock, self.sup.schedule, self._follow)
        self.tool_calls.gated = self.deadlines.sync  # a call that asks may have a deadline
        self.tool_calls.builtin = Delegation(run, self._follow, clock).call  # delegate, propose_steps
        self.attempts = AttemptRunner(
            run,
            self.sup.spawn,
            self.sup.guarded,
            self._attempt_ended,
            self._record_stale,
            self._partial_output,
            executors,
            self.tool_calls.session,
            self.metering.meter,
            children,
        )
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._rng = random.Random(run.run_id)

    @property
    def status(self) -> RunStatus:
        return self.run.status

    @classmethod
    async def load(
        cls, store: Store, bus: EventBus, run_id: str, known_plans: KnownPlans | None = None, **kwargs: Any
    ) -> RunController:
        """The run as stored, ready to drive. ``known_plans``: plans this process validated as it created their
        runs; a plan stored by anything else is validated again."""
        record, text = await store.get_run_and_plan_text(run_id)
        plan = known_plans.recall(run_id, text) if known_plans is not None else None
        if plan is None:
            plan = stored_plan(run_id, text)
        run = RunState.from_records(record, plan, await store.get_steps(run_id), calls=await store.calls_of(run_id))
        board = kwargs.setdefault("breakers", BreakerBoard(kwargs.get("clock", time.time)))
        targets = {cfg.breaker_target(n) for n, cfg in plan.agents.items()}
        targets |= {cfg.breaker_target(n) for n, cfg in plan.mcp_servers.items()}  # each MCP server's breaker
        for row in await store.load_breakers(sorted(targets)):
            board.restore(row)
        return cls(store, bus, run, **kwargs)

    # -- the drive loop ----------------------------------------------------------------

    async def drive(self) -> RunStatus:
        """Run until the run ends (or this controller must stop); return the final status."""
        self.sup.done = asyncio.get_running_loop().create_future()
        if self.run.status.terminal:
            return self.run.status
        channel = CommandChannel(self.store, self.notifier)
        side = [
            self.sup.spawn(self._heartbeat(), "the lease heartbeat"),
            self.sup.spawn(channel.serve(self.run_id, self._serve, self.poll_s), "the commands inbox"),
        ]
        try:
            self._recover()
            self._pump()
            return await self.sup.done
        finally:
            self.sup.stopped = True
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            for handle in self._timers.values():
                handle.cancel()
            self.routing.cancel_timers()
            self.deadlines.cancel_all()
            await self.tool_calls.toolbox.aclose()  # the run's MCP servers stop with it
            await self.attempts.close()  # timed-out attempts in threads are left behind: never kept alive for
            await self.commits.settle()
            await self.slots.close()

    def _recover(self) -> None:
        """Requeue steps a dead driver left running, skip what their outcomes doom, start the run."""
        run, now, effects = self.run, self.clock(), Effects()
        first_drive = run.status == RunStatus.PLANNING
        for call in run.calls.values():
            if call.status == CallStatus.RUNNING:  # the tool may have run, or not: the operator says what now
                transitions.interrupt_call(run, call, effects.batch, now)
        for step in run.steps.values():
            if step.status == S.RUNNING:
                transitions.requeue_interrupted(run, step, effects.batch, now)
        for step in list(run.steps.values()):
            if step.status.terminal:
                transitions.settle(run, step, effects, now)  # dependents already skipped are left as they are
        if run.mode == RunMode.PAUSED:
            run.set_mode(RunMode.ACTIVE)  # the budget is looked at again at the next launch
        kind = E.RUN_STARTED if first_drive else E.RUN_RESUMED
        if run.proposal is not None:  # still waiting for the operator's review
            transitions.set_run_status(
                run, RunStatus.AWAITING_PLAN_APPROVAL, actions.proposal_reason(run), effects.batch, now, kind
            )
        else:
            transitions.set_run_status(run, RunStatus.RUNNING, None, effects.batch, now, kind)
        self.commits.emit(effects.batch)
        for step in sorted(run.steps.values(), key=lambda s: s.idx):
            if step.status == S.PENDING and run.index.is_unblocked(step.key):
                self._when_ready(step)

    def _when_ready(self, step: StepState) -> None:
        """A step's dependencies are met: gate it, wait out its backoff, or queue it."""
        if not self.run.live or step.status != S.PENDING:
            return
        why = transitions.gate_reason(self.run, step)
        if why is not None:
            batch = WriteBatch()
            transitions.gate(self.run, step, batch, self.clock(), why)
            self.commits.emit(batch)
            return
        delay = (step.not_before or 0) - self.clock()
        if delay > 0:
            self._timers[step.key] = self.sup.schedule(
                delay, f'the retry timer of step "{step.key}"', self._timer_fired, step.key
            )
            return
        self.routing.route(step)
        self.run.index.push_ready(step.key)

    def _timer_fired(self, key: str) -> None:
        self._timers.pop(key, None)
        step = self.run.steps[key]
        if step.status == S.PENDING and self.run.live:
            self.routing.route(step)
            self.run.index.push_ready(key)
            self._pump()

    def _holds_launches(self) -> bool:
        run = self.run
        return run.mode != RunMode.ACTIVE or (bool(run.waiting) and run.policy.stop_on_approval_required)

    def _pump(self) -> None:
        """Start every launchable step, then see whether the run waits or has ended."""
        run = self.run
        if run.mode == RunMode.ENDING:
            return
        self.metering.wake()  # model calls waiting for budget look again
        self.deadlines.sync()  # gates that wait have their deadlines armed
        while not self._holds_launches():
            key = run.index.pop_launchable()
            if key is None:
                break
            cap = run.policy.max_iterations
            if cap is not None and run.launches >= cap:
                run.index.push_ready(key)
                self._end(RunStatus.FAILED, f"max_iterations ({cap}) reached: the run launched {run.launches} attempts")
                return
            step = run.steps[key]
            lacking = self.holdings.lacking(key, step.agent)
            if lacking is not None:
                run.index.push_ready(key)
                if run.index.running == 0:  # nothing in flight can free room: the budget is spent
                    self._budget_exhausted(*lacking)
                return  # otherwise wait for running steps to settle their reservations
            self._launch(step)
        self.routing.arm_timers(self._pump)
        self.slots.return_spare(everything=run.mode in (RunMode.DRAINING, RunMode.ENDING))
        self._check_idle()

    def _check_idle(self) -> None:
        run, running = self.run, self.run.index.running
        if run.mode == RunMode.DRAINING:
            if running == 0 and not self.attempts.tasks:
                self.sup.finish(run.status)  # handed back as it is: another process carries on
            return
        if run.mode != RunMode.ACTIVE:  # paused, reviewing or ending: nothing to decide here
            return
        blocked = run.index.ready_count == 0 and not self._timers
        if run.waiting and running == 0 and (blocked or run.policy.stop_on_approval_required):
            if run.status != RunStatus.WAITING_USER:
                batch = WriteBatch()
                keys = sorted(run.waiting, key=lambda k: run.steps[k].idx)
                transitions.set_run_status(
                    run,
                    RunStatus.WAITING_USER,
                    f"waiting for approval of {', '.join(keys)}",
                    batch,
                    self.clock(),
                    E.RUN_WAITING,
                )
                self.commits.emit(batch)
            return
        if run.status == RunStatus.WAITING_USER and (running or not run.waiting or not blocked):
            batch = WriteBatch()
            transitions.set_run_status(run, RunStatus.RUNNING, None, batch, self.clock(), E.RUN_CONTINUED)
            self.commits.emit(batch)
        if running == 0 and blocked and not run.waiting and not self.attempts.tasks:
            self._end(*transitions.verdict(run))

    def _end(self, status: RunStatus, reason: str | None) -> None:
        """End the run: stop launching, close every unfinished step, write the run's verdict."""
        if self.run.mode == RunMode.ENDING:
            return
        effects = Effects()
        transitions.end_run(self.run, status, reason, effects, self.clock())
        self._follow(effects)

    def _fail(self, reason: str) -> bool:
        """End the run failed (a bug inside the engine); False if it is ending already."""
        if self.run.mode == RunMode.ENDING:
            return False
        self._end(RunStatus.FAILED, reason)
        return True

    def _budget_exhausted(self, budget: Budget, reason: str) -> None:
        if self.run.policy.on_budget_exhausted == "fail":
            self._end(RunStatus.FAILED, reason)
        elif self.run.mode != RunMode.PAUSED:
            self.commits.emit(actions.pause_for_budget(self.run, budget, reason, self.clock()).batch)

    def drain(self) -> None:
        """Launch nothing more; once the running attempts end, ``drive`` returns and the run is left as it is."""
        if self.run.mode != RunMode.ENDING:
            self.run.set_mode(RunMode.DRAINING)
            self._pump()

    # -- attempts -----------------------------------------------------------------------

    def _admits(self, agent: str) -> bool:
        """Whether the agent's breaker, and its slots shared with other processes, let an attempt start now."""
        return self.routing.polled(agent).can_admit() and self.slots.admits(agent)

    def _launch(self, step: StepState) -> None:
        run, now = self.run, self.clock()
        probe = self.holdings.take(step)
        run.index.started(step.key)
        run.launches += 1
        batch = WriteBatch()
        started: dict[str, Any] = {"attempt": step.attempts + 1, "agent": step.agent}
        if probe:
            started["probe"] = True
        transitions.move(
            run,
            step,
            "start",
            batch,
            now,
            (E.STEP_STARTED, started),
            attempts=step.attempts + 1,
            started_at=now,
            ended_at=None,
            not_before=None,
        )
        self.attempts.launch(step, step.attempts, self.commits.emit(batch))

    def _attempt_ended(self, step: StepState, attempt: int, outcome: Outcome) -> None:
        if step.status != S.RUNNING or step.attempts != attempt or self.run.mode == RunMode.ENDING:
            self._record_stale(
                step,
                attempt,
                isinstance(outcome, AttemptFailed),
                "the attempt is no longer current; its result was recorded and not applied",
            )
            return
        now, usage, effects = self.clock(), outcome.usage, Effects()
        self.run.index.stopped(step.key)
        error = None if isinstance(outcome, Result) else str(outcome)
        agent_ok = error is None or not outcome.agent_fault  # type: ignore[union-attr]
        spent = self.holdings.give_back(
            step,
            effects.batch,
            now,
            "succeeded" if error is None else "failed",
            usage.total,
            usage.prompt_tokens,
            usage.completion_tokens,
            error,
            agent_ok=agent_ok,
            priced=outcome.cost_usd,
        )
        transitions.attempt_ended(self.run, step, attempt, outcome, effects, now, self._rng, spent)
        if isinstance(outcome, Result) and isinstance(outcome.output, dict) and "replan" in outcome.output:
            # decided before anything launches: a proposal under review holds the steps it just released
            self._follow(effects, actions.propose(self.run, step, outcome.output["replan"], now))
        else:
            self._follow(effects)

    def _record_stale(self, step: StepState, attempt: int, failed: bool, reason: str) -> None:
        batch = WriteBatch()
        transitions.stale_result(self.run, step, attempt, failed, reason, batch, self.clock())
        self.commits.emit(batch)

    def _partial_output(self, key: str, attempt: int, text: str) -> None:
        """Streamed output so far (a coalesced piece): an event, so every dashboard can fill in live."""
        batch = WriteBatch()
        batch.event(self.run_id, E.STEP_OUTPUT_PARTIAL, key, {"attempt": attempt, "text": text}, self.clock())
        self.commits.emit(batch)

    # -- operator actions -------------------------------------------------------------------

    async def perform(self, command: commands.Command, user: str) -> None:
        """Carry out an operator action: the decider shared with offline actions, applied live."""
        effects = actions.decide(self.run, command, user, self.clock())
        write = self._follow(effects)
        if command.kind in commands.ENDS_RUN and self.sup.done is not None:  # the run ends: wait for its driver
            await asyncio.wait({self.sup.done})  # (a cancel of the drive is not this caller's to raise)
            if write.done() and not write.cancelled() and (failed := write.exception()) is not None:
                raise failed  # the end was not recorded
        else:
            await asyncio.shield(write)

    async def _serve(self, kind: str, payload: dict[str, Any], user: str) -> None:
        """A command from another process (``loopdeck approve`` in another terminal); a cancel is not awaited."""
        effects = actions.decide(self.run, commands.from_payload(kind, payload), user, self.clock())
        write = self._follow(effects)
        if kind not in commands.ENDS_RUN:
            await asyncio.shield(write)

    def _follow(self, *decisions: Effects) -> asyncio.Future[list[int]]:
        """Commit decisions' writes (in order), then do what follows: stop ended attempts, drop timers,
        queue the steps whose dependencies are met, launch."""
        write: asyncio.Future[list[int]] | None = None
        for effects in decisions:
            for key in effects.unqueued:
                handle = self._timers.pop(key, None)
                if handle is not None:
                    handle.cancel()
            if effects.ended is not None:
                self._stop_ended(effects)
            write = self.commits.emit(effects.batch)
            if effects.calls:
                write.add_done_callback(self._calls_answered(list(effects.calls)))
        assert write is not None
        if self.run.mode == RunMode.ENDING:
            write.add_done_callback(lambda _: self.sup.finish(self.run.status))
            return write
        for effects in decisions:
            for key in effects.ready:
                if key in self.run.steps:  # (a replan may have removed it since)
                    self._when_ready(self.run.steps[key])
        self._pump()
        return write

    def _calls_answered(self, ids: list[str]) -> Callable[[asyncio.Future[list[int]]], None]:
        """Once the operator's answer to these tool calls is durable, their attempts go on."""

        def done(write: asyncio.Future[list[int]]) -> None:
            if not write.cancelled() and write.exception() is None:
                self.tool_calls.answered(ids)

        return done

    def _stop_ended(self, effects: Effects) -> None:
        """The run ended: its running attempts are stopped, their reservations and slots released."""
        now = self.clock()
        self.attempts.cancel_all()
        for key in effects.ended or []:
            step = self.run.steps[key]
            self.run.index.stopped(key)
            self.holdings.give_back(step, effects.batch, now, "canceled", None)
        self.slots.return_spare(everything=True)

    # -- the side tasks -------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            extras = [self.store.renew_lease_extra(self.run_id, self.owner, self.lease_ttl_s)]
            renew_slots = self.slots.renew_extra()
            if renew_slots is not None:
                extras.append(renew_slots)
            try:
                await self.store.write(WriteBatch(extras=extras))
                if await self.routing.adopt(self.store, ending=self.run.mode == RunMode.ENDING):
                    self._pump()
            except LoopdeckError as exc:
                self.sup.fatal(exc)
                return
