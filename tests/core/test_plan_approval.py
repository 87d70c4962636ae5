"""Plan approval (plan_approval: required), agent-proposed replans, and the planner's repair loop."""

from __future__ import annotations

import asyncio
import json

import pytest

from core import PlanError, RunStatus, TransitionError, parse_plan_text
from core.errors import AgentError
from core.model.plan import LlmAgent
from core.planner import plan_goal, plan_to_yaml
from tests.chat_server import ChatServer
from tests.conftest import plan
from tests.core.helpers import wait_event

ON_POSTGRES = True  # every test here runs on SQLite and on PostgreSQL (tests/conftest.py)

PROPOSER = {
    "py": {"kind": "python", "call": "tests.fixtures.agents:propose_more"},
    "sim": {"kind": "sim", "latency_ms": 0},
}
EXTRA = [
    {"key": "extra1", "agent": "sim", "depends_on": ["think"]},
    {"key": "extra2", "agent": "sim", "depends_on": ["extra1"]},
]


async def test_a_run_awaits_plan_approval_then_runs_when_approved(orch):
    run_id = await orch.create_run(plan([{"key": "a"}, {"key": "b", "depends_on": ["a"]}], plan_approval="required"))
    assert (await orch.store.get_run(run_id)).status == "awaiting_plan_approval"
    task = asyncio.create_task(orch.drive(run_id))
    await asyncio.sleep(0.3)
    assert not task.done()  # nothing runs before the plan is approved
    assert all(s.status == "pending" for s in await orch.store.get_steps(run_id))
    await orch.approve_plan(run_id, user="ana")  # in this process: queued for the waiting driver
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    types = [e["type"] for e in (await orch.snapshot(run_id))["events"]]
    assert types.index("run_plan_proposed") < types.index("run_plan_approved") < types.index("run_started")


async def test_rejecting_the_plan_ends_the_run_rejected(orch):
    run_id = await orch.create_run(plan([{"key": "a"}], plan_approval="required"))
    task = asyncio.create_task(orch.drive(run_id))
    await asyncio.sleep(0.1)
    await orch.approve_plan(run_id, approve=False, user="ana", reason="too broad")
    assert await asyncio.wait_for(task, 10) == RunStatus.REJECTED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["reason"] == "plan rejected by ana: too broad"
    assert snap["steps"][0]["status"] == "skipped"


async def test_an_edited_plan_is_validated_and_replaces_the_proposed_one(orch):
    run_id = await orch.create_run(plan([{"key": "a"}], plan_approval="required"))
    edited = plan([{"key": "x"}, {"key": "y", "depends_on": ["x"]}], plan_approval="required").model_dump(mode="json")
    with pytest.raises(PlanError):  # offline (no driver): checked before anything is written
        await orch.approve_plan(run_id, plan={**edited, "steps": [{"key": "x", "depends_on": ["nope"]}]})
    await orch.approve_plan(run_id, plan=edited, user="ana")
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    assert [s["key"] for s in (await orch.snapshot(run_id))["steps"]] == ["x", "y"]


async def test_plan_decisions_need_a_run_awaiting_one(orch):
    run_id = await orch.create_run(plan([{"key": "a"}]))
    with pytest.raises(TransitionError, match="only a run awaiting plan approval"):
        await orch.approve_plan(run_id)


async def test_an_agent_proposed_replan_applies_at_once_without_plan_approval(orch):
    run_id = await orch.create_run(plan([{"key": "think", "agent": "py", "input": {"steps": EXTRA}}], PROPOSER))
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["think", "extra1", "extra2"]
    assert all(s["status"] == "succeeded" for s in snap["steps"])
    replanned = next(e for e in snap["events"] if e["type"] == "run_replanned")
    assert replanned["payload"]["user"] == "agent py (step think)"


async def test_an_agent_proposed_replan_waits_for_review_when_plan_approval_is_required(orch):
    p = plan(
        [
            {"key": "think", "agent": "py", "input": {"steps": EXTRA}},
            {"key": "side", "agent": "sim", "depends_on": ["think"]},
        ],
        PROPOSER,
        plan_approval="required",
    )
    run_id = await orch.create_run(p)
    await orch.approve_plan(run_id)  # the initial plan (offline: nobody drives it yet)
    task = asyncio.create_task(orch.drive(run_id))
    await wait_event(orch, run_id, "run_plan_proposed", "think")
    await asyncio.sleep(0.2)
    run = await orch.store.get_run(run_id)
    assert run.status == "awaiting_plan_approval" and run.proposal["by"] == "think"
    assert (await orch.store.get_step(run_id, "side")).status == "pending"  # nothing new launches meanwhile
    await orch.approve_plan(run_id, user="ana")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    keys = [s["key"] for s in (await orch.snapshot(run_id))["steps"]]
    assert keys == ["think", "side", "extra1", "extra2"]


