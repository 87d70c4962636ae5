"""Running attempts: the executor call, its timeout, its streamed output, its late result.

An attempt starts while its ``running`` record is being committed, and its
outcome is handed back (``on_outcome``) only once that record is durable. The
outcome comes back redacted (the agent's secrets), as strict JSON, and
judged when the step is a verification. An attempt past its ``timeout_s``
fails; an executor that cannot be interrupted (a sync Python function) is
left to finish in its daemon thread, and a result it still brings while the
run lives is recorded as stale (``on_stale``), never applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from core.engine.coalesce import Coalescer
from core.engine.run_state import RunState, StepState
from core.executors import (
    AttemptFailed,
    ChildRuns,
    Executor,
    Meter,
    Result,
    StepCall,
    ToolPort,
    build_executor,
    safe_outcome,
)
from core.executors.base import until_done
from core.executors.child import ChildRunExecutor
from core.executors.python import PythonExecutor
from core.executors.verdict import judge
from core.model.context import Upstream, build_context
from core.model.plan import child_plan_data
from core.model.refs import RefError, find_refs, resolve
from core.model.skills import available_skills
from core.model.states import StepStatus
from core.redaction import Redactor, StreamRedactor

log = logging.getLogger("loopdeck.controller")
PARTIAL_INTERVAL_S = 0.1  # streamed output: at most ~10 events per second per step

Outcome = Result | AttemptFailed


class AttemptRunner:
    def __init__(
        self,
        run: RunState,
        spawn: Callable[[Any, str], asyncio.Task[Any]],
        guarded: Callable[..., None],
        on_outcome: Callable[[StepState, int, Outcome], None],
        on_stale: Callable[[StepState, int, bool, str], None],
        on_partial: Callable[[str, int, str], None],
        executors: dict[str, Executor] | None = None,
        tool_sessions: Callable[[StepState, int], ToolPort | None] = lambda step, attempt: None,
        meters: Callable[[StepState, int], Meter | None] = lambda step, attempt: None,
        children: ChildRuns | None = None,
    ) -> None:
        self.run = run
        self.spawn = spawn
        self.guarded = guarded
        self.on_outcome = on_outcome
        self.on_stale = on_stale
        self.on_partial = on_partial
        self.tool_sessions = tool_sessions
        self.meters = meters
        self.children = children
        self.executors = executors or {name: build_executor(name, cfg) for name, cfg in run.plan.agents.items()}
        self._skills: dict[str, Executor] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()
        self.stopped = False  # the run's driver returned: late results record nothing

    def launch(self, step: StepState, attempt: int, committed: asyncio.Future[Any]) -> None:
        task = self.spawn(self._attempt(step, attempt, committed), f'the attempt of step "{step.key}"')
        self.tasks[step.key] = task

    def cancel_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()

    def leave(self) -> None:
        """The driver stops because the store refused a write: every attempt is stopped at once, and a
        child run is left to the next driver (as at ``close``) if the run goes on."""
        self.stopped = True
        self.cancel_all()

    def _leaving(self) -> bool:
        """Whether a canceled child-run step leaves its child to the next driver: the driver stops while the run
        goes on (ctrl-c, a worker handing it back, a store that refused a write). A step that timed out, or
        whose run ended, cancels its child instead."""
        return self.stopped and self.run.live

    async def close(self) -> None:
        """Stop every attempt and close the executors; timed-out ones in threads are left behind."""
        self.stopped = True
        self.cancel_all()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for executor in [*self.executors.values(), *self._skills.values()]:
            close = getattr(executor, "aclose", None)
            if close is not None:
                await close()

    async def _attempt(self, step: StepState, attempt: int, committed: asyncio.Future[Any]) -> None:
        try:
            outcome = await self._run(step, attempt)  # a bug here fails the run (a supervised task)
            try:
                await asyncio.shield(committed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("attempt of %s stopped: %s", step.key, exc)
                return
        except asyncio.CancelledError:
            return
        finally:
            if self.tasks.get(step.key) is asyncio.current_task():
                del self.tasks[step.key]
        self.on_outcome(step, attempt, outcome)

    async def _run(self, step: StepState, attempt: int) -> Outcome:
        """Resolve the input, call the executor, judge a check; the outcome comes back redacted and strict JSON."""
        try:
            resolved = self._resolved_input(step)
            executor = self._executor_for(step)
        except RefError as exc:
            return AttemptFailed(str(exc), retryable=False)
        except AttemptFailed as exc:
            return exc
        redactor = Redactor(executor.secrets() if hasattr(executor, "secrets") else ())
        partial = Coalescer(lambda text: self.on_partial(step.key, attempt, text), PARTIAL_INTERVAL_S)
        streamed = StreamRedactor(redactor, partial.add)
        call = StepCall(
            run_id=self.run.run_id,
            key=step.key,
            title=step.spec.display_title,
            type=step.spec.type,
            agent=step.agent,
            attempt=attempt,
            input=resolved,
            context=self._context_for(step),
            timeout_s=step.spec.timeout_s,
            on_partial=streamed.add,
            tools=self.tool_sessions(step, attempt),
            meter=self.meters(step, attempt),
        )
        try:
            outcome = await self._execute(executor, call)
        finally:
            streamed.flush()
            partial.flush()
        if step.spec.type == "verification":
            outcome = judge(self.run.plan.agents[step.agent].kind, outcome)
        return safe_outcome(outcome, redactor)

    def _executor_for(self, step: StepState) -> Executor:
        """A skill step calls its skill (on its agent's slots and breaker); a sub_agent step with a plan runs
        it as a child run; every other step its agent."""
        if step.spec.runs_child:
            return ChildRunExecutor(self.children, child_plan_data(self.run.plan, step.spec), self._leaving)
        if step.spec.type != "skill" or step.spec.skill is None:
            return self.executors[step.agent]
        name = step.spec.skill
        if name not in self._skills:
            skill = available_skills(self.run.plan.skills).get(name)
            if skill is None:
                raise AttemptFailed(
                    f'skill "{name}" is not available (neither in the plan\'s skills nor installed); '
                    "see `loopdeck skills`",
                    retryable=False,
                )
            self._skills[name] = PythonExecutor(skill.target)
        return self._skills[name]

    async def _execute(self, executor: Executor, call: StepCall) -> Outcome:
        """Run one attempt; every failure, executor bugs included, becomes an ``AttemptFailed``."""
        try:
            if call.timeout_s is None:
                return await executor.execute(call)
            return await self._execute_with_timeout(executor, call)
        except AttemptFailed as exc:
            return exc
        except Exception as exc:
            return AttemptFailed(f"{type(exc).__name__}: {exc}")

    async def _execute_with_timeout(self, executor: Executor, call: StepCall) -> Result:
        inner = asyncio.ensure_future(executor.execute(call))
        try:
            done, _ = await asyncio.wait({inner}, timeout=call.timeout_s)
        except asyncio.CancelledError:
            inner.cancel()
            await until_done(inner)  # it unwinds before its attempt ends (a child run ended or left)
            raise
        if done:
            return inner.result()
        if executor.interruptible:
            inner.cancel()
            if await until_done(inner):  # (its child run ended before a retry looks for it)
                raise asyncio.CancelledError
        else:
            self._abandoned.add(inner)
            inner.add_done_callback(
                lambda fut: self.guarded(f'the late result of step "{call.key}"', self._late_result, call, fut)
            )
        raise AttemptFailed(f"timed out after {call.timeout_s:g}s")

    def _late_result(self, call: StepCall, fut: asyncio.Future[Result]) -> None:
        """A result arrived for an attempt that had timed out: record it, never apply it."""
        self._abandoned.discard(fut)
        if not fut.cancelled() and not self.stopped:
            self.on_stale(
                self.run.steps[call.key],
                call.attempt,
                fut.exception() is not None,
                "the attempt had timed out; its result was recorded and not applied",
            )

    def _resolved_input(self, step: StepState) -> Any:
        """The step's input with its ``{{steps.KEY.output}}`` references filled in."""
        keys = {ref.key for ref in find_refs(step.input)}
        if not keys:
            return step.input
        steps = self.run.steps
        return resolve(step.input, {k: steps[k].output for k in keys if steps[k].status == StepStatus.SUCCEEDED})

    def _context_for(self, step: StepState) -> list[dict[str, Any]]:
        ups = [self.run.steps[k] for k in step.spec.depends_on]
        return build_context(
            self.run.policy,
            [
                Upstream(u.key, u.spec.display_title, u.spec.type, u.output, u.ended_at or 0.0)
                for u in ups
                if u.status == StepStatus.SUCCEEDED
            ],
        )
