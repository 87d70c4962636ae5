"""Tool calls inside attempts: recorded before anything happens, gated by rules, answered by id, run once."""

from __future__ import annotations

import asyncio

import pytest

from core import Orchestrator, RunStatus, TransitionError, validate_plan
from tests.conftest import events_of
from tests.core.helpers import start, wait_event
from tests.fixtures.tools import INVOKED, SKILLS

ON_POSTGRES = True


def tool_plan(script: list, *, rules: list | None = None, steps: list | None = None, **policy) -> object:
    return validate_plan(
        {
            "goal": "tools",
            "skills": SKILLS,
            "agents": {
                "bot": {
                    "kind": "sim",
                    "latency_ms": 0,
                    "tools": ["read_file", "delete_file", "send", "broken", "slow_read"],
                    "tool_calls": script,
                }
            },
            "approval_rules": rules or [],
            "policy": policy,
            "steps": steps or [{"key": "clean", "agent": "bot"}],
        }
    )


@pytest.fixture(autouse=True)
def _fresh_log():
    INVOKED.clear()


async def wait_call(orch: Orchestrator, run_id: str, call_id: str, status: str = "waiting_user") -> None:
    async def poll() -> None:
        while (c := (await calls_by_id(orch, run_id)).get(call_id)) is None or c.status.value != status:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), 10)


async def invoked(count: int = 1) -> None:
    """Until the tools have been called ``count`` times: a call is committed ``running`` before its tool is
    touched, so the store says so a moment before the tool has run (on a busy machine, long enough to see)."""

    async def poll() -> None:
        while len(INVOKED) < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def calls_by_id(orch: Orchestrator, run_id: str) -> dict[str, object]:
    return {c.id: c for c in await orch.tool_calls(run_id)}


