"""Operator actions as typed commands, each decided by one function of the run's state.

``decide(run, command, user, now)`` checks the command against the run and
returns the ``Effects``: the rows and events to commit and what the driver
does next. The live controller applies a decision to the run it drives; an
action on a run nobody drives decides on a ``RunState`` read from the store
and commits the same writes. One decision, so a live and an offline run
answer the same command with the same events.

The commands themselves are plain records (``core.model.commands``), cheap to
build and send without the engine.
"""

from __future__ import annotations

from typing import Any

from core.engine.budget import Budget, check_cost_budget, check_token_budget
from core.engine.run_state import RunMode, RunState, StepState, new_step_row
from core.engine.transitions import Effects, end_run, move, move_call, set_run_status, settle, unqueue
from core.errors import BadInput, PlanError, PlanIssue, TransitionError
from core.model.commands import (  # (the commands it decides, one handler each)
    FINISH_STATUSES,
    KEEP,
    Approve,
    Cancel,
    Command,
    DecideCall,
    DecidePlan,
    Finish,
    Reject,
    Replan,
    Retry,
    SetBudget,
    Skip,
)
from core.model.events import EventType, iso
from core.model.plan import validate_plan
from core.model.replan import PlanChange, agent_child_issues, prepare_replan
from core.model.result import Finished
from core.model.states import RunStatus, StepStatus, check_step
from core.model.tools import ApprovalRule
from core.store import RUNS_CHANNEL, Store, notify

E = EventType
S = StepStatus


# -- deciding -----------------------------------------------------------------------------------------


def decide(run: RunState, command: Command, user: str, now: float) -> Effects:
    """Check ``command`` against the run, change the run, and return what it wrote and what follows."""
    if run.status.terminal:
        raise TransitionError(f"run {run.run_id} is {run.status.value}; an ended run can no longer be {command.past}")
    if not run.live:
        raise TransitionError(f"run {run.run_id} is ending; it can no longer be {command.past}")
    handler = _HANDLERS[type(command)]
    return handler(run, command, user, now)  # type: ignore[operator]


def _approve(run: RunState, cmd: Approve, user: str, now: float) -> Effects:
    step = run.step(cmd.step)
    effects = Effects()
    edited = cmd.input != KEEP
    payload: dict[str, Any] = {"user": user, "reason": cmd.reason, "input_edited": edited}
    changes: dict[str, Any] = {"approved_by": user}
    if edited:
        payload["input"] = changes["input"] = cmd.input
    move(run, step, "approve", effects.batch, now, (E.STEP_APPROVED, payload), **changes)
    run.waiting.discard(step.key)
    effects.ready.append(step.key)
    return effects


def _reject(run: RunState, cmd: Reject, user: str, now: float) -> Effects:
    step = run.step(cmd.step)
    effects = Effects()
    error = f"rejected by {user}" + (f": {cmd.reason}" if cmd.reason else "")
    move(
        run,
        step,
        "reject",
        effects.batch,
        now,
        (E.STEP_REJECTED, {"user": user, "reason": cmd.reason}),
        ended_at=now,
        error=error,
    )
    settle(run, step, effects, now)
    return effects


def _skip(run: RunState, cmd: Skip, user: str, now: float) -> Effects:
    step = run.step(cmd.step)
    effects = Effects()
    error = f"skipped by {user}" + (f": {cmd.reason}" if cmd.reason else "")
    move(
        run,
        step,
        "skip",
        effects.batch,
        now,
        (E.STEP_SKIPPED, {"reason": error, "user": user}),
        ended_at=now,
        error=error,
    )
    unqueue(run, step.key, effects)
    settle(run, step, effects, now)
    return effects


def _retry(run: RunState, cmd: Retry, user: str, now: float) -> Effects:
    """One more attempt for a failed step; the steps skipped because it failed wait for it again."""
    step = run.step(cmd.step)
    check_step(step.key, step.status, "rerun")
    skipped = skipped_because_of(run, step.key)
    for other in descendants(run, step.key) - skipped:
        child = run.steps[other]
        if child.attempts or child.status not in (S.PENDING, S.SKIPPED):
            raise TransitionError(
                f'step "{step.key}" cannot be retried: "{other}", which depends on it, '
                f"is {child.status.value} and has already run or been decided"
            )
    effects = Effects()
    for other in sorted(skipped, key=lambda k: run.steps[k].idx):
        move(
            run,
            run.steps[other],
            "reopen",
            effects.batch,
            now,
            (E.STEP_REOPENED, {"because": step.key, "user": user}),
            error=None,
            ended_at=None,
        )
    move(
        run,
        step,
        "rerun",
        effects.batch,
        now,
        (E.STEP_REQUEUED, {"attempt": step.attempts, "reason": f"retried by {user}", "user": user}),
        ended_at=None,
        not_before=None,
    )
    run.index.reopen(skipped | {step.key})
    effects.ready.append(step.key)
    return effects


