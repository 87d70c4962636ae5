"""The context aggregator: what a step sees of the work upstream of it.

Built from the outputs of the steps it depends on, per the run's policy:
``last_n`` keeps the n most recently finished, ``all`` keeps them all; tool
outputs and other step outputs can each be left out; the whole is capped at
``max_context_tokens`` (estimated at 4 characters a token), dropping the oldest
first and cutting a long output with a visible marker. 0 means 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.model.policy import Policy

CHARS_PER_TOKEN = 4
TRUNCATION_MARKER = " …[truncated {n} chars]"
MIN_KEPT_CHARS = 16


@dataclass(frozen=True, slots=True)
class Upstream:
    key: str
    title: str
    type: str
    output: Any
    ended_at: float


@dataclass(frozen=True, slots=True)
class ContextRules:
    """The policy's fields the aggregator reads, with ``Policy``'s defaults (a test holds them equal): a stored
    plan's policy, validated when the run was made, read without pydantic (a dashboard showing a step's
    context would otherwise load pydantic and the policy model for it, ~40 ms of its first step shown)."""

    max_context_tokens: int = 4000
    context_summary_strategy: str = "last_n"
    context_last_n: int = 3
    include_tool_results: bool = True
    include_step_outputs: bool = True

    @classmethod
    def of(cls, policy: dict[str, Any]) -> ContextRules:
        """The rules of a plan's ``policy`` as stored (what it leaves out, the default)."""
        return cls(**{f.name: policy[f.name] for f in fields(cls) if f.name in policy})


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def build_context(policy: Policy | ContextRules, upstream: list[Upstream]) -> list[dict[str, Any]]:
    """Context entries ``{key, title, type, output}``, oldest first, within the token cap."""
    chosen = [u for u in upstream if (policy.include_tool_results if u.type == "tool" else policy.include_step_outputs)]
    chosen.sort(key=lambda u: u.ended_at)
    if policy.context_summary_strategy == "last_n":
        chosen = chosen[-policy.context_last_n :] if policy.context_last_n else []
    budget = policy.max_context_tokens * CHARS_PER_TOKEN
    entries: list[dict[str, Any]] = []
    for u in reversed(chosen):  # newest first, so the oldest are the ones dropped
        text = u.output if isinstance(u.output, str) else json.dumps(u.output, default=str)
        if budget <= 0:
            break
        if len(text) > budget:
            keep = budget - len(TRUNCATION_MARKER.format(n=len(text)))  # the longest marker it can need
            if keep < MIN_KEPT_CHARS:
                break  # too little room to be useful: drop this one and everything older
            text = text[:keep] + TRUNCATION_MARKER.format(n=len(text) - keep)
        budget -= len(text)
        entries.append({"key": u.key, "title": u.title, "type": u.type, "output": text})
    entries.reverse()
    return entries