async def test_rejecting_a_proposed_replan_keeps_the_current_plan(orch):
    p = plan(
        [
            {"key": "think", "agent": "py", "input": {"steps": EXTRA}},
            {"key": "side", "agent": "sim", "depends_on": ["think"]},
        ],
        PROPOSER,
        plan_approval="required",
    )
    run_id = await orch.create_run(p)
    await orch.approve_plan(run_id)
    task = asyncio.create_task(orch.drive(run_id))
    await wait_event(orch, run_id, "run_plan_proposed", "think")
    await orch.approve_plan(run_id, approve=False, user="ana", reason="not needed")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["think", "side"]
    assert any(e["type"] == "run_plan_rejected" for e in snap["events"])


async def test_an_invalid_proposed_replan_is_refused_and_recorded(orch):
    bad = [{"key": "extra1", "agent": "sim", "depends_on": ["missing"]}]
    run_id = await orch.create_run(plan([{"key": "think", "agent": "py", "input": {"steps": bad}}], PROPOSER))
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    refused = next(e for e in snap["events"] if e["type"] == "replan_refused")
    assert 'replan.steps[0].depends_on[0]: unknown step "missing"' in refused["payload"]["error"]
    assert [s["key"] for s in snap["steps"]] == ["think"]


# -- the planner -----------------------------------------------------------------------------

BASE = {
    "agents": {"writer": {"kind": "sim", "latency_ms": 0}, "reviewer": {"kind": "sim", "latency_ms": 0}},
    "policy": {"plan_approval": "required", "max_concurrency": 2},
}


def planner(server: ChatServer) -> LlmAgent:
    return LlmAgent(kind="llm", base_url=server.url, model="planner-model")


async def test_the_planner_repairs_an_invalid_plan(server):
    invalid = {
        "goal": "g",
        "steps": [
            {"key": "draft", "agent": "writter"},
            {"key": "review", "agent": "reviewer", "depends_on": ["drafts"]},
        ],
        "agents": {"evil": {"kind": "shell"}},
        "policy": {"plan_approval": "auto"},
    }
    valid = {
        "goal": "g",
        "steps": [
            {"key": "draft", "agent": "writer", "title": "Draft"},
            {"key": "review", "agent": "reviewer", "depends_on": ["draft"]},
        ],
    }
    server.answer(json.dumps(invalid))
    server.answer(json.dumps(valid))
    progress: list[str] = []
    result = await plan_goal("write a post", "planner", planner(server), BASE, on_progress=progress.append)

    assert result.repairs == 1 and len(server.requests) == 2
    first = server.requests[0].json
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"]["title"] == "loopdeck plan"
    assert "- writer (kind sim)" in first["messages"][0]["content"]
    repair = server.requests[1].json["messages"]
    assert repair[-2] == {"role": "assistant", "content": json.dumps(invalid)}
    assert 'steps[0].agent: unknown agent "writter"; did you mean "writer"?' in repair[-1]["content"]
    assert 'steps[1].depends_on[0]: unknown step "drafts"' in repair[-1]["content"]
    # the operator's agents and policy win over what the model wrote
    assert list(result.plan.agents) == ["writer", "reviewer"]
    assert result.plan.policy.plan_approval == "required" and result.plan.policy.max_concurrency == 2
    assert result.prompt_tokens == 22 and result.completion_tokens == 14
    assert any("repair" in line for line in progress)
    # the YAML a person reads and edits loads back as the same plan
    assert parse_plan_text(plan_to_yaml(result.plan)) == result.plan


async def test_the_planner_gives_up_after_its_repairs_with_the_problems(server):
    for _ in range(3):
        server.answer("here is your plan: steps 1, 2, 3")
    with pytest.raises(PlanError) as err:
        await plan_goal("g", "planner", planner(server), BASE, max_repairs=2)
    assert "still invalid after 2 repairs" in str(err.value) and "not JSON" in str(err.value)
    assert len(server.requests) == 3


async def test_the_planner_reports_a_server_that_refuses(server):
    server.reply(401, {"error": {"message": "invalid key"}})
    with pytest.raises(AgentError, match=r'planner agent "planner": .*answered 401.*invalid key'):
        await plan_goal("g", "planner", planner(server), BASE)


async def test_a_proposed_replan_nobody_reviews_in_time_is_answered_by_timeout(orch):
    p = plan(
        [{"key": "think", "agent": "py", "input": {"steps": EXTRA}}],
        PROPOSER,
        plan_approval="required",
        approval_timeout_s=0.3,
        on_approval_timeout="approve",
    )
    run_id = await orch.create_run(p)
    await orch.approve_plan(run_id)  # the initial plan; the agent's replan then waits for review, until 0.3 s
    task = asyncio.create_task(orch.drive(run_id))
    proposed = await wait_event(orch, run_id, "run_plan_proposed", "think")
    assert proposed.payload["deadline"] is not None
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["think", "extra1", "extra2"]
    timed_out = next(e for e in snap["events"] if e["type"] == "approval_timed_out")
    assert timed_out["payload"]["gate"] == "plan" and timed_out["payload"]["action"] == "approve"
    first, replan = (e for e in snap["events"] if e["type"] == "run_plan_approved")
    assert first["payload"]["user"] == "tester" and replan["payload"]["user"] == "timeout"
