"""Harness profiles: a named bundle of policy fields, agent settings and approval rules chosen per run.

A profile lives in the configuration file (``[profiles.NAME]``) or in a plan
(``profiles:``); ``--profile NAME`` applies one. A profile fills in what the
plan leaves unsaid: a field the plan writes itself wins (the precedence is
flags, plan, profile, environment, file, defaults), and the run records the
profile with the values it resolved to, so it can be reproduced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from core.limits import MAX_AGENTS, MAX_ATTEMPT_TOKENS
from core.model.policy import Policy, StrictModel
from core.model.tools import ApprovalRule

ALL_AGENTS = "*"
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$"


def _policy_patch_model() -> type[BaseModel]:
    """``Policy`` with every field optional: the policy fields a layer sets (``model_fields_set``).

    Built from ``Policy`` itself (its bounds and types kept), so a new policy
    field can be set in a profile or the configuration without touching this.
    An explicit null is checked like the plan's (``token_budget: null`` is fine,
    ``max_concurrency: null`` is not).
    """
    fields: dict[str, Any] = {
        name: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
        for name, info in Policy.model_fields.items()
    }
    return create_model("PolicyPatch", __base__=StrictModel, **fields)


if TYPE_CHECKING:
    PolicyPatch = BaseModel
else:
    PolicyPatch = _policy_patch_model()


def patch_fields(patch: BaseModel) -> dict[str, Any]:
    """The fields a patch sets, in JSON form (what is merged into a plan's policy)."""
    return patch.model_dump(mode="json", include=patch.model_fields_set)


class AgentSettings(StrictModel):
    """What a profile may change on an agent (fields its kind lacks are left alone)."""

    model: str | None = Field(None, min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=MAX_ATTEMPT_TOKENS)
    tools: list[str] | None = Field(None, description="SKILL, SERVER:TOOL or SERVER:*")
    max_turns: int | None = Field(None, ge=1, le=100)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Profile(StrictModel):
    description: str = Field("", max_length=1000)
    policy: PolicyPatch = Field(default_factory=PolicyPatch, description="policy fields (any of the plan's policy)")
    agents: dict[str, AgentSettings] = Field(
        default_factory=dict, max_length=MAX_AGENTS, description='NAME (or "*" for every agent) -> settings'
    )
    approval_rules: list[ApprovalRule] = Field(
        default_factory=list, max_length=1000, description="tried after the plan's own rules"
    )

    def policy_fields(self) -> dict[str, Any]:
        """The policy fields it sets."""
        return patch_fields(self.policy)

    def summary(self) -> str:
        """What it changes, in one line: ``max_concurrency=1, plan_approval=required; writer: temperature=0``."""
        policy = patch_fields(self.policy)
        parts = [", ".join(f"{k}={_short(v)}" for k, v in policy.items())] if policy else []
        for agent, settings in self.agents.items():
            changes = settings.changes()
            if changes:
                parts.append(f"{agent}: " + ", ".join(f"{k}={_short(v)}" for k, v in changes.items()))
        if self.approval_rules:
            parts.append(f"{len(self.approval_rules)} approval rule{'s' if len(self.approval_rules) != 1 else ''}")
        return "; ".join(parts) or "nothing"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"
