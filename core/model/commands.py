"""Operator commands as typed records: what an operator asks of a run, and how it travels between processes.

They are plain data, cheap to import: a command sent to the process that drives
the run (``loopdeck approve`` in a second terminal) is built, queued and
answered without the engine or the plan's models loaded here. The driver's
``core.engine.actions.decide`` decides it. Commands travel as ``(kind, payload)``
in the commands table (``to_payload`` / ``from_payload``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from core.errors import BadInput

KEEP = "__loopdeck_keep__"  # Approve.input when the operator did not edit it


@dataclass(frozen=True)
class Approve:
    kind: ClassVar[str] = "approve"
    past: ClassVar[str] = "approved"
    step: str
    reason: str | None = None
    input: Any = KEEP


@dataclass(frozen=True)
class Reject:
    kind: ClassVar[str] = "reject"
    past: ClassVar[str] = "rejected"
    step: str
    reason: str | None = None


@dataclass(frozen=True)
class Skip:
    kind: ClassVar[str] = "skip"
    past: ClassVar[str] = "changed"
    step: str
    reason: str | None = None


@dataclass(frozen=True)
class Retry:
    kind: ClassVar[str] = "retry"
    past: ClassVar[str] = "changed"
    step: str


@dataclass(frozen=True)
class Cancel:
    kind: ClassVar[str] = "cancel"
    past: ClassVar[str] = "canceled"
    reason: str | None = None


@dataclass(frozen=True)
class Finish:
    """End the run now, with the operator's answer (or, without one, what its final steps produced)."""

    kind: ClassVar[str] = "finish"
    past: ClassVar[str] = "finished"
    answer: Any = None
    status: str = "succeeded"  # or "failed"
    reason: str | None = None
    has_answer: bool = False  # an answer of None given on purpose is still an answer


ON_A_STEP = (Approve, Reject, Skip, Retry)  # sent to a run's driver without a decision made here first
FINISH_STATUSES = ("succeeded", "failed")
ENDS_RUN = ("cancel", "finish")  # commands that end the run: the driver stops rather than answering at once


@dataclass(frozen=True)
class SetBudget:
    kind: ClassVar[str] = "budget"
    past: ClassVar[str] = "given a new budget"
    limit: float | None  # tokens (a whole number), or dollars with ``usd``
    usd: bool = False


@dataclass(frozen=True)
class Replan:
    kind: ClassVar[str] = "replan"
    past: ClassVar[str] = "replanned"
    steps: Any
    mode: str = "append"
    reason: str | None = None


@dataclass(frozen=True)
class DecidePlan:
    """Approve or reject the plan a run awaits review of (a new run's, or a replan an agent proposed)."""

    kind: ClassVar[str] = "plan"
    past: ClassVar[str] = "given a plan decision"
    approve: bool
    reason: str | None = None
    steps: Any = None  # edited steps of a proposed replan
    plan: Any = None  # an edited plan, for a run that has not started


@dataclass(frozen=True)
class DecideCall:
    """Answer a tool call that waits for an operator: run it (with edited arguments) or refuse it."""

    kind: ClassVar[str] = "call"
    past: ClassVar[str] = "given a tool call decision"
    call: str
    approve: bool
    reason: str | None = None
    arguments: Any = KEEP
    always: bool = False  # and allow this tool for the rest of the run (a rule added to the run, audited)


Command = Approve | Reject | Skip | Retry | Cancel | Finish | SetBudget | Replan | DecidePlan | DecideCall
KINDS: dict[str, type[Command]] = {
    c.kind: c for c in (Approve, Reject, Skip, Retry, Cancel, Finish, SetBudget, Replan, DecidePlan, DecideCall)
}


def to_payload(command: Command) -> dict[str, Any]:
    payload = asdict(command)
    for name in ("input", "arguments"):
        if payload.get(name, None) == KEEP:
            del payload[name]
    return payload


def from_payload(kind: str, payload: dict[str, Any]) -> Command:
    """The command a queued ``(kind, payload)`` holds; ``BadInput`` when it is not one."""
    cls = KINDS.get(kind)
    if cls is None:
        raise BadInput(f"unknown command {kind!r}")
    try:
        return cls(**payload)
    except TypeError as exc:
        raise BadInput(f"malformed {kind} command: {exc}") from None
