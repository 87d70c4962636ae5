"""Typed run events. Every state change produces one, committed before it is published.

Ids come from the database and increase, so a reader can always resume
"since id N"; ``Gap`` tells a slow subscriber it missed events and should
re-read from the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_RESUMED = "run_resumed"
    RUN_WAITING = "run_waiting"
    RUN_CONTINUED = "run_continued"
    RUN_ENDED = "run_ended"  # payload: status, reason, summary (the result's sentence)
    RUN_FINISHED = "run_finished"  # an operator ended the run early (`loopdeck finish`); run_ended follows
    STEP_WAITING = "step_waiting"
    STEP_APPROVED = "step_approved"
    STEP_REJECTED = "step_rejected"
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_RETRYING = "step_retrying"
    STEP_SKIPPED = "step_skipped"
    STEP_REQUEUED = "step_requeued"
    STEP_RESULT_STALE = "step_result_stale"
    COMMAND_REFUSED = "command_refused"
    STEP_ROUTED = "step_routed"
    BREAKER_CHANGED = "breaker_changed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BUDGET_CHANGED = "budget_changed"
    RUN_REPLANNED = "run_replanned"
    STEP_FEEDBACK = "step_feedback"
    STEP_REOPENED = "step_reopened"
    STEP_OUTPUT_PARTIAL = "step_output_partial"
    RUN_PLAN_PROPOSED = "run_plan_proposed"
    RUN_PLAN_APPROVED = "run_plan_approved"
    RUN_PLAN_REJECTED = "run_plan_rejected"
    REPLAN_REFUSED = "replan_refused"
    STEP_HELD = "step_held"  # a ready step waits (for a breaker's probe): payload says why and until when
    # tool calls (model.tools): payload has "call" (loopdeck's id), "tool", and what the transition adds
    TOOL_CALL_REQUESTED = "tool_call_requested"
    TOOL_CALL_WAITING = "tool_call_waiting"
    TOOL_CALL_APPROVED = "tool_call_approved"
    TOOL_CALL_REJECTED = "tool_call_rejected"
    TOOL_CALL_DENIED = "tool_call_denied"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_SUCCEEDED = "tool_call_succeeded"
    TOOL_CALL_FAILED = "tool_call_failed"
    TOOL_CALL_INTERRUPTED = "tool_call_interrupted"
    APPROVAL_RULE_ADDED = "approval_rule_added"  # an operator added a rule to a live run (payload: rule, user)
    APPROVAL_TIMED_OUT = "approval_timed_out"  # a gate's deadline passed: payload gate, step/call, action
    NOTIFICATION_SENT = "notification_sent"  # payload: event, target (scheme and host only), attempts
    NOTIFICATION_FAILED = "notification_failed"  # payload: event, target, attempts, error


# Run events whose payload says the run's status (and the reason) after them.
RUN_STATUS_EVENTS: frozenset[str] = frozenset(
    {
        EventType.RUN_STARTED,
        EventType.RUN_RESUMED,
        EventType.RUN_WAITING,
        EventType.RUN_CONTINUED,
        EventType.RUN_ENDED,
    }
)
# Plan-review events; their payload's "status" is the run's status after them ("reason" is the operator's).
PLAN_REVIEW_EVENTS: frozenset[str] = frozenset(
    {
        EventType.RUN_PLAN_PROPOSED,
        EventType.RUN_PLAN_APPROVED,
        EventType.RUN_PLAN_REJECTED,
    }
)

# The status a step is in after each step event (for readers that fold events into a view).
STEP_STATUS_AFTER: dict[str, str] = {
    EventType.STEP_STARTED: "running",
    EventType.STEP_SUCCEEDED: "succeeded",
    EventType.STEP_FAILED: "failed",
    EventType.STEP_SKIPPED: "skipped",
    EventType.STEP_REJECTED: "rejected",
    EventType.STEP_WAITING: "waiting_user",
    EventType.STEP_APPROVED: "pending",
    EventType.STEP_RETRYING: "pending",
    EventType.STEP_REQUEUED: "pending",
    EventType.STEP_REOPENED: "pending",
}


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    run_id: str
    type: str
    step_key: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "step": self.step_key,
            "created_at": iso(self.created_at),
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class Gap:
    """Marker for a subscriber that fell behind: events after ``after_id`` were dropped."""

    run_id: str | None
    after_id: int


_SECONDS: dict[int, str] = {}  # a whole second -> "YYYY-MM-DDTHH:MM:SS" (iso's cache)


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with microseconds, or None: what ``datetime.fromtimestamp(ts, UTC).isoformat(timespec=
    "microseconds")`` writes, rounded as it rounds (half to even), with the date and time of each whole second
    made once. A 10,000-step run's snapshot writes 40,000 stamps, mostly of a few seconds: a third of the
    time of building a datetime each."""
    if ts is None:
        return None
    fraction, whole = math.modf(ts)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        micro, whole = micro - 1_000_000, whole + 1
    elif micro < 0:
        micro, whole = micro + 1_000_000, whole - 1
    second = int(whole)
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[second] = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
    return f"{prefix}.{micro:06d}+00:00"
