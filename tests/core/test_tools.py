"""The pure parts of tool calling: the call state machine, approval rules, schemas from signatures."""

from __future__ import annotations

import pytest

from core import PlanError, TransitionError, validate_plan
from core.model.tools import ApprovalRule, CallStatus, Facts, check_call, decide_call, step_rule
from core.tools import Toolbox, ToolError
from tests.fixtures.tools import SKILLS

C = CallStatus


def facts(**kw) -> Facts:
    base = {"step": "clean", "step_type": "reasoning", "agent": "bot", "tool": "delete_file", "server": None}
    return Facts(**{**base, **kw})


def rules(*data: dict) -> list[ApprovalRule]:
    return [ApprovalRule(**d) for d in data]


def test_a_call_moves_only_as_the_table_allows():
    assert check_call("s.1.1.0", C.REQUESTED, "ask") == C.WAITING_USER
    assert check_call("s.1.1.0", C.INTERRUPTED, "approve") == C.APPROVED
    assert check_call("s.1.1.0", C.APPROVED, "start") == C.RUNNING
    with pytest.raises(TransitionError, match=r'tool call "s\.1\.1\.0" is succeeded; only a call that is '):
        check_call("s.1.1.0", C.SUCCEEDED, "approve")
    with pytest.raises(TransitionError):
        check_call("s.1.1.0", C.WAITING_USER, "start")  # never run before someone said yes


@pytest.mark.parametrize(
    ("rule", "matching", "other"),
    [
        ({"tool": "delete_*"}, {}, {"tool": "read_file"}),
        ({"server": "fs"}, {"server": "fs"}, {"server": "web"}),
        ({"agent": "b*", "applies_to": "tools"}, {}, {"agent": "writer"}),
        ({"step_type": "skill", "applies_to": "tools"}, {"step_type": "skill"}, {}),
        ({"step": "cl*", "applies_to": "tools"}, {}, {"step": "publish"}),
        ({"destructive": True}, {"destructive": True}, {}),
        ({"read_only": True}, {"read_only": True}, {}),
        ({"arguments": {"path": "/etc/*"}}, {"arguments": {"path": "/etc/passwd"}}, {"arguments": {"path": "a"}}),
    ],
)
def test_each_kind_of_match(rule, matching, other):
    given = rules({**rule, "action": "deny", "reason": "no"})
    assert decide_call(given, facts(**matching), "allow").action == "deny"
    assert decide_call(given, facts(**other), "allow").action == "allow"


def test_the_first_matching_rule_wins_and_is_named():
    given = rules(
        {"tool": "delete_file", "arguments": {"path": "tmp/*"}, "action": "allow"},
        {"tool": "delete_*", "action": "deny", "reason": "ask a human"},
    )
    allowed = decide_call(given, facts(arguments={"path": "tmp/x"}), "ask")
    assert allowed.action == "allow" and allowed.rule.startswith("rule 1 (")
    denied = decide_call(given, facts(arguments={"path": "src/x"}), "ask")
    assert (denied.action, denied.reason) == ("deny", "ask a human") and denied.rule.startswith("rule 2 (")


def test_without_a_rule_destructive_asks_read_only_is_allowed_else_the_policy():
    assert decide_call([], facts(destructive=True), "allow").action == "ask"
    assert decide_call([], facts(read_only=True), "deny").action == "allow"
    neither = decide_call([], facts(), "deny")
    assert neither.action == "deny" and "default_tool_approval" in neither.rule


def test_step_rules_apply_to_steps_and_tool_rules_to_tools():
    given = rules({"step": "publish", "action": "ask"}, {"tool": "*", "action": "allow"})
    assert step_rule(given, facts(step="publish", tool=None)).action == "ask"
    assert step_rule(given, facts(step="draft", tool=None)) is None
    assert decide_call(given, facts(step="publish"), "deny").action == "allow"  # the step rule is not a tool rule


def test_a_skills_schema_comes_from_its_signature_and_pydantic_models():
    box = Toolbox(SKILLS)
    schema = box.spec("send").input_schema
    assert schema["required"] == ["message"] and schema["properties"]["copies"]["default"] == 1
    assert box.spec("delete_file").destructive and box.spec("read_file").read_only
    assert box.spec("read_file").description == "Read a file and return its text."
    box.check("send", {"message": {"to": "ops", "priority": "high"}})
    with pytest.raises(ToolError, match=r"message\.priority: 'urgent' is not one of"):
        box.check("send", {"message": {"to": "ops", "priority": "urgent"}})
    with pytest.raises(ToolError, match="is not available"):
        box.spec("nope")


async def test_a_skill_is_called_with_validated_arguments_and_its_errors_are_tool_errors():
    box = Toolbox(SKILLS)
    assert await box.invoke("send", {"message": {"to": "ops"}}) == "sent to ops"
    with pytest.raises(ToolError, match="OSError: disk on fire at x"):
        await box.invoke("broken", {"path": "x"})
    with pytest.raises(ToolError, match="arguments refused"):
        await box.invoke("send", {"message": "not an object"})


def test_a_plan_names_only_tools_its_agents_offer():
    plan = {
        "agents": {"bot": {"kind": "sim", "tools": ["read_file"], "tool_calls": [{"tool": "delete_file"}]}},
        "steps": [{"key": "s"}],
    }
    with pytest.raises(PlanError, match="tool_calls names 'delete_file', which is not in this agent's tools"):
        validate_plan(plan)
    plan["agents"]["bot"]["tools"] = ["read_file", "delete_file"]
    plan["approval_rules"] = [{"tool": "delete_*", "action": "maybe"}]
    with pytest.raises(PlanError, match="approval_rules"):
        validate_plan(plan)
