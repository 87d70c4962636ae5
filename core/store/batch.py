"""What one caller writes atomically: a typed batch of rows and events, built before any I/O.

Step rows are compare-and-set updates (the status and attempt the caller
expects, ``b_`` parameters); run rows are plain updates; events carry their
JSON-encoded payload and, for publishing after the commit, the payload
itself; extras are rare writes (a run's creation, a lease) run inside the
same transaction. ``core.store.writer`` commits batches in groups.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

STEP_MUTABLE = (
    "agent",
    "status",
    "attempts",
    "input_json",
    "output_json",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "not_before",
    "approved_by",
    "started_at",
    "ended_at",
    "cost_usd",
    "deadline",
)
RUN_MUTABLE = (
    "status",
    "reason",
    "token_budget",
    "prompt_tokens",
    "completion_tokens",
    "updated_at",
    "ended_at",
    "proposal_json",
    "hold",
    "result_json",
    "cost_usd",
    "cost_budget_usd",
    "deadline",
)


Extra = Callable[[Connection], Any]
"""A rare write (insert a run, take a lease) run inside the group's transaction; may raise ``StaleWrite``."""


@dataclass
class WriteBatch:
    """What one caller writes atomically: step CAS updates, run updates, events, extras."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    extras: list[Extra] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)  # the events' payloads, for publishing
    spans: list[dict[str, Any]] = field(default_factory=list)

    def step(self, run_id: str, key: str, expect_status: str, expect_attempts: int, row: dict[str, Any]) -> None:
        values = {name: row[name] for name in STEP_MUTABLE}
        values.update(b_run_id=run_id, b_key=key, b_status=expect_status, b_attempts=expect_attempts)
        self.steps.append(values)

    def run(self, run_id: str, row: dict[str, Any]) -> None:
        values = {name: row[name] for name in RUN_MUTABLE}
        values["b_id"] = run_id
        self.runs.append(values)

    def event(self, run_id: str, type_: str, step_key: str | None, payload: dict[str, Any], at: float) -> None:
        self.events.append(
            {
                "run_id": run_id,
                "step_key": step_key,
                "type": str(type_),
                "payload_json": json.dumps(payload, default=str),
                "created_at": at,
            }
        )
        self.payloads.append(payload)

    def span(
        self,
        run_id: str,
        key: str,
        attempt: int,
        agent: str,
        status: str,
        started: float,
        ended: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        error: str | None = None,
        *,
        cost_usd: float | None = None,
        kind: str = "attempt",
        name: str | None = None,
        turn: int | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """A span: an attempt's (``kind`` attempt), or a chat turn's or a tool call's inside that attempt."""
        self.spans.append(
            {
                "run_id": run_id,
                "step_key": key,
                "attempt": attempt,
                "agent": agent,
                "status": status,
                "started_at": started,
                "ended_at": ended,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "error": error,
                "kind": kind,
                "name": name,
                "turn": turn,
                "attributes_json": json.dumps(attributes, default=str) if attributes else None,
                "cost_usd": cost_usd,
            }
        )

    @property
    def size(self) -> int:
        return len(self.steps) + len(self.runs) + len(self.events) + len(self.extras) + len(self.spans)
