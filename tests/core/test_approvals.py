"""Approval gates: wait before running, approve (with edited input) or reject, once."""

from __future__ import annotations

import asyncio
import sys

import pytest

from core import Orchestrator, RunStatus, TransitionError
from core.cluster.lease import Identity
from tests.conftest import events_of, plan, types_for
from tests.core.helpers import start, wait_event

ON_POSTGRES = True  # every test here runs on SQLite and on PostgreSQL (tests/conftest.py)


async def test_a_gated_step_waits_before_it_runs_then_runs_with_the_edited_input(orch):
    p = plan(
        [
            {"key": "draft"},
            {"key": "publish", "approval": "required", "depends_on": ["draft"], "input": {"to": "staging"}},
        ]
    )
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_waiting", "publish")
    snap = await orch.snapshot(run_id)
    publish = snap["steps"][1]
    assert publish["status"] == "waiting_user" and publish["attempts"] == 0
    await wait_event(orch, run_id, "run_waiting")
    assert (await orch.snapshot(run_id))["run"]["status"] == "waiting_user"

    await orch.approve(run_id, "publish", user="alice", reason="looks right", input={"to": "production"})
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    publish = snap["steps"][1]
    assert publish["approved_by"] == "alice"
    assert publish["input"] == {"to": "production"}
    assert '"to": "production"' in publish["output"]  # the sim agent echoes the input it ran with
    approved = next(e for e in snap["events"] if e["type"] == "step_approved")
    assert approved["payload"] == {
        "user": "alice",
        "reason": "looks right",
        "input_edited": True,
        "input": {"to": "production"},
    }
    assert types_for(await events_of(orch, run_id), "publish")[:3] == ["step_waiting", "step_approved", "step_started"]


async def test_reject_ends_the_step_rejected_skips_dependents_and_the_run_ends_rejected(orch):
    p = plan(
        [
            {"key": "gate", "approval": "required"},
            {"key": "after", "depends_on": ["gate"]},
            {"key": "independent"},
        ]
    )
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_waiting", "gate")
    await orch.reject(run_id, "gate", user="bob", reason="not today")
    assert await asyncio.wait_for(task, 5) == RunStatus.REJECTED
    snap = await orch.snapshot(run_id)
    status = {s["key"]: s["status"] for s in snap["steps"]}
    assert status == {"gate": "rejected", "after": "skipped", "independent": "succeeded"}
    assert snap["steps"][0]["error"] == "rejected by bob: not today"


async def test_a_second_answer_to_the_same_gate_is_a_clear_error(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 300}}
    p = plan([{"key": "gate", "approval": "required"}], agents=agents)
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_waiting", "gate")
    await orch.approve(run_id, "gate", user="alice")
    with pytest.raises(
        TransitionError, match=r'step "gate" is (pending|running); only a waiting_user step can be approved'
    ):
        await orch.approve(run_id, "gate", user="carol")
    with pytest.raises(TransitionError, match="only a waiting_user step can be rejected"):
        await orch.reject(run_id, "gate", user="carol")
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED
    with pytest.raises(TransitionError, match="is succeeded; an ended run can no longer be approved"):
        await orch.approve(run_id, "gate", user="carol")


async def test_while_a_gate_waits_nothing_new_launches_but_running_steps_finish(orch):
    agents = {"fast": {"kind": "sim", "latency_ms": 0}, "slow": {"kind": "sim", "latency_ms": 400}}
    p = plan(
        [
            {"key": "slow", "agent": "slow"},
            {"key": "quick", "agent": "fast"},
            {"key": "gate", "agent": "fast", "approval": "required", "depends_on": ["quick"]},
            {"key": "later", "agent": "fast", "depends_on": ["quick"]},
        ],
        agents=agents,
    )
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_waiting", "gate")
    await wait_event(orch, run_id, "step_succeeded", "slow")  # already running: it finishes and is recorded
    await asyncio.sleep(0.1)
    status = {s["key"]: s["status"] for s in (await orch.snapshot(run_id))["steps"]}
    assert status["later"] == "pending"  # ready, but held back by the waiting gate
    await orch.approve(run_id, "gate", user="alice")
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED


async def test_without_stop_on_approval_other_steps_keep_running(orch):
    p = plan([{"key": "gate", "approval": "required"}, {"key": "other"}], stop_on_approval_required=False)
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_succeeded", "other")
    await orch.approve(run_id, "gate", user="alice")
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED


async def test_an_answer_from_another_process_reaches_the_driver_through_the_store(orch, db_url):
    p = plan([{"key": "gate", "approval": "required"}])
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_waiting", "gate")
    # another process (a different host, so the lease looks alive elsewhere): its answer goes via the inbox
    other = await Orchestrator.open(db_url, user="remote", identity=Identity(host="elsewhere"))
    try:
        await other.approve(run_id, "gate", user="remote-op", input={"edited": True})
        assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED
        with pytest.raises(TransitionError, match="an ended run can no longer be approved"):
            await other.approve(run_id, "gate")
    finally:
        await other.close()
    step = (await orch.snapshot(run_id))["steps"][0]
    assert step["approved_by"] == "remote-op" and step["input"] == {"edited": True}


async def test_an_answer_to_a_run_nobody_drives_is_applied_to_the_store_and_kept(orch, db_url):
    p = plan([{"key": "gate", "approval": "required"}, {"key": "after", "depends_on": ["gate"]}])
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "run_waiting")
    task.cancel()  # the driving process goes away
    await asyncio.gather(task, return_exceptions=True)
    await orch.approve(run_id, "gate", user="alice")
    assert (await orch.snapshot(run_id))["steps"][0]["status"] == "pending"
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    assert (await orch.snapshot(run_id))["steps"][0]["approved_by"] == "alice"


async def test_an_operator_retries_a_failed_step_and_its_skipped_dependents_wait_for_it(orch, tmp_path, monkeypatch):
    (tmp_path / "second_time.py").write_text(
        "seen = []\n"
        "def work(input, context, step):\n"
        "    seen.append(1)\n"
        "    if len(seen) == 1:\n"
        "        raise RuntimeError('first call fails')\n"
        "    return 'ok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "second_time", raising=False)  # a fresh `seen` for each database
    agents = {"py": {"kind": "python", "call": "second_time:work"}, "sim": {"kind": "sim", "latency_ms": 0}}
    p = plan(
        [
            {"key": "flaky", "agent": "py", "max_attempts": 1},
            {"key": "after", "agent": "sim", "depends_on": ["flaky"]},
            {"key": "gate", "agent": "sim", "approval": "required"},
        ],
        agents=agents,
        stop_on_approval_required=False,
    )
    run_id, task = await start(orch, p)
    await wait_event(orch, run_id, "step_skipped", "after")  # flaky failed for good; the gate keeps the run alive
    with pytest.raises(TransitionError, match='step "gate" is waiting_user; only a failed step can be retried'):
        await orch.retry(run_id, "gate", user="ops")
    await orch.retry(run_id, "flaky", user="ops")
    await wait_event(orch, run_id, "step_succeeded", "after")
    await orch.approve(run_id, "gate", user="ops")
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert {s["key"]: (s["status"], s["attempts"]) for s in snap["steps"]} == {
        "flaky": ("succeeded", 2),
        "after": ("succeeded", 1),
        "gate": ("succeeded", 1),
    }
    types = [e["type"] for e in snap["events"] if e["step"] == "after"]
    assert types == ["step_skipped", "step_reopened", "step_started", "step_succeeded"]
