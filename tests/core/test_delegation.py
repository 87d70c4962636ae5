"""The leader loop: an agent delegates through the built-in `delegate` tool and proposes steps through
`propose_steps`; every delegation is a tool call gated by the rules and a replan in the audit trail."""

from __future__ import annotations

import asyncio
import json

from core import RunStatus, validate_plan
from tests.chat_server import ChatServer, completion
from tests.core.helpers import start, wait_event
from tests.core.test_llm_tools import asks

DELEGATE = {"agent": "helper", "task": "Dig up the facts", "input": {"topic": "queues"}}


def leader_plan(*, rules: list | None = None, calls: list | None = None, **policy) -> object:
    return validate_plan(
        {
            "goal": "lead",
            "agents": {
                "leader": {
                    "kind": "sim",
                    "latency_ms": 0,
                    "tools": ["delegate", "propose_steps"],
                    "tool_calls": calls if calls is not None else [{"tool": "delegate", "arguments": DELEGATE}],
                },
                "helper": {"kind": "sim", "latency_ms": 0, "tokens": [8, 4], "output": {"facts": [1, 2]}},
            },
            "approval_rules": rules if rules is not None else [{"tool": "delegate", "action": "allow"}],
            "policy": policy,
            "steps": [{"key": "lead", "agent": "leader"}],
        }
    )


async def test_a_delegation_is_a_sub_agent_step_whose_child_output_answers_the_call(orch):
    run_id, task = await start(orch, leader_plan())
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    steps = {s["key"]: s for s in snap["steps"]}
    delegated = steps["lead.1.1.0.delegate"]
    assert delegated["type"] == "sub_agent" and delegated["title"] == "Dig up the facts"
    assert delegated["output"] == {"facts": [1, 2]}
    (call,) = snap["tool_calls"]
    assert call["tool"] == "delegate" and call["status"] == "succeeded" and call["result"] == {"facts": [1, 2]}
    (child,) = snap["run"]["children"]
    assert child["step"] == "lead.1.1.0.delegate" and child["status"] == "succeeded" and child["tokens"] == 12
    replanned = next(e for e in snap["events"] if e["type"] == "run_replanned")
    assert replanned["payload"]["user"] == "agent leader (step lead)"  # in the audit trail
    child_snap = await orch.snapshot(child["id"])
    assert child_snap["steps"][0]["agent"] == "helper" and child_snap["steps"][0]["input"] == {"topic": "queues"}
    assert snap["run"]["tokens"]["total"] == 12  # the child's tokens are the run's


async def test_by_default_an_operator_approves_each_delegation(orch):
    run_id, task = await start(orch, leader_plan(rules=[]))
    waiting = await wait_event(orch, run_id, "tool_call_waiting")
    assert waiting.payload["arguments"] == DELEGATE  # the operator sees what is handed to whom
    await orch.decide_call(run_id, "lead.1.1.0", user="ann")
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED


async def test_a_run_that_may_not_replan_refuses_the_delegation_and_tells_the_model(orch):
    run_id, task = await start(orch, leader_plan(allow_replan=False))
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED  # the leader is told, and answers anyway
    snap = await orch.snapshot(run_id)
    (call,) = snap["tool_calls"]
    assert call["status"] == "failed" and "allow_replan: false" in call["error"]
    assert [s["key"] for s in snap["steps"]] == ["lead"]


async def test_under_plan_review_the_delegation_waits_for_the_operator(orch):
    run_id, task = await start(orch, leader_plan(plan_approval="required"))
    await orch.approve_plan(run_id, user="ann")  # the run's own plan
    await wait_event(orch, run_id, "run_plan_proposed", "lead")
    await orch.approve_plan(run_id, user="ann")  # the replan that adds the delegated step
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    assert (await orch.snapshot(run_id))["tool_calls"][0]["result"] == {"facts": [1, 2]}


