"""The run controller: drives one run to its end, work-conserving and durable.

Decisions are taken synchronously on the in-memory state (so two coroutines
can never take the same decision), then committed through the group writer
as a compare-and-set, and only then published on the bus. An attempt's
executor starts while its ``running`` record is being committed (a fraction of
a millisecond; waiting for it would put a commit on the critical path of every
step), and its result is applied only once that record is durable: a crash in
between leaves the step ``pending`` in the store, which runs it again under the
same attempt number, exactly as the store says. A step starts the
moment its dependencies are met and a slot is free; a retry waits on a timer
while every other step goes on; an approval gate holds only its own step
(and, with ``stop_on_approval_required``, new launches).

A commit that fails (the store is gone, or a compare-and-set found the row
changed, i.e. another process took the run over) stops the controller: it
cancels its attempts and lets ``drive`` raise. The database stays the truth,
and ``resume`` continues from it.

Every task and timer the controller starts is supervised (``_spawn``,
``_guarded``): one that dies of an unexpected error fails the run with that
error recorded as its reason, instead of leaving a task exception nobody
retrieves and a run that never ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.engine.breaker import Breaker, BreakerBoard, BreakerChange
from core.engine.budget import TokenBudget, check_token_budget
from core.engine.bus import EventBus
from core.engine.coalesce import Coalescer
from core.model.context import Upstream, build_context
from core.errors import LeaseLost, LoopdeckError, PlanError, PlanIssue, StaleWrite, StepNotFound, TransitionError
from core.model.events import Event, EventType, iso
from core.executors import AttemptFailed, Executor, Result, StepCall, build_executor, safe_outcome
from core.executors.python import PythonExecutor
from core.model.plan import Backoff, Plan, StepSpec, validate_plan
from core.redaction import Redactor, StreamRedactor
from core.model.refs import RefError, find_refs, resolve
from core.model.replan import Replan, prepare_replan
from core.engine.scheduler import Scheduler
from core.model.skills import available_skills
from core.store.notify import Notifier
from core.cluster.slots import SlotBroker
from core.model.states import RunStatus, StepStatus, check_step
from core.store.store import Store
from core.executors.verdict import judge
from core.store.writer import COMMANDS_CHANNEL, WriteBatch

log = logging.getLogger("loopdeck.controller")

E = EventType
S = StepStatus
BREAKER_RECHECK_S = 1.0
PARTIAL_INTERVAL_S = 0.1  # streamed output: at most ~10 events per second per step
MAX_RETRY_AFTER_S = 3600.0


@dataclass
class StepState:
    """A step as the controller holds it: the spec plus its mutable row."""

    spec: StepSpec
    idx: int
    agent: str
    status: StepStatus
    attempts: int = 0
    input: Any = None
    output: Any = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    not_before: float | None = None
    approved_by: str | None = None
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def input_json(self) -> str:
        """The input encoded once (it changes only when an operator edits it)."""
        cached = self.__dict__.get("_input_json")
        if cached is None or cached[0] is not self.input:
            cached = (self.input, json.dumps(self.input))
            self.__dict__["_input_json"] = cached
        return cached[1]

    def row(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "status": self.status.value,
            "attempts": self.attempts,
            "input_json": self.input_json,
            "output_json": None if self.output is None else json.dumps(self.output, default=str),
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "not_before": self.not_before,
            "approved_by": self.approved_by,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_row(cls, spec: StepSpec, row: dict[str, Any]) -> "StepState":
        return cls(
            spec=spec,
            idx=row["idx"],
            agent=row["agent"],
            status=StepStatus(row["status"]),
            attempts=row["attempts"],
            input=json.loads(row["input_json"]) if row["input_json"] else None,
            output=json.loads(row["output_json"]) if row["output_json"] else None,
            error=row["error"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            not_before=row["not_before"],
            approved_by=row["approved_by"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
        )


def new_step_row(run_id: str, idx: int, spec: StepSpec, agent: str) -> dict[str, Any]:
    """The stored row of a step that has not started yet."""
    return {
        "run_id": run_id, "key": spec.key, "idx": idx, "title": spec.display_title, "type": spec.type,
        "agent": agent, "status": StepStatus.PENDING.value, "attempts": 0,
        "input_json": json.dumps(spec.input), "output_json": None, "error": None,
        "prompt_tokens": 0, "completion_tokens": 0, "not_before": None, "approved_by": None,
        "started_at": None, "ended_at": None,
    }


def record_replan(batch: WriteBatch, store: Store, run_id: str, change: Replan, first_idx: int, mode: str,
                  user: str | None, reason: str | None, now: float) -> None:
    """A replan's writes: the new plan, the step rows removed and added (from ``first_idx``), its audit event."""
    rows = [new_step_row(run_id, first_idx + i, spec, change.plan.agent_of(spec)) for i, spec in enumerate(change.added)]
    batch.extras.append(store.replan_extra(run_id, change.plan.model_dump_json(), change.removed, rows))
    batch.event(run_id, E.RUN_REPLANNED, None, {
        "mode": mode, "user": user, "reason": reason,
        "added": [s.key for s in change.added], "removed": change.removed,
    }, now)


def backoff_delay(backoff: Backoff, retry_number: int, rng: random.Random) -> float:
    """Seconds before retry ``retry_number`` (1-based); full jitter halves the mean, never the max."""
    try:
        raw = backoff.base_s * backoff.factor ** (retry_number - 1)
    except OverflowError:  # factor ** n past a float's range: the cap applies
        raw = backoff.max_s
    delay = min(backoff.max_s, raw)
    if backoff.jitter:
        delay = delay / 2 + rng.uniform(0, delay / 2)
    return delay


