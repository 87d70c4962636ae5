"""Every change of a step's status, and of a run's: the one place they are made.

Each function changes the ``RunState`` and records what it changed in
``Effects``: the compare-and-set rows and the events to commit, the steps
whose dependencies became met (``ready``) and those that must not start from
a timer any more (``unqueued``). The transition table of ``model.states``
says which moves are allowed (``check_step``); nothing here does I/O, so the
live controller and an action on a run nobody drives share every word.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from core.engine.call_state import CallState
from core.engine.run_state import RunMode, RunState, StepState
from core.executors import AttemptFailed, Result
from core.model.events import EventType, iso
from core.model.money import usd
from core.model.policy import Backoff
from core.model.result import Finished, conclude, plan_shape
from core.model.states import RunStatus, StepStatus, check_step
from core.model.tools import CallStatus, Facts, OnTimeout, approval_timeout, check_call, step_rule
from core.store import Store, WriteBatch

E = EventType
S = StepStatus
MAX_RETRY_AFTER_S = 3600.0


@dataclass
class Effects:
    """What a decision wrote, and what the driver of the run must do next."""

    batch: WriteBatch = field(default_factory=WriteBatch)
    ready: list[str] = field(default_factory=list)  # dependencies met: gate it, wait out its backoff, or queue it
    unqueued: list[str] = field(default_factory=list)  # no longer to start (skipped, replaced): drop its timer
    ended: list[str] | None = None  # the run ended: the keys of the steps whose attempts must be stopped
    calls: list[str] = field(default_factory=list)  # tool calls answered: their attempts go on once this commits


def move(
    run: RunState,
    step: StepState,
    action: str,
    batch: WriteBatch,
    now: float,
    event: tuple[str, dict[str, Any]] | None = None,
    **changes: Any,
) -> None:
    """Move ``step`` by ``action`` (refused unless the table allows it), set ``changes``, record row and event."""
    expect_status, expect_attempts = step.status, step.attempts
    step.status = check_step(step.key, step.status, action)
    for name, value in changes.items():
        setattr(step, name, value)
    batch.step(run.run_id, step.key, expect_status.value, expect_attempts, step.row())
    if event is not None:
        batch.event(run.run_id, event[0], step.key, event[1], now)


CALL_EVENTS = {
    "ask": E.TOOL_CALL_WAITING,
    "deny": E.TOOL_CALL_DENIED,
    "approve": E.TOOL_CALL_APPROVED,
    "reject": E.TOOL_CALL_REJECTED,
    "start": E.TOOL_CALL_STARTED,
    "succeed": E.TOOL_CALL_SUCCEEDED,
    "fail": E.TOOL_CALL_FAILED,
    "interrupt": E.TOOL_CALL_INTERRUPTED,
}


def request_call(run: RunState, call: CallState, batch: WriteBatch, now: float) -> None:
    """A model asked for a tool call: its record is inserted (``requested``) with the event."""
    run.calls[call.id] = call
    batch.extras.append(Store.call_extra(call.row(run.run_id), None))
    payload = {"call": call.id, "tool": call.tool, "attempt": call.attempt, "turn": call.turn, "text": call.text}
    batch.event(run.run_id, E.TOOL_CALL_REQUESTED, call.step, {**payload, "arguments": call.arguments}, now)


def move_call(
    run: RunState,
    call: CallState,
    action: str,
    batch: WriteBatch,
    now: float,
    payload: dict[str, Any] | None = None,
    **changes: Any,
) -> None:
    """Move a tool call by ``action`` (refused unless ``model.tools`` allows it), set ``changes``, record it."""
    expect = call.status
    call.status = check_call(call.id, call.status, action)
    for name, value in changes.items():
        setattr(call, name, value)
    call.updated_at = now
    batch.extras.append(Store.call_extra(call.row(run.run_id), expect.value))
    batch.event(
        run.run_id, CALL_EVENTS[action], call.step, {"call": call.id, "tool": call.tool, **(payload or {})}, now
    )
    if call.status.final:
        call_span(run, call, batch, now)


def call_span(run: RunState, call: CallState, batch: WriteBatch, now: float) -> None:
    """A final tool call's span, a child of its attempt's: from the model's request to the answer it got
    (an approval's wait included: that is what the attempt waited for)."""
    attributes = {"gen_ai.tool.name": call.tool, "loopdeck.tool_call_id": call.id}
    if call.model_call_id:
        attributes["gen_ai.tool.call.id"] = call.model_call_id
    for name in ("decided_by", "rule"):
        value = getattr(call, name)
        if value:
            attributes[f"loopdeck.{name}"] = value
    batch.span(
        run.run_id,
        call.step,
        call.attempt,
        run.steps[call.step].agent,
        call.status.value,
        call.created_at,
        now,
        error=call.error or (call.reason if call.status in (CallStatus.DENIED, CallStatus.REJECTED) else None),
        kind="tool",
        name=call.tool,
        turn=call.turn,
        attributes=attributes,
    )


def interrupt_call(run: RunState, call: CallState, batch: WriteBatch, now: float) -> None:
    """A call a dead driver left running: whether its tool ran is unknown; the operator decides (or it is safe)."""
    why = "the process driving the run stopped while this call ran"
    move_call(run, call, "interrupt", batch, now, {"reason": why}, reason=why)


def carry_calls(run: RunState, step: StepState, batch: WriteBatch, now: float) -> None:
    """An interrupted attempt's tool calls go to the next attempt: its conversation is rebuilt from them,
    so a call that succeeded is never run again and one that waits waits again (a failed attempt's are not)."""
    for call in run.calls.values():
        if call.step == step.key and call.attempt == step.attempts:
            expect = call.status.value
            call.attempt, call.updated_at = step.attempts + 1, now
            batch.extras.append(Store.call_extra(call.row(run.run_id), expect))


def settle(run: RunState, step: StepState, effects: Effects, now: float) -> None:
    """``step`` reached a final status: release its dependents, skip those that can never run.

    A worklist, not recursion: a 20,000-step chain whose first step fails
    skips the other 19,999 here without going one stack frame deeper.
    """
    settled = [step]
    while settled:
        done = settled.pop()
        ready, doomed = run.index.settle(done.key, done.status.value)
        run.waiting.discard(done.key)
        for key in doomed:
            child = run.steps[key]
            if child.status.terminal:
                continue
            unqueue(run, key, effects)
            reason = f'dependency "{done.key}" {done.status.value}'
            move(
                run, child, "skip", effects.batch, now, (E.STEP_SKIPPED, {"reason": reason}), ended_at=now, error=reason
            )
            settled.append(child)
        effects.ready.extend(ready)


def unqueue(run: RunState, key: str, effects: Effects) -> None:
    run.index.unqueue(key)
    run.waiting.discard(key)
    effects.unqueued.append(key)


def set_run_status(
    run: RunState,
    status: RunStatus,
    reason: str | None,
    batch: WriteBatch,
    now: float,
    kind: str,
    ended: bool = False,
    summary: str | None = None,
) -> None:
    run.status, run.reason = status, reason
    if ended:
        run.ended_at = now
    batch.run(run.run_id, run.run_row(now))
    payload: dict[str, Any] = {"status": status.value}
    if reason:
        payload["reason"] = reason
    if summary:
        payload["summary"] = summary
    batch.event(run.run_id, kind, None, payload, now)


def end_run(
    run: RunState, status: RunStatus, reason: str | None, effects: Effects, now: float, finished: Finished | None = None
) -> None:
    """End the run: every unfinished step skipped with the run's verdict, the verdict and the result written.

    ``finished``: an operator ended it early (``commands.Finish``), perhaps with an answer of their own.
    """
    run.set_mode(RunMode.ENDING)
    effects.ended = []
    why = f"run {status.value}" + (f": {reason}" if reason else "")
    for step in sorted(run.steps.values(), key=lambda s: s.idx):
        if step.status.terminal:
            continue
        if step.status == S.RUNNING:
            effects.ended.append(step.key)
        unqueue(run, step.key, effects)
        move(run, step, "cancel", effects.batch, now, (E.STEP_SKIPPED, {"reason": why}), ended_at=now, error=why)
    run.result = conclude(list(run.steps.values()), *plan_shape(s.spec for s in run.steps.values()), reason, finished)
    set_run_status(run, status, reason, effects.batch, now, E.RUN_ENDED, ended=True, summary=run.result.summary)


def gate(run: RunState, step: StepState, batch: WriteBatch, now: float, why: str = "approval: required") -> None:
    """A step marked ``approval: required`` (or that a step rule asks about) reached its turn: it waits
    (until its deadline, if it has one)."""
    run.waiting.add(step.key)
    due = step_timeout(run, step)
    payload: dict[str, Any] = {"reason": why, "input": step.input}
    if due is not None:
        payload["deadline"] = iso(now + due[0])
    move(run, step, "gate", batch, now, (E.STEP_WAITING, payload), deadline=None if due is None else now + due[0])


def step_timeout(run: RunState, step: StepState) -> tuple[float, OnTimeout] | None:
    """The seconds an operator has to answer the step's gate, and what happens then (None: no deadline)."""
    rules = run.plan.approval_rules
    rule = step_rule(rules, Facts(step.key, step.spec.type, step.agent)) if rules else None
    policy = run.policy
    spec = step.spec
    return approval_timeout(
        spec.approval_timeout_s, spec.on_approval_timeout, rule, policy.approval_timeout_s, policy.on_approval_timeout
    )


def gate_reason(run: RunState, step: StepState) -> str | None:
    """Why this step must wait for an operator before it runs: the plan says so, or a step rule asks; else None."""
    if step.approved_by is not None:
        return None
    if step.spec.approval == "required":
        return "approval: required"
    if not run.plan.approval_rules:  # the hot path: most plans have no rules, so no Facts per ready step
        return None
    decision = step_rule(run.plan.approval_rules, Facts(step.key, step.spec.type, step.agent))
    return decision.rule if decision is not None and decision.action == "ask" else None


def requeue_interrupted(run: RunState, step: StepState, batch: WriteBatch, now: float) -> None:
    """A step a dead driver left running: its attempt counted, retried if attempts remain, else failed."""
    batch.span(
        run.run_id,
        step.key,
        step.attempts,
        step.agent,
        "interrupted",
        step.started_at or now,
        now,
        error="the process driving the run stopped during this attempt",
    )
    if step.attempts >= run.max_attempts(step):
        error = f"attempt {step.attempts} was interrupted when the driving process stopped, and no attempts are left"
        move(
            run,
            step,
            "fail",
            batch,
            now,
            (E.STEP_FAILED, {"attempt": step.attempts, "error": error}),
            error=error,
            ended_at=now,
        )
    else:
        carry_calls(run, step, batch, now)
        move(
            run,
            step,
            "requeue",
            batch,
            now,
            (
                E.STEP_REQUEUED,
                {"attempt": step.attempts, "reason": "the process driving the run stopped during this attempt"},
            ),
            not_before=None,
        )


def stale_result(
    run: RunState, step: StepState, attempt: int, failed: bool, reason: str, batch: WriteBatch, now: float
) -> None:
    """An outcome that came too late (the attempt timed out, or is no longer current): recorded, never applied."""
    payload = {
        "attempt": attempt,
        "current_attempt": step.attempts,
        "status": step.status.value,
        "outcome": "failed" if failed else "succeeded",
        "reason": reason,
    }
    batch.event(run.run_id, E.STEP_RESULT_STALE, step.key, payload, now)


@dataclass(frozen=True, slots=True)
class Spent:
    """What an ended attempt adds to its step and run: the tokens its model calls did not count already
    (all of them, for an agent that reports once) with their cost, and the whole attempt's cost."""

    prompt: int = 0
    completion: int = 0
    cost_usd: float | None = 0.0
    attempt_cost_usd: float | None = 0.0


NOTHING_MORE = Spent()


def attempt_ended(
    run: RunState,
    step: StepState,
    attempt: int,
    outcome: Result | AttemptFailed,
    effects: Effects,
    now: float,
    rng: random.Random,
    spent: Spent = NOTHING_MORE,
) -> None:
    """The transition an attempt's outcome makes: succeeded, retrying after a backoff, or failed.

    ``spent``: what the attempt adds now (its model calls counted the rest call by call).
    """
    usage = outcome.usage
    add_spending(run, step, spent.prompt, spent.completion, spent.cost_usd)
    tokens: dict[str, Any] = {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens}
    if usage.estimated:
        tokens["estimated"] = True
    tokens["cost_usd"] = usd(spent.attempt_cost_usd)
    batch = effects.batch
    if isinstance(outcome, Result):
        move(
            run,
            step,
            "succeed",
            batch,
            now,
            (
                E.STEP_SUCCEEDED,
                {"attempt": attempt, "tokens": tokens, "duration_s": round(now - (step.started_at or now), 6)},
            ),
            output=outcome.output,
            error=None,
            ended_at=now,
        )
        settle(run, step, effects, now)
    elif outcome.retryable and attempt < run.max_attempts(step):
        delay = backoff_delay(run.policy.backoff, attempt, rng)
        if outcome.retry_after_s is not None:  # the target said when to come back
            delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
        move(
            run,
            step,
            "retry",
            batch,
            now,
            (
                E.STEP_RETRYING,
                {"attempt": attempt, "error": str(outcome), "delay_s": round(delay, 6), "tokens": tokens},
            ),
            error=str(outcome),
            not_before=now + delay,
        )
        effects.ready.append(step.key)
    else:
        move(
            run,
            step,
            "fail",
            batch,
            now,
            (
                E.STEP_FAILED,
                {"attempt": attempt, "error": str(outcome), "tokens": tokens, "retryable": outcome.retryable},
            ),
            error=str(outcome),
            ended_at=now,
        )
        settle(run, step, effects, now)
    batch.run(run.run_id, run.run_row(now))


def add_spending(run: RunState, step: StepState, prompt: int, completion: int, cost_usd: float | None) -> None:
    """Tokens an attempt spent, and what they cost, count toward its step and its run (the agent's come
    from its spans). A cost that is not known makes the step's unknown; the run counts what is known."""
    step.prompt_tokens += prompt
    step.completion_tokens += completion
    run.prompt_tokens += prompt
    run.completion_tokens += completion
    step.cost_usd = plus(step.cost_usd, cost_usd)
    run.cost_usd += cost_usd or 0.0


def plus(a: float | None, b: float | None) -> float | None:
    """Two costs added; unknown (None) if either is."""
    return None if a is None or b is None else a + b


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


def verdict(run: RunState) -> tuple[RunStatus, str | None]:
    """Nothing runs, waits or is queued: the status the run's steps earned, and why."""
    steps = sorted(run.steps.values(), key=lambda s: s.idx)
    unfinished = [s.key for s in steps if not s.status.terminal]
    failed = [s for s in steps if s.status == S.FAILED]
    rejected = [s.key for s in steps if s.status == S.REJECTED]
    if unfinished:
        return RunStatus.FAILED, f"no step can run, yet {', '.join(unfinished[:5])} did not finish"
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        what = "verification" if first.spec.type == "verification" else "step"
        return RunStatus.FAILED, f'{what} "{first.key}" failed{more}: {first.error}'
    if rejected:
        return RunStatus.REJECTED, f"rejected at {', '.join(rejected)}"
    unverified = _unverified(run, steps)
    if unverified is not None:
        return RunStatus.FAILED, unverified
    return RunStatus.SUCCEEDED, None


def _unverified(run: RunState, steps: list[StepState]) -> str | None:
    """With ``require_verification``: why the run cannot count as succeeded, or None."""
    if not run.policy.require_verification:
        return None
    checks = [s for s in steps if s.spec.type == "verification"]
    if not checks:
        return "require_verification is set, but the plan has no verification step"
    for check in checks:
        if check.status != S.SUCCEEDED:
            return (
                f'require_verification: verification "{check.key}" did not pass '
                f"(it is {check.status.value}: {check.error or 'no reason recorded'})"
            )
    return None
