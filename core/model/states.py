"""Run and step state machines: the statuses and the transitions allowed between them.

Run:  planning -> awaiting_plan_approval? -> running <-> waiting_user
      -> succeeded | failed | rejected | canceled
Step: pending -> running -> succeeded | failed | skipped
      pending/running -> waiting_user -> pending (approved) | rejected
      failed -> pending (retry, while attempts remain)

``check_step`` is called before every step transition: an action the table
does not allow raises a ``TransitionError`` that names the step, its status and
the action, and nothing is written.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import TransitionError


class RunStatus(StrEnum):
    PLANNING = "planning"
    AWAITING_PLAN_APPROVAL = "awaiting_plan_approval"
    RUNNING = "running"
    WAITING_USER = "waiting_user"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in _RUN_TERMINAL


_RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELED})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_USER = "waiting_user"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in STEP_TERMINAL


STEP_TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.REJECTED})

S = StepStatus
# action -> (statuses it may start from, status it leads to)
STEP_ACTIONS: dict[str, tuple[frozenset[StepStatus], StepStatus]] = {
    "start": (frozenset({S.PENDING}), S.RUNNING),
    "succeed": (frozenset({S.RUNNING}), S.SUCCEEDED),
    "fail": (frozenset({S.RUNNING}), S.FAILED),
    "retry": (frozenset({S.RUNNING, S.FAILED}), S.PENDING),
    "gate": (frozenset({S.PENDING, S.RUNNING}), S.WAITING_USER),
    "approve": (frozenset({S.WAITING_USER}), S.PENDING),
    "reject": (frozenset({S.WAITING_USER}), S.REJECTED),
    "skip": (frozenset({S.PENDING, S.WAITING_USER}), S.SKIPPED),
    "requeue": (frozenset({S.RUNNING}), S.PENDING),
    "cancel": (frozenset({S.PENDING, S.RUNNING, S.WAITING_USER}), S.SKIPPED),
    "reopen": (frozenset({S.SKIPPED}), S.PENDING),
    "rerun": (
        frozenset({S.FAILED}),
        S.PENDING,
    ),  # an operator gives a failed step one more attempt  # a dependent skipped because of a step now retried
}


def check_step(key: str, status: StepStatus, action: str) -> StepStatus:
    """Return the status ``action`` leads to, or raise naming why it is not allowed."""
    sources, target = STEP_ACTIONS[action]
    if status not in sources:
        allowed = " or ".join(sorted(s.value for s in sources))
        raise TransitionError(f'step "{key}" is {status.value}; only a {allowed} step can be {_past(action)}')
    return target


def _past(action: str) -> str:
    return {
        "start": "started",
        "succeed": "marked succeeded",
        "fail": "marked failed",
        "retry": "retried",
        "gate": "gated",
        "approve": "approved",
        "reject": "rejected",
        "skip": "skipped",
        "requeue": "requeued",
        "cancel": "canceled",
        "reopen": "reopened",
        "rerun": "retried",
    }[action]


# -- one tool call -------------------------------------------------------------------------------------
# requested -> running                (allowed by a rule or the default)
# requested -> waiting_user -> approved -> running | rejected
# requested -> denied                 (a rule said no; its reason goes to the model)
# running   -> succeeded | failed
# running   -> interrupted            (the process died while it ran)
# interrupted -> approved | rejected  (the operator says whether to run it again)
#
# Calls are identified by loopdeck's own id, ``STEP.ATTEMPT.TURN.INDEX``: the model's call ids
# collide across parallel calls and attempts, so they are kept only to answer the model.


class CallStatus(StrEnum):
    REQUESTED = "requested"
    WAITING_USER = "waiting_user"
    APPROVED = "approved"
    REJECTED = "rejected"
    DENIED = "denied"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        """The model has (or will get) this call's answer and it never changes again."""
        return self in _CALL_FINAL

    @property
    def waiting(self) -> bool:
        """An operator must answer it."""
        return self in (CallStatus.WAITING_USER, CallStatus.INTERRUPTED)


C = CallStatus
_CALL_FINAL = frozenset({C.SUCCEEDED, C.FAILED, C.REJECTED, C.DENIED})
CALL_ACTIONS: dict[str, tuple[frozenset[CallStatus], CallStatus]] = {
    "ask": (frozenset({C.REQUESTED}), C.WAITING_USER),
    "deny": (frozenset({C.REQUESTED}), C.DENIED),
    "approve": (frozenset({C.WAITING_USER, C.INTERRUPTED}), C.APPROVED),
    "reject": (frozenset({C.WAITING_USER, C.INTERRUPTED}), C.REJECTED),
    "start": (frozenset({C.REQUESTED, C.APPROVED}), C.RUNNING),
    "succeed": (frozenset({C.RUNNING}), C.SUCCEEDED),
    "fail": (frozenset({C.RUNNING}), C.FAILED),
    "interrupt": (frozenset({C.RUNNING}), C.INTERRUPTED),
}


def check_call(call_id: str, status: CallStatus, action: str) -> CallStatus:
    """The status ``action`` leads to, or a ``TransitionError`` that says why not."""
    sources, target = CALL_ACTIONS[action]
    if status not in sources:
        allowed = " or ".join(sorted(s.value for s in sources))
        raise TransitionError(
            f'tool call "{call_id}" is {status.value}; only a call that is {allowed} can be {_call_past(action)}'
        )
    return target


def _call_past(action: str) -> str:
    return {"ask": "held for approval", "deny": "denied", "start": "started", "succeed": "succeeded"}.get(
        action, action + "d" if action.endswith("e") else action + "ed"
    )


def call_id(step: str, attempt: int, turn: int, index: int) -> str:
    """``publish.1.2.0``: the first call of the second turn of attempt 1 of step "publish"."""
    return f"{step}.{attempt}.{turn}.{index}"