class RunController:
    """Drives one run. Create it with ``load`` (the run must already be in the store)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        run: dict[str, Any],
        plan: Plan,
        steps: dict[str, StepState],
        *,
        owner: str,
        lease_ttl_s: float,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        executors: dict[str, Executor] | None = None,
        breakers: BreakerBoard | None = None,
        shared_slots: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.run_id: str = run["id"]
        self.run = run
        self.plan = plan
        self.policy = plan.policy
        self.steps = steps
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.poll_s = poll_s
        self.clock = clock
        self.executors = executors or {name: build_executor(name, cfg) for name, cfg in plan.agents.items()}
        self._skills: dict[str, Executor] = {}
        self.status = RunStatus(run["status"])
        self.launches = sum(s.attempts for s in steps.values())
        self.breakers = breakers or BreakerBoard(clock)
        self._targets: dict[str, str] = {}  # agent name -> the target its breaker guards
        self._configure_breakers()
        self.budget = TokenBudget(run["token_budget"], run["prompt_tokens"] + run["completion_tokens"])
        self._budget_paused = False
        self.sched = Scheduler(
            self.policy.max_concurrency,
            {name: cfg.max_concurrency for name, cfg in plan.agents.items()},
            admits=self._agent_admits,
        )
        self._inflight: dict[str, tuple[bool, int]] = {}  # key -> (is breaker probe, tokens reserved)
        self._breaker_timers: dict[str, asyncio.TimerHandle] = {}
        self._held_noted: dict[str, float | None] = {}  # step key -> the breaker opening it was last told to wait for
        self._waiting: set[str] = {k for k, s in steps.items() if s.status == S.WAITING_USER}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._attempt_tasks: dict[str, asyncio.Task[None]] = {}
        self._writes: set[asyncio.Future[Any]] = set()
        self._abandoned: set[asyncio.Future[Any]] = set()  # timed-out attempts that cannot be interrupted
        self._side_tasks: list[asyncio.Task[None]] = []
        self._done: asyncio.Future[RunStatus] | None = None
        self._ending = False
        self._rng = random.Random(self.run_id)
        # an agent-proposed replan waiting for the operator (plan_approval: required)
        self._proposal: dict[str, Any] | None = json.loads(run.get("proposal_json") or "null")
        # agents' max_concurrency across processes: slots held in the database (workers on a shared database)
        self.slots = SlotBroker(store, f"{owner}:{self.run_id}", lease_ttl_s) if shared_slots else None
        self._tokens: dict[str, list[int]] = {}  # agent -> slots held and free for the next launch
        self._slot_of: dict[str, tuple[str, int]] = {}  # step key -> the slot its running attempt uses
        self._acquiring: dict[str, asyncio.Task[None]] = {}
        self._draining = False  # stop launching; hand the run back once nothing runs (graceful shutdown)
        self._stopped = False  # drive returned: late callbacks (abandoned attempts) record nothing
        self.notifier = notifier or Notifier(None)

    # -- construction ------------------------------------------------------------

    @classmethod
    async def load(cls, store: Store, bus: EventBus, run_id: str, **kwargs: Any) -> "RunController":
        run = await store.get_run(run_id)
        try:
            plan = validate_plan(json.loads(run["plan_json"]), source=f"run {run_id}")
        except PlanError as exc:  # stored by an older loopdeck, before a limit it breaks
            raise PlanError(exc.issues, f"run {run_id}'s stored plan, which this loopdeck refuses; "
                                        f"end it with `loopdeck cancel {run_id}`") from None
        rows = {row["key"]: row for row in await store.get_steps(run_id)}
        specs = {spec.key: spec for spec in plan.steps}
        steps = {key: StepState.from_row(specs[key], row) for key, row in rows.items()}
        board = kwargs.setdefault("breakers", BreakerBoard(kwargs.get("clock", time.time)))
        for row in await store.load_breakers(sorted({cfg.breaker_target(n) for n, cfg in plan.agents.items()})):
            board.restore(row)
        return cls(store, bus, run, plan, steps, **kwargs)

    # -- the drive loop ----------------------------------------------------------------

    async def drive(self) -> RunStatus:
        """Run until the run ends (or this controller must stop); return the final status."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        if self.status.terminal:
            return self.status
        self._side_tasks = [
            self._spawn(self._heartbeat(), "the lease heartbeat"),
            self._spawn(self._inbox(), "the commands inbox"),
        ]
        try:
            self._recover()
            self._pump()
            return await self._done
        finally:
            self._stopped = True
            for task in [*self._side_tasks, *self._acquiring.values()]:
                task.cancel()
            await asyncio.gather(*self._side_tasks, *self._acquiring.values(), return_exceptions=True)
            for handle in [*self._timers.values(), *self._breaker_timers.values()]:
                handle.cancel()
            for task in list(self._attempt_tasks.values()):
                task.cancel()
            await asyncio.gather(*self._attempt_tasks.values(), return_exceptions=True)
            # timed-out attempts still running in threads are left behind: they never keep the run alive
            await asyncio.gather(*list(self._writes), return_exceptions=True)
            for executor in self.executors.values():
                close = getattr(executor, "aclose", None)
                if close is not None:
                    await close()
            if self.slots is not None:
                held = [(a, s) for a, ss in self._tokens.items() for s in ss] + list(self._slot_of.values())
                try:
                    await self.slots.release(held)
                except LoopdeckError as exc:  # they expire with the lease anyway
                    log.warning("could not give back agent slots: %s", exc)

    def _recover(self) -> None:
        """Rebuild the index from the stored rows; requeue steps a dead driver left running."""
        batch = WriteBatch()
        now = self.clock()
        first_drive = self.status == RunStatus.PLANNING
        for state in sorted(self.steps.values(), key=lambda s: s.idx):
            self.sched.add(state.key, state.idx, state.agent, state.spec.depends_on,
                           state.spec.dependency_policy == "allow_skipped")
        self.sched.link()
        for state in self.steps.values():
            if state.status == S.RUNNING:
                self._requeue_interrupted(state, batch, now)
        for state in self.steps.values():
            if state.status.terminal:
                self._settle(state, batch, now)
        kind = E.RUN_STARTED if first_drive else E.RUN_RESUMED
        if self._proposal is not None:  # still waiting for the operator's review
            self._set_run_status(RunStatus.AWAITING_PLAN_APPROVAL, self._proposal_reason(), batch, now, kind)
        else:
            self._set_run_status(RunStatus.RUNNING, None, batch, now, kind)
        self._emit(batch)
        for state in sorted(self.steps.values(), key=lambda s: s.idx):
            if state.status == S.PENDING and self.sched.is_unblocked(state.key):
                self._when_ready(state)

    def _requeue_interrupted(self, state: StepState, batch: WriteBatch, now: float) -> None:
        expect = state.status
        batch.span(self.run_id, state.key, state.attempts, state.agent, "interrupted", state.started_at or now, now,
                   error="the process driving the run stopped during this attempt")
        if state.attempts >= self._max_attempts(state):
            state.status, state.error, state.ended_at = S.FAILED, (
                f"attempt {state.attempts} was interrupted when the driving process stopped, and no attempts are left"
            ), now
            batch.event(self.run_id, E.STEP_FAILED, state.key, {"attempt": state.attempts, "error": state.error}, now)
        else:
            check_step(state.key, state.status, "requeue")
            state.status, state.not_before = S.PENDING, None
            batch.event(self.run_id, E.STEP_REQUEUED, state.key,
                        {"attempt": state.attempts, "reason": "the process driving the run stopped during this attempt"}, now)
        batch.step(self.run_id, state.key, expect.value, state.attempts, state.row())

    # -- scheduling ----------------------------------------------------------------------

    def _when_ready(self, state: StepState) -> None:
        """A step's dependencies are met: gate it, wait out its backoff, or queue it."""
        if self._ending or state.status != S.PENDING:
            return
        if state.spec.approval == "required" and state.approved_by is None:
            self._gate(state)
            return
        delay = (state.not_before or 0) - self.clock()
        if delay > 0:
            self._timers[state.key] = asyncio.get_running_loop().call_later(
                delay, self._guarded, f'the retry timer of step "{state.key}"', self._timer_fired, state.key)
            return
        self._route(state)
        self.sched.push_ready(state.key)

    def _timer_fired(self, key: str) -> None:
        self._timers.pop(key, None)
        state = self.steps[key]
        if state.status == S.PENDING and not self._ending:
            self._route(state)
            self.sched.push_ready(key)
            self._pump()

    def _pump(self) -> None:
        """Start every launchable step, then see whether the run waits or has ended."""
        if self._ending:
            return
        hold = (bool(self._waiting) and self.policy.stop_on_approval_required) or self._budget_paused \
            or self._proposal is not None or self._draining
        while not hold:
            key = self.sched.pop_launchable()
            if key is None:
                break
            cap = self.policy.max_iterations
            if cap is not None and self.launches >= cap:
                self.sched.push_ready(key)
                self._end(RunStatus.FAILED, f"max_iterations ({cap}) reached: the run launched {self.launches} attempts")
                return
            state = self.steps[key]
            estimate = self._token_estimate(state)
            if not self.budget.fits(estimate):
                self.sched.push_ready(key)
                if self.sched.running == 0:  # nothing in flight can free room: the budget is spent
                    self._budget_exhausted(self.budget.shortfall(key, estimate))
                return  # otherwise wait for running steps to settle their reservations
            self._launch(state, estimate)
        self._arm_breaker_timers()
        self._return_spare_slots()
        self._check_idle()

    def _check_idle(self) -> None:
        if self._draining and self.sched.running == 0 and not self._attempt_tasks:
            if self._done is not None and not self._done.done():
                self._done.set_result(self.status)  # handed back as it is: another process carries on
            return
        if self._ending or self._proposal is not None:  # a proposed plan holds the run until it is decided
            return
        running = self.sched.running
        if self._budget_paused:
            return
        blocked = self.sched.ready_count == 0 and not self._timers
        if self._waiting and running == 0 and (blocked or self.policy.stop_on_approval_required):
            if self.status != RunStatus.WAITING_USER:
                batch = WriteBatch()
                keys = sorted(self._waiting, key=lambda k: self.steps[k].idx)
                self._set_run_status(RunStatus.WAITING_USER, f"waiting for approval of {', '.join(keys)}",
                                     batch, self.clock(), E.RUN_WAITING)
                self._emit(batch)
            return
        if self.status == RunStatus.WAITING_USER and (running or not self._waiting or not blocked):
            batch = WriteBatch()
            self._set_run_status(RunStatus.RUNNING, None, batch, self.clock(), E.RUN_CONTINUED)
            self._emit(batch)
        if running == 0 and blocked and not self._waiting and not self._attempt_tasks:
            self._finish()

    def _finish(self) -> None:
        """Nothing runs, waits or is queued: end the run with the status its steps earned."""
        unfinished = [s.key for s in self.steps.values() if not s.status.terminal]
        failed = [s for s in self.steps.values() if s.status == S.FAILED]
        rejected = [s.key for s in self.steps.values() if s.status == S.REJECTED]
        if unfinished:
            self._end(RunStatus.FAILED, f"no step can run, yet {', '.join(unfinished[:5])} did not finish")
        elif failed:
            first = min(failed, key=lambda s: s.idx)
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            what = "verification" if first.spec.type == "verification" else "step"
            self._end(RunStatus.FAILED, f'{what} "{first.key}" failed{more}: {first.error}')
        elif rejected:
            self._end(RunStatus.REJECTED, f"rejected at {', '.join(rejected)}")
        elif (unverified := self._unverified()) is not None:
            self._end(RunStatus.FAILED, unverified)
        else:
            self._end(RunStatus.SUCCEEDED, None)

    def _unverified(self) -> str | None:
        """With ``require_verification``: why the run cannot count as succeeded, or None."""
        if not self.policy.require_verification:
            return None
        checks = sorted((s for s in self.steps.values() if s.spec.type == "verification"), key=lambda s: s.idx)
        if not checks:
            return "require_verification is set, but the plan has no verification step"
        for check in checks:
            if check.status != S.SUCCEEDED:
                return (f'require_verification: verification "{check.key}" did not pass '
                        f"(it is {check.status.value}: {check.error or 'no reason recorded'})")
        return None

    def _end(self, status: RunStatus, reason: str | None) -> None:
        """End the run: stop launching, close every unfinished step, write the run's verdict."""
        if self._ending:
            return
        self._ending = True
        now = self.clock()
        batch = WriteBatch()
        for task in self._attempt_tasks.values():
            task.cancel()
        for state in sorted(self.steps.values(), key=lambda s: s.idx):
            if not state.status.terminal:
                expect = state.status
                check_step(state.key, state.status, "cancel")
                state.error = f"run {status.value}" + (f": {reason}" if reason else "")
                if state.status == S.RUNNING:
                    self.sched.stopped(state.key)
                    self._release(state, batch, now, "canceled", None)
                state.status, state.ended_at = S.SKIPPED, now
                batch.step(self.run_id, state.key, expect.value, state.attempts, state.row())
                batch.event(self.run_id, E.STEP_SKIPPED, state.key, {"reason": state.error}, now)
        self._waiting.clear()
        self._set_run_status(status, reason, batch, now, E.RUN_ENDED, ended=True)
        write = self._emit(batch)

        def resolve(_: object) -> None:
            if self._done is not None and not self._done.done():
                self._done.set_result(status)

        write.add_done_callback(resolve)

    # -- launching an attempt ----------------------------------------------------------

    def _launch(self, state: StepState, estimate: int) -> None:
        check_step(state.key, state.status, "start")
        if self.slots is not None and self._tokens.get(state.agent):
            self._slot_of[state.key] = (state.agent, self._tokens[state.agent].pop())
        probe = self._breaker(state.agent).admit()
        self.budget.reserve(estimate)
        self._inflight[state.key] = (probe, estimate)
        now = self.clock()
        expect_attempts = state.attempts
        state.status, state.attempts, state.started_at, state.ended_at = S.RUNNING, state.attempts + 1, now, None
        state.not_before = None
        self.sched.started(state.key)
        self.launches += 1
        batch = WriteBatch()
        batch.step(self.run_id, state.key, S.PENDING.value, expect_attempts, state.row())
        started: dict[str, Any] = {"attempt": state.attempts, "agent": state.agent}
        if probe:
            started["probe"] = True
        batch.event(self.run_id, E.STEP_STARTED, state.key, started, now)
        committed = self._emit(batch)
        task = self._spawn(self._attempt(state, state.attempts, committed), f'the attempt of step "{state.key}"')
        self._attempt_tasks[state.key] = task

    async def _attempt(self, state: StepState, attempt: int, committed: asyncio.Future[Any]) -> None:
        try:
            outcome = await self._run_attempt(state, attempt)  # a bug here fails the run (supervised task)
            try:
                await asyncio.shield(committed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the commit failed: _fatal already stops the run
                log.debug("attempt of %s stopped: %s", state.key, exc)
                return
        except asyncio.CancelledError:
            return
        finally:
            if self._attempt_tasks.get(state.key) is asyncio.current_task():
                del self._attempt_tasks[state.key]
        self._apply_outcome(state, attempt, outcome)

    async def _run_attempt(self, state: StepState, attempt: int) -> Result | AttemptFailed:
        """Resolve the input, call the executor, judge a check; the outcome comes back redacted and strict JSON."""
        try:
            resolved = self._resolved_input(state)
            executor = self._executor_for(state)
        except RefError as exc:
            return AttemptFailed(str(exc), retryable=False)
        except AttemptFailed as exc:
            return exc
        redactor = Redactor(executor.secrets() if hasattr(executor, "secrets") else ())
        partial = Coalescer(lambda text: self._partial_output(state.key, attempt, text), PARTIAL_INTERVAL_S)
        streamed = StreamRedactor(redactor, partial.add)
        call = StepCall(
            run_id=self.run_id, key=state.key, title=state.spec.display_title, type=state.spec.type,
            agent=state.agent, attempt=attempt, input=resolved, context=self._context_for(state),
            timeout_s=state.spec.timeout_s, on_partial=streamed.add,
        )
        try:
            outcome = await self._execute(executor, call)
        finally:
            streamed.flush()
            partial.flush()
        if state.spec.type == "verification":
            outcome = judge(self.plan.agents[state.agent].kind, outcome)
        return safe_outcome(outcome, redactor)

    def _executor_for(self, state: StepState) -> Executor:
        """A skill step calls its skill (on its agent's slots and breaker); every other step its agent."""
        if state.spec.type != "skill" or state.spec.skill is None:
            return self.executors[state.agent]
        name = state.spec.skill
        if name not in self._skills:
            skill = available_skills(self.plan.skills).get(name)
            if skill is None:
                raise AttemptFailed(f'skill "{name}" is not available (neither in the plan\'s skills nor installed); '
                                    "see `loopdeck skills`", retryable=False)
            self._skills[name] = PythonExecutor(skill.target)
        return self._skills[name]

    def _partial_output(self, key: str, attempt: int, text: str) -> None:
        """Streamed output so far (a coalesced piece): an event, so every dashboard can fill in live."""
        batch = WriteBatch()
        batch.event(self.run_id, E.STEP_OUTPUT_PARTIAL, key, {"attempt": attempt, "text": text}, self.clock())
        self._emit(batch)

    async def _execute(self, executor: Executor, call: StepCall) -> Result | AttemptFailed:
        """Run one attempt; every failure, executor bugs included, becomes an ``AttemptFailed``."""
        try:
            if call.timeout_s is None:
                return await executor.execute(call)
            return await self._execute_with_timeout(executor, call)
        except AttemptFailed as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - an executor bug fails the attempt, not the run
            return AttemptFailed(f"{type(exc).__name__}: {exc}")

    async def _execute_with_timeout(self, executor: Executor, call: StepCall) -> Result:
        inner = asyncio.ensure_future(executor.execute(call))
        try:
            done, _ = await asyncio.wait({inner}, timeout=call.timeout_s)
        except asyncio.CancelledError:
            inner.cancel()
            raise
        if done:
            return inner.result()
        if executor.interruptible:
            inner.cancel()
        else:
            self._abandoned.add(inner)
            inner.add_done_callback(lambda fut: self._guarded(f'the late result of step "{call.key}"', self._late_result,
                                                              call, fut))
        raise AttemptFailed(f"timed out after {call.timeout_s:g}s")

    def _late_result(self, call: StepCall, fut: asyncio.Future[Result]) -> None:
        """A result arrived for an attempt that had timed out: record it, never apply it."""
        self._abandoned.discard(fut)
        if not fut.cancelled() and not self._stopped:
            failed = fut.exception() is not None
            self._record_stale(self.steps[call.key], call.attempt, failed,
                               "the attempt had timed out; its result was recorded and not applied")

    def _resolved_input(self, state: StepState) -> Any:
        """The step's input with its ``{{steps.KEY.output}}`` references filled in."""
        keys = {ref.key for ref in find_refs(state.input)}
        if not keys:
            return state.input
        return resolve(state.input, {k: self.steps[k].output for k in keys if self.steps[k].status == S.SUCCEEDED})

    def _context_for(self, state: StepState) -> list[dict[str, Any]]:
        ups = [self.steps[k] for k in state.spec.depends_on]
        return build_context(self.policy, [
            Upstream(u.key, u.spec.display_title, u.spec.type, u.output, u.ended_at or 0.0)
            for u in ups if u.status == S.SUCCEEDED
        ])

    def _apply_outcome(self, state: StepState, attempt: int, outcome: Result | AttemptFailed) -> None:
        if state.status != S.RUNNING or state.attempts != attempt or self._ending:
            self._record_stale(state, attempt, isinstance(outcome, AttemptFailed),
                               "the attempt is no longer current; its result was recorded and not applied")
            return
        now = self.clock()
        usage = outcome.usage
        batch = WriteBatch()
        self.sched.stopped(state.key)
        error = None if isinstance(outcome, Result) else str(outcome)
        agent_ok = error is None or not outcome.agent_fault  # type: ignore[union-attr]
        self._release(state, batch, now, "succeeded" if error is None else "failed", usage.prompt_tokens + usage.completion_tokens,
                      usage.prompt_tokens, usage.completion_tokens, error, agent_ok=agent_ok)
        state.prompt_tokens += usage.prompt_tokens
        state.completion_tokens += usage.completion_tokens
        self.run["prompt_tokens"] += usage.prompt_tokens
        self.run["completion_tokens"] += usage.completion_tokens
        tokens: dict[str, Any] = {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens}
        if usage.estimated:
            tokens["estimated"] = True
        proposal = None
        if isinstance(outcome, Result):
            state.status, state.output, state.error, state.ended_at = S.SUCCEEDED, outcome.output, None, now
            batch.step(self.run_id, state.key, S.RUNNING.value, attempt, state.row())
            batch.event(self.run_id, E.STEP_SUCCEEDED, state.key,
                        {"attempt": attempt, "tokens": tokens, "duration_s": round(now - (state.started_at or now), 6)}, now)
            self._settle(state, batch, now)
            if isinstance(outcome.output, dict) and "replan" in outcome.output:
                proposal = outcome.output["replan"]
        elif outcome.retryable and attempt < self._max_attempts(state):
            delay = backoff_delay(self.policy.backoff, attempt, self._rng)
            if outcome.retry_after_s is not None:  # the target said when to come back
                delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
            state.status, state.error, state.not_before = S.PENDING, str(outcome), now + delay
            batch.step(self.run_id, state.key, S.RUNNING.value, attempt, state.row())
            batch.event(self.run_id, E.STEP_RETRYING, state.key,
                        {"attempt": attempt, "error": str(outcome), "delay_s": round(delay, 6), "tokens": tokens}, now)
        else:
            state.status, state.error, state.ended_at = S.FAILED, str(outcome), now
            batch.step(self.run_id, state.key, S.RUNNING.value, attempt, state.row())
            batch.event(self.run_id, E.STEP_FAILED, state.key,
                        {"attempt": attempt, "error": str(outcome), "tokens": tokens, "retryable": outcome.retryable}, now)
            self._settle(state, batch, now)
        batch.run(self.run_id, self._run_row(now))
        self._emit(batch)
        if proposal is not None:
            self._propose(state, proposal)
        if state.status == S.PENDING:
            self._when_ready(state)
        self._pump()

    def _release(self, state: StepState, batch: WriteBatch, now: float, status: str, actual: int | None,
                 prompt: int = 0, completion: int = 0, error: str | None = None, *, agent_ok: bool | None = None) -> None:
        """An attempt ended: settle its reservation and slot, tell its breaker, write its span."""
        probe, reserved = self._inflight.pop(state.key, (False, 0))
        if state.key in self._slot_of:  # kept for the next queued step of the agent, if any
            agent, slot = self._slot_of.pop(state.key)
            self._tokens.setdefault(agent, []).append(slot)
        breaker = self._breaker(state.agent)
        if actual is None:  # canceled: no outcome to judge the target by
            self.budget.settle(reserved, 0)
            if probe:
                breaker.release_probe()
        else:
            self.budget.settle(reserved, actual)
            change = breaker.record(status == "succeeded" if agent_ok is None else agent_ok, probe)
            if change is not None:
                self._breaker_changed(change, batch, now)
        batch.span(self.run_id, state.key, state.attempts, state.agent, status, state.started_at or now, now,
                   prompt, completion, error)

    def _record_stale(self, state: StepState, attempt: int, failed: bool, reason: str) -> None:
        batch = WriteBatch()
        batch.event(self.run_id, E.STEP_RESULT_STALE, state.key, {
            "attempt": attempt, "current_attempt": state.attempts, "status": state.status.value,
            "outcome": "failed" if failed else "succeeded", "reason": reason,
        }, self.clock())
        self._emit(batch)

    def _settle(self, state: StepState, batch: WriteBatch, now: float) -> None:
        """A step reached a final status: release its dependents, skip those that can never run.

        A worklist, not recursion: a 20,000-step chain whose first step fails
        skips the other 19,999 here without going one stack frame deeper.
        """
        settled = [state]
        while settled:
            done = settled.pop()
            ready, doomed = self.sched.settle(done.key, done.status.value)
            self._waiting.discard(done.key)
            for key in doomed:
                child = self.steps[key]
                if child.status.terminal:
                    continue
                expect = child.status
                check_step(key, child.status, "skip")
                self._unqueue(key)
                child.status, child.ended_at = S.SKIPPED, now
                child.error = f'dependency "{done.key}" {done.status.value}'
                batch.step(self.run_id, key, expect.value, child.attempts, child.row())
                batch.event(self.run_id, E.STEP_SKIPPED, key, {"reason": child.error}, now)
                settled.append(child)
            for key in ready:
                self._when_ready(self.steps[key])

    def _unqueue(self, key: str) -> None:
        self.sched.unqueue(key)
        self._waiting.discard(key)
        handle = self._timers.pop(key, None)
        if handle:
            handle.cancel()

    def _max_attempts(self, state: StepState) -> int:
        return state.spec.max_attempts or self.policy.max_step_attempts

    # -- breakers and routing ---------------------------------------------------------

    def _configure_breakers(self) -> None:
        """Map each agent to its target's breaker, with the settings of this plan."""
        self._targets = {name: cfg.breaker_target(name) for name, cfg in self.plan.agents.items()}
        for name, cfg in self.plan.agents.items():
            self.breakers.configure(self._targets[name], cfg.breaker.failure_threshold, cfg.breaker.cooldown_s)

    def _breaker(self, agent: str) -> Breaker:
        return self.breakers.get(self._targets[agent])

    def _agents_of(self, target: str) -> list[str]:
        return [name for name, t in self._targets.items() if t == target]

    def _polled(self, agent: str) -> Breaker:
        """The agent's breaker, moved open -> half_open if its cooldown passed (and that recorded)."""
        breaker = self._breaker(agent)
        change = breaker.poll()
        if change is not None:
            batch = WriteBatch()
            self._breaker_changed(change, batch, self.clock())
            self._emit(batch)
        return breaker

    def _agent_admits(self, agent: str) -> bool:
        """Whether the agent's breaker, and its slots shared with other processes, let an attempt start now."""
        if not self._polled(agent).can_admit():
            return False
        limit = self.plan.agents[agent].max_concurrency
        if self.slots is None or limit is None or self._tokens.get(agent):
            return True
        if agent not in self._acquiring:
            self._acquiring[agent] = self._spawn(self._acquire_slot(agent, limit), f'a slot of agent "{agent}"')
        return False

    async def _acquire_slot(self, agent: str, limit: int) -> None:
        assert self.slots is not None
        try:
            slot = await self.slots.acquire(agent, limit, self.run_id)
        except LoopdeckError as exc:
            self._acquiring.pop(agent, None)
            self._fatal(exc)
            return
        self._acquiring.pop(agent, None)
        self._tokens.setdefault(agent, []).append(slot)
        self._pump()

    def _return_spare_slots(self) -> None:
        """Give back the slots of agents with nothing queued here, so other workers can use them."""
        if self.slots is None:
            return
        spare = []
        for agent, held in self._tokens.items():
            if held and (self._draining or self._ending or not self.sched.has_queued(agent)):
                spare += [(agent, slot) for slot in held]
                held.clear()
        if spare:
            task = asyncio.ensure_future(self.slots.release(spare))
            self._writes.add(task)
            task.add_done_callback(self._slots_released)

    def _slots_released(self, task: asyncio.Future[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:  # they expire with the lease anyway
            log.warning("run %s: could not give back agent slots: %s", self.run_id, task.exception())

    def drain(self) -> None:
        """Launch nothing more; once the running attempts end, ``drive`` returns and the run is left as it is."""
        self._draining = True
        self._pump()

    def _route(self, state: StepState) -> None:
        """Move a step off an agent whose breaker is open, to the first healthy alternative."""
        breaker = self._polled(state.agent)
        if not breaker.is_open:
            return
        home = self.plan.agent_of(state.spec)
        for name in [home, *self.plan.agents[home].alternatives]:
            if name != state.agent and not self._polled(name).is_open:
                now, old = self.clock(), state.agent
                reason = f'breaker of "{old}" is open ({breaker.failures} consecutive failures)'
                state.agent = name
                self.sched.set_agent(state.key, name)
                batch = WriteBatch()
                batch.step(self.run_id, state.key, state.status.value, state.attempts, state.row())
                batch.event(self.run_id, E.STEP_ROUTED, state.key, {"from": old, "to": name, "reason": reason}, now)
                self._emit(batch)
                return
        self._note_held(state, breaker)  # no healthy alternative: the step stays queued and waits for the probe

    def _note_held(self, state: StepState, breaker: Breaker) -> None:
        """Tell the operator (once per opening) that a step waits for a breaker, and when its probe is due."""
        if state.key in self._held_noted and self._held_noted[state.key] == breaker.opened_at:
            return
        self._held_noted[state.key] = breaker.opened_at
        probe_at, now = breaker.probe_at(), self.clock()
        due = "" if probe_at is None else (f"; its probe is due at {time.strftime('%H:%M:%S', time.gmtime(probe_at))} "
                                          f"UTC (in {max(0.0, probe_at - now):.0f}s)")
        batch = WriteBatch()
        batch.event(self.run_id, E.STEP_HELD, state.key, {
            "by": "breaker", "agent": state.agent, "target": breaker.target, "probe_at": iso(probe_at),
            "reason": f'breaker of "{state.agent}" is open ({breaker.failures} consecutive failures){due}',
        }, now)
        self._emit(batch)

    def _breaker_changed(self, change: BreakerChange, batch: WriteBatch, now: float, save: bool = True) -> None:
        breaker = self.breakers.get(change.target)
        if save:
            batch.extras.append(self.store.save_breaker_extra(breaker.row()))
        agents = self._agents_of(change.target)
        for agent in agents:
            batch.event(self.run_id, E.BREAKER_CHANGED, None, change.payload(agent), now)
        if breaker.is_open:  # re-route what is queued for it
            for agent in agents:
                for key in self.sched.queued_for(agent):
                    self.sched.unqueue(key)
                    self._route(self.steps[key])
                    self.sched.push_ready(key)

    def _arm_breaker_timers(self) -> None:
        """Wake the run when an open breaker with queued steps lets its probe through."""
        for agent in self.sched.agents_with_queued():
            breaker = self._breaker(agent)
            if breaker.is_open and agent not in self._breaker_timers:
                # re-check at least every second: the breaker's wall clock may jump
                delay = min(breaker.retry_in() + 0.001, BREAKER_RECHECK_S)
                self._breaker_timers[agent] = asyncio.get_running_loop().call_later(
                    delay, self._guarded, f'the breaker timer of agent "{agent}"', self._breaker_timer_fired, agent)

    def _breaker_timer_fired(self, agent: str) -> None:
        self._breaker_timers.pop(agent, None)
        self._pump()

    # -- the token budget -------------------------------------------------------------

    def _token_estimate(self, state: StepState) -> int:
        return self.plan.agents[state.agent].token_estimate()

    def _budget_exhausted(self, reason: str) -> None:
        if self.policy.on_budget_exhausted == "fail":
            self._end(RunStatus.FAILED, reason)
            return
        if self._budget_paused:
            return
        self._budget_paused = True
        now = self.clock()
        batch = WriteBatch()
        batch.event(self.run_id, E.BUDGET_EXHAUSTED, None, {"reason": reason, "used": self.budget.used,
                                                             "budget": self.budget.limit}, now)
        self._set_run_status(RunStatus.WAITING_USER, f"{reason}; raise it with `loopdeck budget {self.run_id} --set N`",
                             batch, now, E.RUN_WAITING)
        self._emit(batch)

    async def set_budget(self, limit: int | None, *, user: str | None) -> None:
        """Change the run's token budget (a paused run continues if its next step now fits)."""
        self._require_live("given a new budget")
        check_token_budget(limit)
        now = self.clock()
        old, self.budget.limit = self.budget.limit, limit
        self.run["token_budget"] = limit
        batch = WriteBatch()
        batch.run(self.run_id, self._run_row(now))
        batch.event(self.run_id, E.BUDGET_CHANGED, None, {"from": old, "to": limit, "user": user}, now)
        if self._budget_paused:
            self._budget_paused = False
            self._set_run_status(RunStatus.RUNNING, None, batch, now, E.RUN_CONTINUED)
        write = self._emit(batch)
        self._pump()
        await asyncio.shield(write)

    # -- approvals and operator actions --------------------------------------------

    def _gate(self, state: StepState) -> None:
        now = self.clock()
        expect = state.status
        check_step(state.key, state.status, "gate")
        state.status = S.WAITING_USER
        self._waiting.add(state.key)
        batch = WriteBatch()
        batch.step(self.run_id, state.key, expect.value, state.attempts, state.row())
        batch.event(self.run_id, E.STEP_WAITING, state.key,
                    {"reason": "approval: required", "input": state.input}, now)
        self._emit(batch)

    def _require_live(self, action: str) -> None:
        if self._ending or self.status.terminal:
            raise TransitionError(f"run {self.run_id} is {self.status.value}; it can no longer be {action}")

    async def approve(self, key: str, *, user: str | None, reason: str | None = None, input: Any = ...) -> None:
        """Approve a waiting step, optionally replacing its input; it then runs with that input."""
        self._require_live("approved")
        state = self._step(key)
        check_step(key, state.status, "approve")
        now = self.clock()
        edited = input is not ...
        if edited:
            state.input = input
        state.status, state.approved_by = S.PENDING, user or "unknown"
        self._waiting.discard(key)
        batch = WriteBatch()
        batch.step(self.run_id, key, S.WAITING_USER.value, state.attempts, state.row())
        payload: dict[str, Any] = {"user": state.approved_by, "reason": reason, "input_edited": edited}
        if edited:
            payload["input"] = input
        batch.event(self.run_id, E.STEP_APPROVED, key, payload, now)
        write = self._emit(batch)
        self._when_ready(state)
        self._pump()
        await asyncio.shield(write)

    async def reject(self, key: str, *, user: str | None, reason: str | None = None) -> None:
        """Reject a waiting step: it ends rejected and the steps that need it are skipped."""
        self._require_live("rejected")
        state = self._step(key)
        check_step(key, state.status, "reject")
        now = self.clock()
        state.status, state.ended_at = S.REJECTED, now
        state.error = f"rejected by {user or 'unknown'}" + (f": {reason}" if reason else "")
        batch = WriteBatch()
        batch.step(self.run_id, key, S.WAITING_USER.value, state.attempts, state.row())
        batch.event(self.run_id, E.STEP_REJECTED, key, {"user": user, "reason": reason}, now)
        self._settle(state, batch, now)
        write = self._emit(batch)
        self._pump()
        await asyncio.shield(write)

    async def skip(self, key: str, *, user: str | None, reason: str | None = None) -> None:
        """Skip a step that has not run (pending or waiting): dependents follow their dependency policy."""
        self._require_live("changed")
        state = self._step(key)
        expect = state.status
        check_step(key, state.status, "skip")
        now = self.clock()
        self._unqueue(key)
        state.status, state.ended_at = S.SKIPPED, now
        state.error = f"skipped by {user or 'unknown'}" + (f": {reason}" if reason else "")
        batch = WriteBatch()
        batch.step(self.run_id, key, expect.value, state.attempts, state.row())
        batch.event(self.run_id, E.STEP_SKIPPED, key, {"reason": state.error, "user": user}, now)
        self._settle(state, batch, now)
        write = self._emit(batch)
        self._pump()
        await asyncio.shield(write)

    async def retry(self, key: str, *, user: str | None) -> None:
        """Give a failed step one more attempt; the steps skipped because it failed wait for it again."""
        self._require_live("changed")
        state = self._step(key)
        check_step(key, state.status, "rerun")
        skipped = self._skipped_because_of(key)
        for other in self._descendants(key) - skipped:
            if self.steps[other].attempts or self.steps[other].status not in (S.PENDING, S.SKIPPED):
                raise TransitionError(f'step "{key}" cannot be retried: "{other}", which depends on it, '
                                      f'is {self.steps[other].status.value} and has already run or been decided')
        now = self.clock()
        batch = WriteBatch()
        for other in sorted(skipped, key=lambda k: self.steps[k].idx):
            child = self.steps[other]
            check_step(other, child.status, "reopen")
            child.status, child.error, child.ended_at = S.PENDING, None, None
            batch.step(self.run_id, other, S.SKIPPED.value, child.attempts, child.row())
            batch.event(self.run_id, E.STEP_REOPENED, other, {"because": key, "user": user}, now)
        state.status, state.ended_at, state.not_before = S.PENDING, None, None
        batch.step(self.run_id, key, S.FAILED.value, state.attempts, state.row())
        batch.event(self.run_id, E.STEP_REQUEUED, key, {"attempt": state.attempts, "reason": f"retried by {user or 'unknown'}",
                                                        "user": user}, now)
        self.sched.reopen(skipped | {key})
        write = self._emit(batch)
        self._when_ready(state)
        self._pump()
        await asyncio.shield(write)

    def _descendants(self, key: str) -> set[str]:
        seen: set[str] = set()
        stack = [key]
        while stack:
            for child in self.sched.dependents(stack.pop()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    def _skipped_because_of(self, key: str) -> set[str]:
        """Steps skipped, directly or through others, because ``key`` did not succeed."""
        out: set[str] = set()
        causes = {key}
        stack = [key]
        while stack:
            for child in self.sched.dependents(stack.pop()):
                step = self.steps[child]
                if child not in out and step.status == S.SKIPPED and step.attempts == 0 and any(
                    (step.error or "").startswith(f'dependency "{cause}"') for cause in causes
                ):
                    out.add(child)
                    causes.add(child)
                    stack.append(child)
        return out

    async def cancel(self, *, user: str | None, reason: str | None = None) -> None:
        """Cancel the run: running attempts are stopped, unfinished steps skipped."""
        await self.perform("cancel", {"reason": reason}, user)
        if self._done is not None:
            await asyncio.shield(self._done)

    async def replan(self, steps: Any, mode: str, *, user: str | None, reason: str | None = None) -> Replan:
        """Append steps, or replace those not yet started, validated like a plan; audited as an event."""
        self._require_live("replanned")
        change = self._prepare(steps, mode)
        await asyncio.shield(self._apply_replan(change, mode, user, reason))
        return change

    def _prepare(self, steps: Any, mode: str) -> Replan:
        return prepare_replan(self.plan, self.run_id, {k: (s.status.value, s.attempts) for k, s in self.steps.items()},
                              steps, mode)

    def _apply_replan(self, change: Replan, mode: str, user: str | None, reason: str | None,
                      batch: WriteBatch | None = None) -> asyncio.Future[list[int]]:
        """Swap in a validated replan, synchronously (so no decision can slip in between)."""
        now = self.clock()
        batch = batch or WriteBatch()
        for key in change.removed:
            self._unqueue(key)
            self.sched.remove(key)
            del self.steps[key]
        self.plan = change.plan
        next_idx = max((s.idx for s in self.steps.values()), default=-1) + 1
        new_states = []
        for i, spec in enumerate(change.added):
            state = StepState(spec=spec, idx=next_idx + i, agent=self.plan.agent_of(spec), status=S.PENDING,
                              input=spec.input)
            self.steps[spec.key] = state
            new_states.append(state)
        record_replan(batch, self.store, self.run_id, change, next_idx, mode, user, reason, now)
        ready = []
        for state in new_states:
            is_ready, doomed_by = self.sched.add_live(state.key, state.idx, state.agent, state.spec.depends_on,
                                                      state.spec.dependency_policy == "allow_skipped")
            if doomed_by is not None:
                state.status, state.ended_at = S.SKIPPED, now
                state.error = f'dependency "{doomed_by}" {self.steps[doomed_by].status.value}'
                batch.step(self.run_id, state.key, S.PENDING.value, 0, state.row())
                batch.event(self.run_id, E.STEP_SKIPPED, state.key, {"reason": state.error}, now)
                self._settle(state, batch, now)
            elif is_ready:
                ready.append(state)
        write = self._emit(batch)
        for state in ready:
            self._when_ready(state)
        self._pump()
        return write

    # -- plans proposed by agents, reviewed by the operator ------------------------------

    def _propose(self, state: StepState, proposal: Any) -> None:
        """A step's output carries ``replan: {mode, steps}``: validate it, then apply it or hold it for review."""
        now = self.clock()
        mode = proposal.get("mode", "append") if isinstance(proposal, dict) else None
        try:
            if not isinstance(proposal, dict):
                raise PlanError([PlanIssue("replan", "a proposed replan is a mapping {mode, steps}")])
            change = self._prepare(proposal.get("steps"), mode)
            if self._proposal is not None:
                raise TransitionError(f'a replan proposed by "{self._proposal["by"]}" is already waiting for review')
        except LoopdeckError as exc:
            batch = WriteBatch()
            batch.event(self.run_id, E.REPLAN_REFUSED, state.key, {"agent": state.agent, "error": str(exc)}, now)
            self._emit(batch)
            return
        who = f"agent {state.agent} (step {state.key})"
        if self.policy.plan_approval != "required":
            self._apply_replan(change, mode, who, "proposed by the agent")
            return
        self._proposal = {"mode": mode, "steps": proposal["steps"], "by": state.key, "agent": state.agent}
        self.run["proposal_json"] = json.dumps(self._proposal)
        batch = WriteBatch()
        batch.event(self.run_id, E.RUN_PLAN_PROPOSED, state.key, {
            "by": state.key, "agent": state.agent, "mode": mode, "steps": proposal["steps"],
            "added": [s.key for s in change.added], "removed": change.removed,
            "status": RunStatus.AWAITING_PLAN_APPROVAL.value}, now)
        self._set_run_status(RunStatus.AWAITING_PLAN_APPROVAL, self._proposal_reason(), batch, now, E.RUN_WAITING)
        self._emit(batch)

    def _proposal_reason(self) -> str:
        assert self._proposal is not None
        return (f'step "{self._proposal["by"]}" proposed a replan; approve or reject it '
                f"(`loopdeck approve-plan {self.run_id}`)")

    async def decide_plan(self, approve: bool, *, user: str | None, reason: str | None = None,
                          steps: Any = None) -> None:
        """Approve (optionally with edited steps) or reject the replan an agent proposed; the run goes on."""
        self._require_live("replanned")
        if self._proposal is None:
            raise TransitionError(f"run {self.run_id} is {self.status.value}; only a run awaiting plan approval "
                                  "can have a plan approved or rejected")
        proposal = self._proposal
        change = self._prepare(steps if steps is not None else proposal["steps"], proposal["mode"]) if approve else None
        now = self.clock()
        self._proposal, self.run["proposal_json"] = None, None
        batch = WriteBatch()
        kind = E.RUN_PLAN_APPROVED if approve else E.RUN_PLAN_REJECTED
        batch.event(self.run_id, kind, None, {"user": user, "reason": reason, "proposed_by": proposal["by"],
                                             "edited": steps is not None, "status": RunStatus.RUNNING.value}, now)
        self._set_run_status(RunStatus.RUNNING, None, batch, now, E.RUN_CONTINUED)
        if change is not None:
            why = f'proposed by step "{proposal["by"]}", approved by {user or "unknown"}'
            write = self._apply_replan(change, proposal["mode"], user, why, batch)
        else:
            write = self._emit(batch)
            self._pump()
        await asyncio.shield(write)

    def _step(self, key: str) -> StepState:
        try:
            return self.steps[key]
        except KeyError:
            raise StepNotFound(self.run_id, key, list(self.steps)) from None

    # -- writing -----------------------------------------------------------------------------

    def _run_row(self, now: float) -> dict[str, Any]:
        self.run["updated_at"] = now
        return self.run

    def _set_run_status(self, status: RunStatus, reason: str | None, batch: WriteBatch, now: float,
                        kind: EventType, ended: bool = False) -> None:
        self.status = status
        self.run["status"], self.run["reason"] = status.value, reason
        if ended:
            self.run["ended_at"] = now
        batch.run(self.run_id, self._run_row(now))
        payload: dict[str, Any] = {"status": status.value}
        if reason:
            payload["reason"] = reason
        batch.event(self.run_id, kind, None, payload, now)

    def _emit(self, batch: WriteBatch) -> asyncio.Future[list[int]]:
        """Queue ``batch`` for commit; once committed its events are published, in commit order.

        A failed commit stops the controller. Await the returned future through
        ``asyncio.shield``: cancelling it would not undo the write, only hide it.
        """
        future = self.store.writer.enqueue(batch)
        self._writes.add(future)
        future.add_done_callback(lambda fut: self._guarded("publishing a commit", self._committed, batch, fut))
        return future

    def _committed(self, batch: WriteBatch, future: asyncio.Future[list[int]]) -> None:
        self._writes.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._fatal(exc)
            return
        self.bus.publish(
            Event(id_, row["run_id"], row["type"], row["step_key"], payload, row["created_at"])
            for id_, row, payload in zip(future.result(), batch.events, batch.payloads, strict=True)
        )

    # -- supervision -----------------------------------------------------------------------

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        """A task whose unexpected death fails the run (never an exception nobody retrieves)."""
        task = asyncio.create_task(coro, name=f"{what} of run {self.run_id}")
        task.add_done_callback(lambda done: self._supervise(done, what))
        return task

    def _supervise(self, task: asyncio.Task[Any], what: str) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._crash(task.exception(), what)  # type: ignore[arg-type]

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Call a timer or done-callback; an unexpected error in it fails the run instead of vanishing."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - supervised: recorded as the run's failure
            self._crash(exc, what)

    def _crash(self, exc: BaseException, what: str) -> None:
        """A bug in the controller: end the run failed with the error as its reason (or stop, if even that fails).

        A store or lease error is no bug: the run stops here and stays resumable (``_fatal``).
        """
        if isinstance(exc, LoopdeckError):
            self._fatal(exc)
            return
        log.error("run %s: unexpected error in %s: %s: %s", self.run_id, what, type(exc).__name__, exc, exc_info=exc)
        if self._done is None or self._done.done() or self._stopped:
            return
        if not self._ending:
            try:
                self._end(RunStatus.FAILED, f"internal error in {what}: {type(exc).__name__}: {exc}")
                return
            except Exception as second:  # noqa: BLE001 - the state is too broken to record it
                exc = second
        self._fatal(exc)

    def _fatal(self, exc: BaseException) -> None:
        """Stop driving: the store refused a write, so in-memory state can no longer be trusted."""
        if self._done is not None and not self._done.done():
            if isinstance(exc, StaleWrite):
                exc = LeaseLost(f"run {self.run_id}: {exc}; another process may have taken it over")
            self._done.set_exception(exc)
        self._ending = True
        for task in self._attempt_tasks.values():
            task.cancel()

    # -- side tasks: lease heartbeat and the commands inbox ------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            extras = [self.store.renew_lease_extra(self.run_id, self.owner, self.lease_ttl_s)]
            if self.slots is not None:
                extras.append(self.slots.renew_extra())
            try:
                await self.store.write(WriteBatch(extras=extras))
                await self._sync_breakers()
            except Exception as exc:  # noqa: BLE001
                self._fatal(exc)
                return

    async def _sync_breakers(self) -> None:
        """Adopt breaker changes other processes persisted (a target another worker found down is down here too)."""
        rows = await self.store.load_breakers(sorted(set(self._targets.values())))
        batch, now = WriteBatch(), self.clock()
        for row in rows:
            change = self.breakers.get(row["target"]).adopt(row)
            if change is not None and not self._ending:
                self._breaker_changed(change, batch, now, save=False)
        if batch.events:
            self._emit(batch)
            self._pump()

    async def _inbox(self) -> None:
        """Apply actions queued by other processes (``loopdeck approve`` in another terminal)."""
        while True:
            await self.notifier.wait(COMMANDS_CHANNEL, self.run_id, self.poll_s)  # NOTIFY wakes it at once
            try:
                commands = await self.store.queued_commands(self.run_id)
            except LoopdeckError as exc:
                log.warning("cannot read the commands inbox: %s", exc)
                continue
            for command in commands:
                await answer_command(self.store, command, self.perform)

    async def perform(self, kind: str, payload: dict[str, Any], user: str | None) -> bool:
        """Carry out one operator action by name (the API and the commands inbox share this).

        Returns False for an unknown action. ``cancel`` ends the run without
        waiting for its last write, so the inbox can still answer the command.
        """
        step, reason = payload.get("step", ""), payload.get("reason")
        if kind == "approve":
            extra = {"input": payload["input"]} if "input" in payload else {}
            await self.approve(step, user=user, reason=reason, **extra)
        elif kind == "reject":
            await self.reject(step, user=user, reason=reason)
        elif kind == "retry":
            await self.retry(step, user=user)
        elif kind == "skip":
            await self.skip(step, user=user, reason=reason)
        elif kind == "replan":
            await self.replan(payload["steps"], payload["mode"], user=user, reason=reason)
        elif kind == "budget":
            await self.set_budget(payload["limit"], user=user)
        elif kind == "plan":
            extra = {"steps": payload["steps"]} if payload.get("steps") is not None else {}
            await self.decide_plan(bool(payload.get("approve")), user=user, reason=reason, **extra)
        elif kind == "cancel":
            self._require_live("canceled")
            self._end(RunStatus.CANCELED, f"canceled by {user or 'unknown'}" + (f": {reason}" if reason else ""))
        else:
            return False
        return True


async def answer_command(store: Store, command: dict[str, Any],
                         perform: Callable[[str, dict[str, Any], str | None], Awaitable[bool]]) -> None:
    """Apply one queued command with ``perform`` and record the answer (applied, or refused and why)."""
    state, result = "applied", "ok"
    try:
        payload = json.loads(command["payload_json"] or "{}")
        if not await perform(command["kind"], payload, command["created_by"]):
            state, result = "refused", f"unknown command {command['kind']!r}"
    except LoopdeckError as exc:
        state, result = "refused", str(exc)
    except Exception as exc:  # noqa: BLE001 - a malformed command is refused; the run goes on
        log.error("command %s could not be applied", command["id"], exc_info=exc)
        state, result = "refused", f"the command could not be applied ({type(exc).__name__}: {exc})"
    await store.write(WriteBatch(extras=[store.answer_command_extra(command["id"], state, result)]))

