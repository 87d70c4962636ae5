"""A tool call as the driving process holds it: the record's values, changed only by ``transitions.move_call``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.model.states import CallStatus
from core.store.records import ToolCallRecord
from core.values import dumps


@dataclass
class CallState:
    id: str
    step: str
    attempt: int
    turn: int
    idx: int
    tool: str
    server: str | None
    model_call_id: str | None
    text: str | None
    arguments: Any
    status: CallStatus
    result: Any = None
    error: str | None = None
    decided_by: str | None = None
    rule: str | None = None
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    deadline: float | None = None  # when its approval times out, while it waits

    def row(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "id": self.id,
            "step_key": self.step,
            "attempt": self.attempt,
            "turn": self.turn,
            "idx": self.idx,
            "tool": self.tool,
            "server": self.server,
            "model_call_id": self.model_call_id,
            "text": self.text,
            "arguments_json": dumps(self.arguments),
            "status": self.status.value,
            "result_json": None if self.result is None else dumps(self.result),
            "error": self.error,
            "decided_by": self.decided_by,
            "rule": self.rule,
            "reason": self.reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "deadline": self.deadline,
        }

    @classmethod
    def from_record(cls, r: ToolCallRecord) -> CallState:
        return cls(
            r.id,
            r.step_key,
            r.attempt,
            r.turn,
            r.idx,
            r.tool,
            r.server,
            r.model_call_id,
            r.text,
            r.arguments,
            r.status,
            r.result,
            r.error,
            r.decided_by,
            r.rule,
            r.reason,
            r.created_at,
            r.updated_at,
            r.deadline,
        )
