"""sub_agent steps: a child plan run as a child run of the step's run, its output the step's."""

from __future__ import annotations

import asyncio

import pytest

from core import Orchestrator, PlanError, RunStatus, resolve_plan, validate_plan
from tests.core.helpers import wait_event


def parent_plan(child_steps: list, *, budget: int | None = None, more: dict | None = None, **agent) -> object:
    return validate_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [10, 5], **agent}, **(more or {})},
            "default_agent": "sim",
            "policy": {"token_budget": budget} if budget is not None else {},
            "steps": [
                {"key": "prep"},
                {"key": "research", "type": "sub_agent", "depends_on": ["prep"], "steps": child_steps},
                {"key": "write", "depends_on": ["research"], "input": {"notes": "{{steps.research.output}}"}},
            ],
        }
    )


CHILD = [{"key": "gather"}, {"key": "summarize", "depends_on": ["gather"], "input": {"n": 1}}]


def step(snap: dict, key: str) -> dict:
    return next(s for s in snap["steps"] if s["key"] == key)


async def test_the_child_runs_its_plan_and_its_final_output_is_the_steps(db_url):
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(parent_plan(CHILD))
        assert await orch.drive(run_id) == RunStatus.SUCCEEDED
        snap = await orch.snapshot(run_id)
        (child,) = snap["run"]["children"]
        child_snap = await orch.snapshot(child["id"])
    assert child == {"id": child["id"], "step": "research", "status": "succeeded", "tokens": 30, "cost_usd": 0.0}
    assert child_snap["run"]["parent"] == {"run": run_id, "step": "research"}
    assert child_snap["run"]["goal"] == "research"  # the step's title when the child plan names no goal
    assert step(snap, "research")["output"] == step(child_snap, "summarize")["output"]  # its sink step's output
    assert "summarize: done" in step(snap, "write")["output"]  # its dependents read it
    assert snap["run"]["tokens"]["total"] == 15 + 30 + 15  # the child's tokens count toward the parent's
    assert step(snap, "research")["tokens"]["total"] == 30


async def test_a_failed_child_fails_its_step_with_the_childs_reason(db_url):
    plan = parent_plan([{"key": "gather", "agent": "flaky"}], more={"flaky": {"kind": "sim", "fail_times": 9}})
    plan.policy.backoff.base_s = 0.01  # the child's retries (it inherits the policy) without the wait
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan)
        assert await orch.drive(run_id) == RunStatus.FAILED
        snap = await orch.snapshot(run_id)
    research = step(snap, "research")
    assert research["status"] == "failed" and research["attempts"] == 1  # the child had its own retries
    (child,) = snap["run"]["children"]
    assert research["error"].startswith(f"child run {child['id']} ended failed")
    assert step(snap, "write")["status"] == "skipped"


async def a_running_child(orch: Orchestrator) -> tuple[str, asyncio.Future, str]:
    """A parent driven in the background whose child run is mid-step: (parent, its drive, child)."""
    plan = parent_plan([{"key": "slow", "agent": "slow"}], more={"slow": {"kind": "sim", "latency_ms": 30000}})
    run_id = await orch.create_run(plan)
    driving = asyncio.ensure_future(orch.drive(run_id))
    await wait_event(orch, run_id, "step_started", "research")
    child = await until_child(orch, run_id)
    await wait_event(orch, child, "step_started", "slow")
    return run_id, driving, child


async def test_canceling_the_parent_cancels_the_child_it_is_running(db_url):
    async with await Orchestrator.open(db_url, poll_s=0.05) as orch:
        run_id, driving, child = await a_running_child(orch)
        await orch.cancel(run_id, user="ann", reason="enough")
        assert await asyncio.wait_for(driving, 15) == RunStatus.CANCELED
        assert (await orch.run(child, plan=False)).status == RunStatus.CANCELED


async def test_finishing_the_parent_ends_its_running_child_through_the_childs_driver(db_url):
    """An ended run cancels its child-run steps' children (only a driver that stops leaves them for the resume),
    and its driver returns only once they have ended: ``finish`` cancels no children by itself."""
    async with await Orchestrator.open(db_url, poll_s=0.05) as orch:
        run_id, driving, child = await a_running_child(orch)
        await orch.finish(run_id, answer="enough", user="ann")
        assert await asyncio.wait_for(driving, 15) == RunStatus.SUCCEEDED
        record = await orch.run(child, plan=False)
        ended = [e.payload for e in await orch.events_since(child) if e.type == "run_ended"]
    assert record.status == RunStatus.CANCELED
    assert [e["status"] for e in ended] == ["canceled"]  # ended once, by its driver


