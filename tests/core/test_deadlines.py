"""Approval deadlines: a gate nobody answers in time is rejected, approved, or fails the run, by "timeout"."""

from __future__ import annotations

import asyncio
import time

from core import Orchestrator, RunStatus, validate_plan
from tests.core.helpers import start, wait_event
from tests.fixtures.tools import INVOKED, SKILLS


def gated(**policy) -> object:
    return validate_plan(
        {
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "policy": policy,
            "steps": [{"key": "draft"}, {"key": "publish", "depends_on": ["draft"], "approval": "required"}],
        }
    )


async def test_a_gate_nobody_answers_is_rejected_at_its_deadline_by_timeout(orch):
    run_id, task = await start(orch, gated(approval_timeout_s=0.3))
    waiting = await wait_event(orch, run_id, "step_waiting", "publish")
    snap = await orch.snapshot(run_id)
    publish = next(s for s in snap["steps"] if s["key"] == "publish")
    assert publish["deadline"] is not None and waiting.payload["deadline"] == publish["deadline"]
    assert await asyncio.wait_for(task, 10) == RunStatus.REJECTED  # its last step rejected
    snap = await orch.snapshot(run_id)
    publish = next(s for s in snap["steps"] if s["key"] == "publish")
    assert publish["status"] == "rejected" and publish["deadline"] is None
    timed_out = next(e for e in snap["events"] if e["type"] == "approval_timed_out")
    assert timed_out["payload"]["action"] == "reject" and timed_out["payload"]["gate"] == "step"
    rejected = next(e for e in snap["events"] if e["type"] == "step_rejected")
    assert rejected["payload"]["user"] == "timeout" and "timed out after 0.3s" in rejected["payload"]["reason"]


async def test_the_steps_own_deadline_and_action_win_over_the_policys(orch):
    plan = gated(approval_timeout_s=600, on_approval_timeout="fail")
    plan.steps[1].approval_timeout_s, plan.steps[1].on_approval_timeout = 0.2, "approve"
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    publish = next(s for s in (await orch.snapshot(run_id))["steps"] if s["key"] == "publish")
    assert publish["status"] == "succeeded" and publish["approved_by"] == "timeout"


async def test_fail_ends_the_run_and_a_deadline_that_passed_while_nobody_drove_applies_at_resume(db_url):
    first = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        run_id, task = await start(first, gated(approval_timeout_s=0.5, on_approval_timeout="fail"))
        await wait_event(first, run_id, "step_waiting", "publish")
        task.cancel()  # the driver goes away while the gate waits
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await first.close()
    time.sleep(0.6)  # the deadline passes while nobody drives the run
    second = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        assert await asyncio.wait_for(second.drive(run_id), 10) == RunStatus.FAILED
        run = (await second.snapshot(run_id))["run"]
        assert run["reason"] == "step publish: approval timed out after 0.5s"
    finally:
        await second.close()


async def test_a_tool_call_that_waits_past_its_rules_deadline_is_refused_and_the_model_told(orch):
    INVOKED.clear()
    bot = {
        "kind": "sim",
        "latency_ms": 0,
        "tools": ["delete_file"],
        "tool_calls": [{"tool": "delete_file", "arguments": {"path": "b"}}],
    }
    plan = validate_plan(
        {
            "skills": SKILLS,
            "agents": {"bot": bot},
            "approval_rules": [{"tool": "delete_*", "action": "ask", "approval_timeout_s": 0.2}],
            "steps": [{"key": "tidy", "agent": "bot"}],
        }
    )
    run_id, task = await start(orch, plan)
    waiting = await wait_event(orch, run_id, "tool_call_waiting")
    assert waiting.payload["deadline"] is not None
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    (call,) = snap["tool_calls"]
    assert call["status"] == "rejected" and call["decided_by"] == "timeout" and call["deadline"] is None
    assert "approval timed out after 0.2s" in snap["steps"][0]["output"]  # what the model was told
    assert INVOKED == []


async def test_a_plan_nobody_reviews_in_time_is_approved_or_rejected_by_timeout(orch):
    from tests.conftest import plan

    steps = [{"key": "a"}]
    run_id = await orch.create_run(
        plan(steps, plan_approval="required", approval_timeout_s=0.3, on_approval_timeout="approve")
    )
    assert (await orch.snapshot(run_id))["run"]["deadline"] is not None
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    types = [e["type"] for e in snap["events"]]
    assert types.index("approval_timed_out") < types.index("run_plan_approved") < types.index("run_started")
    approved = next(e for e in snap["events"] if e["type"] == "run_plan_approved")
    assert approved["payload"]["user"] == "timeout" and snap["run"]["deadline"] is None

    run_id = await orch.create_run(plan(steps, plan_approval="required", approval_timeout_s=0.2))
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.REJECTED  # the default: reject
    assert "the plan's review timed out after 0.2s" in (await orch.snapshot(run_id))["run"]["reason"]