def descendants(run: RunState, key: str) -> set[str]:
    seen: set[str] = set()
    stack = [key]
    while stack:
        for child in run.index.dependents(stack.pop()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def skipped_because_of(run: RunState, key: str) -> set[str]:
    """Steps skipped, directly or through others, because ``key`` did not succeed."""
    out: set[str] = set()
    causes = {key}
    stack = [key]
    while stack:
        for child in run.index.dependents(stack.pop()):
            step = run.steps[child]
            if (
                child not in out
                and step.status == S.SKIPPED
                and step.attempts == 0
                and any((step.error or "").startswith(f'dependency "{cause}"') for cause in causes)
            ):
                out.add(child)
                causes.add(child)
                stack.append(child)
    return out


def _cancel(run: RunState, cmd: Cancel, user: str, now: float) -> Effects:
    effects = Effects()
    end_run(run, RunStatus.CANCELED, f"canceled by {user}" + (f": {cmd.reason}" if cmd.reason else ""), effects, now)
    return effects


def _finish(run: RunState, cmd: Finish, user: str, now: float) -> Effects:
    if cmd.status not in FINISH_STATUSES:
        raise BadInput(f"a run is finished succeeded or failed, not {cmd.status!r}")
    effects = Effects()
    effects.batch.event(
        run.run_id,
        E.RUN_FINISHED,
        None,
        {"user": user, "reason": cmd.reason, "status": cmd.status, "answered": cmd.has_answer},
        now,
    )
    why = f"finished by {user}" + (f": {cmd.reason}" if cmd.reason else "")
    finished = Finished(user, cmd.reason, cmd.answer, cmd.has_answer)
    end_run(run, RunStatus(cmd.status), why, effects, now, finished)
    return effects


def _set_budget(run: RunState, cmd: SetBudget, user: str, now: float) -> Effects:
    """A new token budget, or dollar budget (``usd``); a run paused on its budget continues."""
    effects = Effects()
    payload: dict[str, Any] = {"user": user}
    if cmd.usd:
        payload.update({"from": run.dollars.limit, "to": check_cost_budget(cmd.limit), "unit": "usd"})
        run.dollars.limit = payload["to"]
    else:
        limit = check_token_budget(None if cmd.limit is None else _whole(cmd.limit))
        payload.update({"from": run.budget.limit, "to": limit, "unit": "tokens"})
        run.budget.limit = limit
    batch = effects.batch
    batch.run(run.run_id, run.run_row(now))
    batch.event(run.run_id, E.BUDGET_CHANGED, None, payload, now)
    if run.mode == RunMode.PAUSED:
        run.set_mode(RunMode.ACTIVE)
        set_run_status(run, RunStatus.RUNNING, None, batch, now, E.RUN_CONTINUED)
    return effects


def _whole(limit: float) -> int:
    if isinstance(limit, bool) or limit != int(limit):
        raise BadInput(f"a token budget is a whole number of tokens, not {limit!r}")
    return int(limit)


def pause_for_budget(run: RunState, budget: Budget, reason: str, now: float) -> Effects:
    """``budget`` (the run's tokens or dollars) is spent and nothing running can free room: wait for the
    operator to raise it."""
    effects = Effects()
    run.set_mode(RunMode.PAUSED)
    effects.batch.event(
        run.run_id,
        E.BUDGET_EXHAUSTED,
        None,
        {"reason": reason, "used": budget.used, "budget": budget.limit, "unit": budget.unit},
        now,
    )
    set_run_status(
        run,
        RunStatus.WAITING_USER,
        f"{reason}; raise it with `loopdeck budget {run.run_id} {budget.flag}`",
        effects.batch,
        now,
        E.RUN_WAITING,
    )
    return effects


# -- the plan -------------------------------------------------------------------------------------------


def prepare(run: RunState, steps: Any, mode: str) -> PlanChange:
    """A replan of the run, validated like a plan against its steps as they are."""
    return prepare_replan(
        run.plan, run.run_id, {k: (s.status.value, s.attempts) for k, s in run.steps.items()}, steps, mode
    )


def _replan(run: RunState, cmd: Replan, user: str, now: float) -> Effects:
    effects = Effects()
    apply_replan(run, prepare(run, cmd.steps, cmd.mode), cmd.mode, user, cmd.reason, effects, now)
    return effects


def apply_replan(
    run: RunState, change: PlanChange, mode: str, user: str | None, reason: str | None, effects: Effects, now: float
) -> None:
    """Swap in a validated replan: remove the replaced steps, add the new ones (skipped at once if doomed)."""
    for key in change.removed:
        unqueue(run, key, effects)
        run.index.remove(key)
        del run.steps[key]
    run.plan = change.plan
    first_idx = max((s.idx for s in run.steps.values()), default=-1) + 1
    added = [
        StepState(spec=spec, idx=first_idx + i, agent=change.plan.agent_of(spec), status=S.PENDING, input=spec.input)
        for i, spec in enumerate(change.added)
    ]
    rows = [new_step_row(run.run_id, s.idx, s.spec, s.agent) for s in added]
    effects.batch.extras.append(Store.replan_extra(run.run_id, change.plan.model_dump_json(), change.removed, rows))
    effects.batch.event(
        run.run_id,
        E.RUN_REPLANNED,
        None,
        {
            "mode": mode,
            "user": user,
            "reason": reason,
            "added": [s.key for s in added],
            "removed": change.removed,
        },
        now,
    )
    for step in added:
        run.steps[step.key] = step
        is_ready, doomed_by = run.index.add_live(
            step.key, step.idx, step.agent, step.spec.depends_on, step.spec.dependency_policy == "allow_skipped"
        )
        if doomed_by is not None:
            error = f'dependency "{doomed_by}" {run.steps[doomed_by].status.value}'
            move(run, step, "skip", effects.batch, now, (E.STEP_SKIPPED, {"reason": error}), ended_at=now, error=error)
            settle(run, step, effects, now)
        elif is_ready:
            effects.ready.append(step.key)
    run.index.rerank()  # (the longest chains after the steps that went and came)


def propose(run: RunState, by: StepState, proposal: Any, now: float) -> Effects:
    """A step's output proposes ``replan: {mode, steps}``: refused, applied, or held for the operator's review."""
    effects = Effects()
    mode = proposal.get("mode", "append") if isinstance(proposal, dict) else None
    try:
        if not isinstance(proposal, dict):
            raise PlanError([PlanIssue("replan", "a proposed replan is a mapping {mode, steps}")])
        refused = agent_child_issues(proposal.get("steps"))
        if refused:
            raise PlanError(refused)
        change = prepare(run, proposal.get("steps"), mode)  # type: ignore[arg-type]
        if run.proposal is not None:
            raise TransitionError(f'a replan proposed by "{run.proposal["by"]}" is already waiting for review')
    except (PlanError, TransitionError) as exc:
        effects.batch.event(run.run_id, E.REPLAN_REFUSED, by.key, {"agent": by.agent, "error": str(exc)}, now)
        return effects
    if run.policy.plan_approval != "required":
        apply_replan(run, change, mode, f"agent {by.agent} (step {by.key})", "proposed by the agent", effects, now)  # type: ignore[arg-type]
        return effects
    run.proposal = {"mode": mode, "steps": proposal["steps"], "by": by.key, "agent": by.agent}
    run.set_mode(RunMode.REVIEWING)
    timeout = run.policy.approval_timeout_s
    run.deadline = None if timeout is None else now + timeout
    effects.batch.event(
        run.run_id,
        E.RUN_PLAN_PROPOSED,
        by.key,
        {
            "by": by.key,
            "agent": by.agent,
            "mode": mode,
            "steps": proposal["steps"],
            "added": [s.key for s in change.added],
            "removed": change.removed,
            "status": RunStatus.AWAITING_PLAN_APPROVAL.value,
            "deadline": iso(run.deadline),
        },
        now,
    )
    set_run_status(run, RunStatus.AWAITING_PLAN_APPROVAL, proposal_reason(run), effects.batch, now, E.RUN_WAITING)
    return effects


def proposal_reason(run: RunState) -> str:
    assert run.proposal is not None
    return f'step "{run.proposal["by"]}" proposed a replan; approve or reject it (`loopdeck approve-plan {run.run_id}`)'


def _decide_plan(run: RunState, cmd: DecidePlan, user: str, now: float) -> Effects:
    if run.status != RunStatus.AWAITING_PLAN_APPROVAL:
        raise TransitionError(
            f"run {run.run_id} is {run.status.value}; only a run awaiting plan approval can have "
            "its plan approved or rejected"
        )
    if run.proposal is not None:
        if cmd.plan is not None:
            raise BadInput(f"run {run.run_id} has started; an edited replan gives steps, not a whole plan")
        return _decide_proposal(run, cmd, user, now)
    return _decide_first_plan(run, cmd, user, now)


def _decide_proposal(run: RunState, cmd: DecidePlan, user: str, now: float) -> Effects:
    """A replan an agent proposed mid-run: applied (with any edited steps) or dropped; the run goes on."""
    proposal = run.proposal
    assert proposal is not None
    change = (
        prepare(run, cmd.steps if cmd.steps is not None else proposal["steps"], proposal["mode"])
        if cmd.approve
        else None
    )
    effects = Effects()
    run.proposal = None
    run.set_mode(RunMode.ACTIVE)
    kind = E.RUN_PLAN_APPROVED if cmd.approve else E.RUN_PLAN_REJECTED
    effects.batch.event(
        run.run_id,
        kind,
        None,
        {
            "user": user,
            "reason": cmd.reason,
            "proposed_by": proposal["by"],
            "edited": cmd.steps is not None,
            "status": RunStatus.RUNNING.value,
        },
        now,
    )
    set_run_status(run, RunStatus.RUNNING, None, effects.batch, now, E.RUN_CONTINUED)
    if change is not None:
        why = f'proposed by step "{proposal["by"]}", approved by {user}'
        apply_replan(run, change, proposal["mode"], user, why, effects, now)
    return effects


def _decide_first_plan(run: RunState, cmd: DecidePlan, user: str, now: float) -> Effects:
    """The plan of a run that has not started: approved (perhaps edited), it may start; rejected, the run ends."""
    effects = Effects()
    batch = effects.batch
    event = {"user": user, "reason": cmd.reason, "edited": cmd.plan is not None}
    if not cmd.approve:
        batch.event(run.run_id, E.RUN_PLAN_REJECTED, None, {**event, "status": RunStatus.REJECTED.value}, now)
        end_run(
            run,
            RunStatus.REJECTED,
            f"plan rejected by {user}" + (f": {cmd.reason}" if cmd.reason else ""),
            effects,
            now,
        )
        return effects
    if cmd.plan is not None:
        edited = validate_plan(cmd.plan, source="edited plan", vouch=False)
        rows = [new_step_row(run.run_id, i, spec, edited.agent_of(spec)) for i, spec in enumerate(edited.steps)]
        batch.extras.append(Store.replan_extra(run.run_id, edited.model_dump_json(), list(run.steps), rows))
    run.status, run.reason = RunStatus.PLANNING, None
    batch.run(run.run_id, run.run_row(now))
    batch.extras.append(lambda conn: notify(conn, RUNS_CHANNEL, run.run_id))  # approved: a worker may start it now
    batch.event(run.run_id, E.RUN_PLAN_APPROVED, None, {**event, "status": RunStatus.PLANNING.value}, now)
    return effects


def _decide_call(run: RunState, cmd: DecideCall, user: str, now: float) -> Effects:
    """The operator's answer to a waiting (or interrupted) tool call; its attempt goes on once this commits."""
    call = run.call(cmd.call)
    if cmd.always and not cmd.approve:
        raise BadInput("always allowing a tool goes with approving its call")
    effects = Effects()
    payload: dict[str, Any] = {"user": user, "reason": cmd.reason}
    changes: dict[str, Any] = {"decided_by": user, "reason": cmd.reason}
    if cmd.approve and cmd.arguments != KEEP:
        payload["arguments"] = changes["arguments"] = cmd.arguments
    action = "approve" if cmd.approve else "reject"
    move_call(run, call, action, effects.batch, now, payload, **changes)
    effects.calls.append(call.id)
    if cmd.always:
        allow_tool(run, call.tool, user, call.id, effects, now)
    return effects


def allow_tool(run: RunState, tool: str, user: str, because: str, effects: Effects, now: float) -> None:
    """ "Always allow this tool in this run": a rule put first in the run's rules, stored with its plan."""
    rule = ApprovalRule(tool=tool, action="allow", reason=f"always allowed in this run by {user}")
    run.plan = run.plan.model_copy(update={"approval_rules": [rule, *run.plan.approval_rules]})
    effects.batch.extras.append(Store.replan_extra(run.run_id, run.plan.model_dump_json(), [], []))
    payload = {"rule": rule.model_dump(exclude_none=True), "user": user, "because": because}
    effects.batch.event(run.run_id, E.APPROVAL_RULE_ADDED, None, payload, now)


_HANDLERS = {
    DecideCall: _decide_call,
    Approve: _approve,
    Reject: _reject,
    Skip: _skip,
    Retry: _retry,
    Cancel: _cancel,
    Finish: _finish,
    SetBudget: _set_budget,
    Replan: _replan,
    DecidePlan: _decide_plan,
}