async def test_a_rejected_delegation_answers_the_call_with_the_refusal(orch):
    run_id, task = await start(orch, leader_plan(plan_approval="required"))
    await orch.approve_plan(run_id, user="ann")
    await wait_event(orch, run_id, "run_plan_proposed", "lead")
    await orch.approve_plan(run_id, approve=False, user="ann", reason="do it yourself")
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    (call,) = (await orch.snapshot(run_id))["tool_calls"]
    assert call["status"] == "failed" and "the operator rejected the delegation" in call["error"]


async def test_delegation_without_room_for_another_step_is_refused(orch):
    run_id, task = await start(orch, leader_plan(max_concurrency=1))
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    (call,) = (await orch.snapshot(run_id))["tool_calls"]
    assert "max_concurrency of 2 or more" in call["error"]


async def test_propose_steps_appends_to_the_live_run(orch):
    steps = [{"key": "more", "agent": "helper"}, {"key": "most", "agent": "helper", "depends_on": ["more"]}]
    plan = leader_plan(
        calls=[{"tool": "propose_steps", "arguments": {"steps": steps}}], rules=[{"tool": "*", "action": "allow"}]
    )
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["lead", "more", "most"]
    assert all(s["status"] == "succeeded" for s in snap["steps"])
    assert snap["tool_calls"][0]["result"].startswith("applied")


async def test_an_llm_leader_delegates_through_a_scripted_chat_server(orch, server: ChatServer):
    server.reply(body=asks(("c1", "delegate", DELEGATE), text="I will hand this off."))
    server.reply(body=completion("The helper found 1 and 2."))
    plan = validate_plan(
        {
            "agents": {
                "leader": {"kind": "llm", "base_url": server.url, "model": "m", "timeout_s": 5, "tools": ["delegate"]},
                "helper": {"kind": "sim", "latency_ms": 0, "output": {"facts": [1, 2]}},
            },
            "approval_rules": [{"tool": "delegate", "action": "allow"}],
            "steps": [{"key": "lead", "agent": "leader"}],
        }
    )
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    first, second = (r.json for r in server.requests)
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert offered["delegate"]["parameters"]["required"] == ["agent", "task"]
    answer = second["messages"][-1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "c1"
    assert json.loads(answer["content"]) == {"facts": [1, 2]}  # the child's output came back to the leader
    snap = await orch.snapshot(run_id)
    assert snap["steps"][0]["output"] == "The helper found 1 and 2."


async def test_an_agents_child_plan_may_not_bring_its_own_agents_or_loosen_the_gates(orch):
    """A replan an agent proposes could otherwise hand itself a shell: refused, and the model told why."""
    shell = {
        "key": "escape",
        "type": "sub_agent",
        "steps": [{"key": "x", "agent": "sh", "input": {"argv": ["true"]}}],
        "agents": {"sh": {"kind": "shell"}},
        "policy": {"default_tool_approval": "allow"},
    }
    plan = leader_plan(
        calls=[{"tool": "propose_steps", "arguments": {"steps": [shell]}}], rules=[{"tool": "*", "action": "allow"}]
    )
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 15) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    (call,) = snap["tool_calls"]
    assert call["status"] == "failed"
    assert "may not give its child plan agents of its own" in call["error"]
    assert "policy.default_tool_approval" in call["error"]
    assert [s["key"] for s in snap["steps"]] == ["lead"]  # nothing added


def test_a_child_with_its_own_agents_keeps_its_parents_approval_rules():
    from core.model.plan import child_plan_data

    plan = validate_plan(
        {
            "approval_rules": [{"tool": "*", "action": "ask", "reason": "the parent's"}],
            "steps": [
                {"key": "c", "type": "sub_agent", "steps": [{"key": "x"}], "agents": {"sim": {"kind": "sim"}}},
            ],
        }
    )
    child = validate_plan(child_plan_data(plan, plan.steps[0]))
    assert [r.reason for r in child.approval_rules] == ["the parent's"]
