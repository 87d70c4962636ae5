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
