"""A plan's policy: how its run is driven (concurrency, attempts, approvals, context, budgets, notifications).

Every field has a default, and each is checked (finite numbers, bounded ranges)
when the plan is validated; ``core.model.plan`` holds the rest of the plan.
"""

from __future__ import annotations

import re
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.limits import (
    MAX_AGENTS,
    MAX_ATTEMPT_TOKENS,
    MAX_ATTEMPTS,
    MAX_BACKOFF_FACTOR,
    MAX_CONCURRENCY,
    MAX_ITERATIONS,
    MAX_SECONDS,
    MAX_STEPS,
    MAX_TOKENS,
    MAX_USD,
)

__all__ = ["NOTIFY_EVENTS", "Backoff", "NotifyEvent", "NotifyTarget", "Policy", "StrictModel"]


class StrictModel(BaseModel):
    """The base of every plan model: unknown fields refused, every number finite (a NaN latency was
    accepted once, then refused when the run was read back)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)


class Backoff(StrictModel):
    """Delay before retry n (1-based): min(max_s, base_s * factor**(n-1)), optionally jittered."""

    base_s: float = Field(1.0, ge=0, le=MAX_SECONDS)
    factor: float = Field(2.0, ge=1, le=MAX_BACKOFF_FACTOR)
    max_s: float = Field(60.0, ge=0, le=MAX_SECONDS)
    jitter: bool = True


NotifyEvent = Literal["gate_waiting", "approval_timed_out", "run_ended", "budget_paused", "breaker_opened"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = typing.get_args(NotifyEvent)


class NotifyTarget(StrictModel):
    """Where to tell people about a run: an Apprise URL, named by an environment variable (a URL may hold
    a secret, and the plan is stored: only ``${NAME}`` is), and which happenings to send (default: all)."""

    url: str = Field(
        description="${NAME}: the environment variable holding the Apprise URL (json://, slack://, mailto://, ...)"
    )
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS), min_length=1)

    @field_validator("url")
    @classmethod
    def _named_not_written(cls, url: str) -> str:
        if not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", url):
            raise ValueError(
                "write ${NAME} and put the URL in that environment variable: the plan is stored, "
                "and a notification URL may hold a secret"
            )
        return url

    @property
    def variable(self) -> str:
        return self.url[2:-1]


class Policy(StrictModel):
    max_concurrency: int = Field(5, ge=1, le=MAX_CONCURRENCY, description="steps running at once in this run")
    max_step_attempts: int = Field(
        3, ge=1, le=MAX_ATTEMPTS, description="attempts per step unless the step sets max_attempts"
    )
    max_iterations: int | None = Field(
        None, ge=1, le=MAX_ITERATIONS, description="cap on launches (attempts) in the run; reaching it fails the run"
    )
    start_order: Literal["plan", "critical_path"] = Field(
        "plan",
        description="which ready step a free slot takes: the first in the plan, or (critical_path) the one with "
        "the longest chain of steps still to run after it, ties in plan order",
    )
    allow_replan: bool = True
    require_verification: bool = Field(
        False, description="the run succeeds only if it has verification steps and every one of them passed"
    )
    plan_approval: Literal["required", "auto"] = Field(
        "auto", description="required: an operator approves the plan (and agent-proposed replans) before they run"
    )
    stop_on_approval_required: bool = Field(
        True, description="while a gate waits, launch nothing new (running steps finish)"
    )
    max_context_tokens: int = Field(4000, ge=0, le=MAX_ATTEMPT_TOKENS)
    context_summary_strategy: Literal["last_n", "all"] = "last_n"
    context_last_n: int = Field(3, ge=0, le=MAX_STEPS, description="upstream outputs kept by the last_n strategy")
    include_tool_results: bool = True
    include_step_outputs: bool = True
    token_budget: int | None = Field(None, ge=0, le=MAX_TOKENS, description="tokens the run may spend; null: no limit")
    default_tool_approval: Literal["allow", "ask", "deny"] = Field(
        "ask", description="a tool call no approval rule matches, neither destructive nor read-only"
    )
    cost_budget_usd: float | None = Field(
        None, ge=0, le=MAX_USD, description="US dollars the run may spend (priced model calls); null: no limit"
    )
    on_budget_exhausted: Literal["fail", "pause"] = "fail"
    approval_timeout_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, description="seconds an operator has to answer a gate; null: no deadline"
    )
    on_approval_timeout: Literal["reject", "approve", "fail"] = Field(
        "reject", description="what a passed deadline does: reject the step or call, approve it, or fail the run"
    )
    notify: list[NotifyTarget] = Field(
        default_factory=list, max_length=MAX_AGENTS, description="Apprise URLs (as ${NAME}) told about the run"
    )
    backoff: Backoff = Field(default_factory=Backoff)
