"""Tool calls: what a tool is and the approval rules that gate calls.

A call's state machine (``CallStatus``, ``check_call``) lives with the other
state machines in ``core.model.states`` (the store reads it without building
these pydantic models); it is re-exported here. Everything here is pure.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.limits import MAX_SECONDS
from core.model.states import CALL_ACTIONS, CallStatus, call_id, check_call

__all__ = ["CALL_ACTIONS", "CallStatus", "call_id", "check_call"]  # the call state machine lives in states


# -- what a tool is ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it, and the hints loopdeck gates it by (MCP annotations, or a skill's)."""

    name: str  # SKILL, or SERVER:TOOL
    description: str
    input_schema: dict[str, Any]
    server: str | None = None  # None: a skill
    destructive: bool = False
    read_only: bool = False
    idempotent: bool = False

    @property
    def safe_to_repeat(self) -> bool:
        """Run again after a crash without asking: it changes nothing, or doing it twice is doing it once."""
        return self.read_only or self.idempotent

    def annotations(self) -> dict[str, bool]:
        return {"destructive": self.destructive, "read_only": self.read_only, "idempotent": self.idempotent}


class McpServer(BaseModel):
    """An MCP server a run's agents may call: a command started over stdio, or a streamable HTTP URL.

    Values may name environment variables as ``${NAME}`` (read when the server
    starts): the plan is stored, so a secret belongs in the environment.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)

    command: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1, description="argv")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = Field(None, pattern=r"^https?://\S+$", description="streamable HTTP endpoint")
    timeout_s: float = Field(30.0, gt=0, le=MAX_SECONDS, description="seconds to start, list tools, or answer")
    breaker_failures: int = Field(
        3, ge=1, le=100, description="failures in a row (to start, or to answer) that open its breaker"
    )
    breaker_cooldown_s: float = Field(30.0, ge=0, le=MAX_SECONDS, description="seconds open before it is tried again")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server has a command (stdio) or a url (streamable HTTP), not both or neither")
        return self

    def breaker_target(self, name: str) -> str:
        """What its circuit breaker guards: this server as configured (two plans' "fs" differ unless equal)."""
        what = self.model_dump_json(include={"command", "url", "cwd", "env"})
        return f"mcp {name} #{hashlib.sha256(what.encode()).hexdigest()[:12]}"


# -- approval rules ----------------------------------------------------------------------------------

Action = Literal["allow", "ask", "deny"]


OnTimeout = Literal["reject", "approve", "fail"]  # what an approval deadline does when it passes


class ApprovalRule(BaseModel):
    """One rule of ``approval_rules``: every field given must match (globs for names); first match wins."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    tool: str | None = Field(None, description="tool name glob, e.g. fs:delete_*")
    server: str | None = Field(None, description="MCP server name glob")
    agent: str | None = Field(None, description="agent name glob")
    step_type: str | None = None
    step: str | None = Field(None, description="step key glob")
    destructive: bool | None = None
    read_only: bool | None = None
    arguments: dict[str, str] | None = Field(None, description="argument name -> glob its value must match")
    action: Action
    reason: str | None = Field(None, max_length=2000, description="sent to the model when the rule denies")
    approval_timeout_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, description="when it asks: seconds the operator has to answer"
    )
    on_approval_timeout: OnTimeout | None = Field(None, description="reject | approve | fail; default: the policy's")
    applies_to: Literal["tools", "steps"] | None = Field(
        None, description="default: tools when the rule names a tool, server, annotation or argument, else steps"
    )

    @property
    def target(self) -> Literal["tools", "steps"]:
        if self.applies_to is not None:
            return self.applies_to
        tool_fields = (self.tool, self.server, self.destructive, self.read_only, self.arguments)
        return "tools" if any(f is not None for f in tool_fields) else "steps"

    def decision(self, index: int) -> RuleDecision:
        return RuleDecision(
            self.action, self.describe(index), self.reason, self.approval_timeout_s, self.on_approval_timeout
        )

    def describe(self, index: int) -> str:
        """``rule 2 (tool=fs:delete_* -> ask)``: how a decision names the rule that made it."""
        fields = self.model_dump(
            exclude_none=True, exclude={"action", "reason", "approval_timeout_s", "on_approval_timeout"}
        )
        shown = ", ".join(f"{k}={v}" for k, v in fields.items()) or "any"
        return f"rule {index + 1} ({shown} -> {self.action})"


@dataclass(frozen=True)
class Facts:
    """What a rule can look at: the call (tool facts may be None for a step gate)."""

    step: str
    step_type: str
    agent: str
    tool: str | None = None
    server: str | None = None
    destructive: bool = False
    read_only: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleDecision:
    action: Action
    rule: str  # which rule made it, or which default
    reason: str | None = None
    timeout_s: float | None = None  # the rule's approval deadline, if it sets one
    on_timeout: OnTimeout | None = None


def _glob(pattern: str | None, value: str | None) -> bool:
    return pattern is None or (value is not None and fnmatch.fnmatchcase(value, pattern))


def matches(rule: ApprovalRule, facts: Facts) -> bool:
    if rule.tool is not None and not _glob(rule.tool, facts.tool):
        return False
    if rule.server is not None and not _glob(rule.server, facts.server):
        return False
    if not (_glob(rule.agent, facts.agent) and _glob(rule.step_type, facts.step_type) and _glob(rule.step, facts.step)):
        return False
    if rule.destructive is not None and rule.destructive != facts.destructive:
        return False
    if rule.read_only is not None and rule.read_only != facts.read_only:
        return False
    for name, pattern in (rule.arguments or {}).items():
        value = facts.arguments.get(name)
        shown = value if isinstance(value, str) else None if value is None else str(value)
        if not _glob(pattern, shown):
            return False
    return True


def decide_call(rules: list[ApprovalRule], facts: Facts, default: Action) -> RuleDecision:
    """The first matching tool rule's action; without one: ask if destructive, allow if read-only, else ``default``."""
    for index, rule in enumerate(rules):
        if rule.target == "tools" and matches(rule, facts):
            return rule.decision(index)
    if facts.destructive:
        return RuleDecision("ask", "default for a destructive tool")
    if facts.read_only:
        return RuleDecision("allow", "default for a read-only tool")
    return RuleDecision(default, f"policy.default_tool_approval ({default})")


def approval_timeout(
    own_s: float | None,
    own_action: OnTimeout | None,
    rule: RuleDecision | None,
    policy_s: float | None,
    policy_action: OnTimeout,
) -> tuple[float, OnTimeout] | None:
    """A gate's deadline (seconds) and what it does when it passes: the step's own, else the rule that
    asked, else the policy's; None when none sets one."""
    timeout = own_s or (rule.timeout_s if rule else None) or policy_s
    if timeout is None:
        return None
    return timeout, own_action or (rule.on_timeout if rule else None) or policy_action


def step_rule(rules: list[ApprovalRule], facts: Facts) -> RuleDecision | None:
    """The first rule about steps that matches this step, if any."""
    for index, rule in enumerate(rules):
        if rule.target == "steps" and matches(rule, facts):
            return rule.decision(index)
    return None