async def test_a_destructive_call_waits_and_runs_once_with_the_operators_edit(orch):
    script = [{"tool": "read_file", "arguments": {"path": "a"}}, {"tool": "delete_file", "arguments": {"path": "a"}}]
    run_id, task = await start(orch, tool_plan(script))
    waiting = await wait_event(orch, run_id, "tool_call_waiting")
    assert waiting.payload["call"] == "clean.1.2.0" and waiting.payload["rule"] == "default for a destructive tool"
    assert INVOKED == [{"tool": "read_file", "path": "a"}]  # the read-only call ran at once; the delete waits

    await orch.decide_call(run_id, "clean.1.2.0", arguments={"path": "b", "force": True}, user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    assert INVOKED[1:] == [{"tool": "delete_file", "path": "b", "force": True}]
    calls = await calls_by_id(orch, run_id)
    delete = calls["clean.1.2.0"]
    assert (delete.status.value, delete.decided_by, delete.arguments) == (
        "succeeded",
        "alice",
        {"path": "b", "force": True},
    )
    assert delete.result == {"deleted": "b"} and delete.rule == "default for a destructive tool"
    types = [e.type for e in await events_of(orch, run_id) if e.type.startswith("tool_call")]
    assert types == [
        "tool_call_requested",
        "tool_call_started",
        "tool_call_succeeded",
        "tool_call_requested",
        "tool_call_waiting",
        "tool_call_approved",
        "tool_call_started",
        "tool_call_succeeded",
    ]
    with pytest.raises(TransitionError, match="an ended run can no longer"):
        await orch.decide_call(run_id, "clean.1.2.0", user="bob")


async def test_a_denied_or_rejected_call_never_runs_and_the_model_gets_the_reason(orch):
    script = [
        [
            {"tool": "delete_file", "arguments": {"path": "/etc/passwd"}},
            {"tool": "delete_file", "arguments": {"path": "tmp/x"}},
        ],
        {"tool": "broken", "arguments": {"path": "p"}},
    ]
    rules = [
        {"tool": "delete_file", "arguments": {"path": "/etc/*"}, "action": "deny", "reason": "never system files"},
        {"tool": "broken", "action": "allow"},
    ]
    run_id, task = await start(orch, tool_plan(script, rules=rules))
    await wait_event(orch, run_id, "tool_call_waiting")
    await orch.decide_call(run_id, "clean.1.1.1", approve=False, reason="not today", user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    assert INVOKED == []
    output = (await orch.snapshot(run_id))["steps"][0]["output"]
    assert "this call is not allowed: never system files" in output  # what the model was told
    assert "the operator alice refused this call: not today" in output
    assert "the tool failed: OSError: disk on fire at p" in output
    calls = await calls_by_id(orch, run_id)
    assert calls["clean.1.1.0"].rule.startswith("rule 1 (") and calls["clean.1.1.0"].status.value == "denied"
    assert calls["clean.1.2.0"].status.value == "failed"


async def test_parallel_steps_each_waiting_on_a_call_are_answered_by_id_only(orch):
    script = [{"tool": "delete_file", "arguments": {"path": "x"}}]
    steps = [{"key": "left", "agent": "bot"}, {"key": "right", "agent": "bot"}]
    run_id, task = await start(orch, tool_plan(script, steps=steps))
    await wait_event(orch, run_id, "tool_call_waiting", "left")
    await wait_event(orch, run_id, "tool_call_waiting", "right")
    await orch.decide_call(run_id, "right.1.1.0", user="alice")
    await wait_event(orch, run_id, "step_succeeded", "right")
    calls = await calls_by_id(orch, run_id)
    assert calls["left.1.1.0"].status.value == "waiting_user"  # answering one never answered the other
    assert len(INVOKED) == 1
    await orch.decide_call(run_id, "left.1.1.0", user="bob")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    assert len(INVOKED) == 2


async def test_edited_arguments_are_checked_against_the_schema_and_a_second_answer_is_refused(orch):
    script = [
        {"tool": "send", "arguments": {"message": {"to": "ops"}}},
        {"tool": "delete_file", "arguments": {"path": "y"}},
    ]
    run_id, task = await start(orch, tool_plan(script))  # send is neither: the policy's default (ask) holds it
    await wait_event(orch, run_id, "tool_call_waiting")
    from core import BadInput

    with pytest.raises(BadInput, match="priority: 'urgent' is not one of"):
        await orch.decide_call(run_id, "clean.1.1.0", arguments={"message": {"to": "ops", "priority": "urgent"}})
    await orch.decide_call(run_id, "clean.1.1.0", arguments={"message": {"to": "ops", "priority": "high"}})
    await wait_call(orch, run_id, "clean.1.2.0")  # now the delete of the next turn waits
    with pytest.raises(TransitionError, match=r'tool call "clean\.1\.1\.0" is succeeded'):
        await orch.decide_call(run_id, "clean.1.1.0", approve=False)
    await orch.decide_call(run_id, "clean.1.2.0")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    assert INVOKED[0] == {"tool": "send", "to": "ops", "priority": "high", "copies": 1}


async def test_a_decision_taken_while_nobody_drives_the_run_is_kept_for_resume(db_url):
    script = [{"tool": "delete_file", "arguments": {"path": "z"}}]
    first = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        run_id, task = await start(first, tool_plan(script))
        await wait_event(first, run_id, "tool_call_waiting")
        task.cancel()  # the driver stops (and hands the run back); the call stays waiting in the store
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await first.close()
    second = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        assert (await second.decide_call(run_id, "clean.1.1.0", user="carol")).value == "offline"
        assert await asyncio.wait_for(second.drive(run_id), 10) == RunStatus.SUCCEEDED
        calls = await calls_by_id(second, run_id)
    finally:
        await second.close()
    assert calls["clean.1.1.0"].decided_by == "carol"
    assert INVOKED == [{"tool": "delete_file", "path": "z", "force": False}]  # run once, after the resume


async def test_always_allowing_a_tool_adds_an_audited_rule_to_the_run_that_later_calls_follow(orch):
    script = [{"tool": "delete_file", "arguments": {"path": "a"}}, {"tool": "delete_file", "arguments": {"path": "b"}}]
    run_id, task = await start(orch, tool_plan(script))
    await wait_event(orch, run_id, "tool_call_waiting")
    from core import BadInput

    with pytest.raises(BadInput, match="goes with approving"):
        await orch.decide_call(run_id, "clean.1.1.0", approve=False, always=True)
    await orch.decide_call(run_id, "clean.1.1.0", always=True, user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED  # the second delete did not wait
    calls = await calls_by_id(orch, run_id)
    assert calls["clean.1.2.0"].rule.startswith("rule 1 (tool=delete_file -> allow)")
    added = [e for e in await events_of(orch, run_id) if e.type == "approval_rule_added"]
    assert len(added) == 1 and added[0].payload["user"] == "alice" and added[0].payload["because"] == "clean.1.1.0"
    stored = (await orch.snapshot(run_id))["plan"]["approval_rules"]
    assert {k: v for k, v in stored[0].items() if v is not None} == {
        "tool": "delete_file",
        "action": "allow",
        "reason": "always allowed in this run by alice",
    }
    assert len(INVOKED) == 2


async def test_a_step_rule_that_asks_gates_a_step_like_approval_required(orch):
    steps = [{"key": "draft", "agent": "bot"}, {"key": "publish_blog", "agent": "bot", "depends_on": ["draft"]}]
    rules = [{"step": "publish_*", "action": "ask"}]
    run_id, task = await start(orch, tool_plan([], rules=rules, steps=steps))
    waiting = await wait_event(orch, run_id, "step_waiting", "publish_blog")
    assert waiting.payload["reason"] == "rule 1 (step=publish_* -> ask)"
    assert (await orch.snapshot(run_id))["steps"][0]["approved_by"] is None  # draft was not gated
    await orch.approve(run_id, "publish_blog", user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED


def test_a_step_rule_cannot_deny():
    from core import PlanError

    with pytest.raises(PlanError, match=r"approval_rules\[0\] is about steps .* a step rule asks or allows"):
        tool_plan([], rules=[{"step_type": "reasoning", "action": "deny"}])


async def test_a_read_only_call_interrupted_by_a_stopped_driver_runs_again_by_itself(db_url):
    script = [{"tool": "slow_read", "arguments": {"path": "p", "seconds": 30}}]
    first = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        run_id, task = await start(first, tool_plan(script))
        await wait_call(first, run_id, "clean.1.1.0", "running")
        task.cancel()  # the driver stops while the tool runs
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await first.close()
    INVOKED.clear()
    second = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        resumed = asyncio.create_task(second.drive(run_id))
        await wait_event(second, run_id, "tool_call_interrupted")
        approved = await wait_event(second, run_id, "tool_call_approved")
        assert approved.payload["user"] == "loopdeck" and "safe to repeat" in approved.payload["reason"]
        await wait_call(second, run_id, "clean.1.1.0", "running")
        await invoked()
        assert INVOKED == [{"tool": "slow_read", "path": "p"}]  # run again, without asking anyone
        resumed.cancel()
        await asyncio.gather(resumed, return_exceptions=True)
        call = (await calls_by_id(second, run_id))["clean.1.1.0"]
    finally:
        await second.close()
    assert call.decided_by == "loopdeck"


async def test_an_input_edited_at_a_gate_must_match_the_steps_input_schema(orch):
    from core import BadInput, PlanError

    schema = {"type": "object", "properties": {"to": {"enum": ["staging", "production"]}}, "required": ["to"]}
    steps = [
        {"key": "publish", "agent": "bot", "approval": "required", "input": {"to": "staging"}, "input_schema": schema}
    ]
    run_id, task = await start(orch, tool_plan([], steps=steps))
    await wait_event(orch, run_id, "step_waiting", "publish")
    with pytest.raises(BadInput, match=r'the edited input of step "publish" is not valid: to: \'prod\' is not one of'):
        await orch.approve(run_id, "publish", input={"to": "prod"})
    await orch.approve(run_id, "publish", input={"to": "production"}, user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    with pytest.raises(PlanError, match="not a valid JSON Schema"):
        tool_plan([], steps=[{"key": "s", "agent": "bot", "input_schema": {"type": "nonsense"}}])


async def test_a_scripted_sim_spends_its_tokens_on_every_model_turn_within_the_budget(orch):
    script = [{"tool": "read_file", "arguments": {"path": "a"}}, {"tool": "read_file", "arguments": {"path": "b"}}]
    plan = tool_plan(script, token_budget=40, on_budget_exhausted="fail")
    plan.agents["bot"].tokens = (10, 5)  # 15 a turn; three turns: two that call, one that answers
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 10) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    assert [c["arguments"]["path"] for c in snap["tool_calls"]] == ["a", "b"]
    assert snap["run"]["tokens"]["total"] == 30 and "model turn 3" in snap["run"]["reason"]

    plan.policy.token_budget = 45
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert snap["steps"][0]["tokens"]["total"] == 45
    chats = [s for s in snap["spans"] if s["kind"] == "chat"]
    assert [(s["turn"], s["tokens"]["total"], s["attributes"]["gen_ai.provider.name"]) for s in chats] == [
        (1, 15, "sim"),
        (2, 15, "sim"),
        (3, 15, "sim"),
    ]