async def test_a_graceful_shutdown_lets_a_running_child_run_finish_as_a_running_step_would(db_url):
    """``drain`` (a worker's SIGTERM) hands the parent back once its running steps end; its child run is one of
    them, so it runs on and its step succeeds (drained on its own, the child ended "running" and failed it)."""
    plan = parent_plan([{"key": "slow", "agent": "slow"}], more={"slow": {"kind": "sim", "latency_ms": 400}})
    async with await Orchestrator.open(db_url, poll_s=0.05) as orch:
        run_id = await orch.create_run(plan)
        driving = asyncio.ensure_future(orch.drive(run_id))
        child = await until_child(orch, run_id)
        await wait_event(orch, child, "step_started", "slow")
        orch.drain()
        assert await asyncio.wait_for(driving, 15) == RunStatus.RUNNING  # handed back, not ended
        snap = await orch.snapshot(run_id)
        assert (await orch.run(child, plan=False)).status == RunStatus.SUCCEEDED
    assert step(snap, "research")["status"] == "succeeded"
    assert step(snap, "write")["status"] == "pending"  # launched by the next driver


async def test_a_timed_out_child_run_step_ends_its_child_before_the_retry_makes_another(db_url):
    """The attempt ends only once its child run has ended canceled, so the retry finds no live child to go on
    with (it would have taken the one being canceled) and starts a new one."""
    plan = validate_plan(
        {
            "agents": {"slow": {"kind": "sim", "latency_ms": 30000}},
            "policy": {"backoff": {"base_s": 0, "jitter": False}},  # the retry at once
            "steps": [
                {
                    "key": "research",
                    "type": "sub_agent",
                    "timeout_s": 0.5,
                    "max_attempts": 2,
                    "steps": [{"key": "slow", "agent": "slow"}],
                }
            ],
        }
    )
    async with await Orchestrator.open(db_url, poll_s=0.05) as orch:
        run_id = await orch.create_run(plan)
        assert await asyncio.wait_for(orch.drive(run_id), 30) == RunStatus.FAILED
        children = await orch.children(run_id)
        snap = await orch.snapshot(run_id)
    assert step(snap, "research")["attempts"] == 2
    assert [c["status"] for c in children] == ["canceled", "canceled"]  # one per attempt, each ended


async def test_canceling_a_parent_nobody_drives_cancels_its_unfinished_children(db_url):
    async with await Orchestrator.open(db_url) as orch:
        parent = await orch.create_run(parent_plan(CHILD))
        child = await orch.create_run(validate_plan({"steps": [{"key": "a"}]}), parent=(parent, "research"))
        await orch.cancel(parent, user="ann")
        assert (await orch.run(child, plan=False)).status == RunStatus.CANCELED


async def test_the_child_spends_from_what_the_parent_has_left(db_url):
    """Parent budget 100; prep spends 15; the child gets 85 and its three 30-token steps do not all fit."""
    three = [{"key": "a"}, {"key": "b", "depends_on": ["a"]}, {"key": "c", "depends_on": ["b"]}]
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(parent_plan(three, budget=100, tokens=[10, 5]))
        assert await orch.drive(run_id) == RunStatus.SUCCEEDED
        snap = await orch.snapshot(run_id)
    (child,) = snap["run"]["children"]
    assert snap["run"]["tokens"]["total"] == 15 + 45 + 15 <= 100
    async with await Orchestrator.open(db_url) as orch:
        assert (await orch.run(child["id"], plan=False)).token_budget == 85  # 100 - the 15 prep spent
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(parent_plan(three, budget=70, tokens=[20, 10]))
        assert await orch.drive(run_id) == RunStatus.FAILED
        snap = await orch.snapshot(run_id)
    (child,) = snap["run"]["children"]
    assert "token budget 40 exhausted" in step(snap, "research")["error"]  # 70 - prep's 30
    assert snap["run"]["tokens"]["total"] <= 70


def test_a_child_plans_problems_are_reported_at_their_place():
    with pytest.raises(PlanError) as caught:
        parent_plan([{"key": "gather", "agent": "nobody"}, {"key": "g2", "depends_on": ["nope"]}])
    located = {issue.location for issue in caught.value.issues}
    assert {"steps[1].plan.steps[0].agent", "steps[1].plan.steps[1].depends_on[0]"} <= located


def test_a_child_plan_file_is_read_relative_to_its_parent_and_kept_in_the_stored_plan(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("goal: dig\nsteps:\n  - key: dig\n")
    parent = tmp_path / "parent.yaml"
    parent.write_text("steps:\n  - key: research\n    type: sub_agent\n    plan: sub/child.yaml\n")
    from core import read_plan_data

    plan, _ = resolve_plan(read_plan_data(parent), str(parent))
    assert plan.steps[0].plan == {"goal": "dig", "steps": [{"key": "dig"}]}
    with pytest.raises(PlanError, match="is read when the plan is resolved"):
        validate_plan({"steps": [{"key": "r", "type": "sub_agent", "plan": "child.yaml"}]})


async def until_child(orch: Orchestrator, run_id: str) -> str:
    for _ in range(200):
        children = (await orch.snapshot(run_id, events=False))["run"]["children"]
        if children:
            return children[0]["id"]
        await asyncio.sleep(0.05)
    raise AssertionError("no child run")


def test_an_input_on_a_sub_agent_step_with_a_plan_is_refused_not_dropped():
    with pytest.raises(PlanError, match="hands nothing to its child run"):
        validate_plan({"steps": [{"key": "r", "type": "sub_agent", "input": {"q": 1}, "steps": [{"key": "x"}]}]})
