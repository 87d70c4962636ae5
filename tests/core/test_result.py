"""Every run that ends has a result (answer, summary, evidence); an operator can finish a run now."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from core import BadInput, Delivery, RunStatus, TransitionError
from core.model.result import RunResult, conclude
from tests.conftest import events_of, plan
from tests.core.helpers import start, wait_event

ON_POSTGRES = False


def sim(output: object, **extra: object) -> dict[str, object]:
    return {"kind": "sim", "latency_ms": 0, "output": output, **extra}


async def ended(orch, data) -> tuple[str, dict]:
    run_id, task = await start(orch, data)
    await asyncio.wait_for(task, 10)
    return run_id, (await orch.snapshot(run_id, events=False))["run"]


async def test_the_answer_of_one_final_step_is_its_output(orch):
    run_id, run = await ended(
        orch,
        plan(
            [{"key": "draft", "agent": "a"}, {"key": "final", "agent": "b", "depends_on": ["draft"]}],
            {"a": sim("first"), "b": sim({"title": "T", "body": "the text"})},
        ),
    )
    assert run["result"]["answer"] == {"title": "T", "body": "the text"}
    assert run["result"]["summary"] == "2 of 2 steps succeeded"
    assert run["result"]["evidence"] == {
        "failed": [],
        "skipped": [],
        "rejected": [],
        "never_ran": [],
        "verifications": {},
    }
    result = await orch.result(run_id)
    assert isinstance(result, RunResult) and result.to_json() == run["result"]


async def test_several_final_steps_answer_as_a_mapping_by_key_and_verifications_are_not_the_answer(orch):
    _, run = await ended(
        orch,
        plan(
            [
                {"key": "root", "agent": "a"},
                {"key": "left", "agent": "b", "depends_on": ["root"]},
                {"key": "right", "agent": "c", "depends_on": ["root"]},
                {"key": "check", "agent": "a", "type": "verification", "depends_on": ["left", "right"]},
            ],
            {"a": sim(True), "b": sim("L"), "c": sim("R")},
        ),
    )
    assert run["result"]["answer"] == {"left": "L", "right": "R"}
    assert run["result"]["summary"] == '4 of 4 steps succeeded; verification "check" passed'
    assert run["result"]["evidence"]["verifications"] == {"check": "passed"}


async def test_a_failed_run_says_why_first_and_names_what_failed_and_never_ran(orch):
    _, run = await ended(
        orch,
        plan(
            [
                {"key": "bad", "agent": "broken", "max_attempts": 1},
                {"key": "after_bad", "agent": "ok", "depends_on": ["bad"]},
                {"key": "fine", "agent": "ok"},
                {"key": "verify", "agent": "ok", "type": "verification", "depends_on": ["after_bad"]},
            ],
            {"broken": sim("x", fail_times=5), "ok": sim("fine output")},
        ),
    )
    assert run["status"] == "failed"
    result = run["result"]
    assert result["summary"].startswith('step "bad" failed: simulated failure')
    assert '1 of 4 steps succeeded; verification "verify" not run (skipped)' in result["summary"]
    assert result["answer"] == {"fine": "fine output"}  # the final step that succeeded; after_bad was skipped
    assert result["evidence"]["failed"] == ["bad"]
    assert result["evidence"]["skipped"] == ["after_bad", "verify"]
    assert result["evidence"]["never_ran"] == ["after_bad", "verify"]
    assert result["evidence"]["verifications"] == {"verify": "not run (skipped)"}


async def test_no_final_step_succeeded_means_no_answer(orch):
    _, run = await ended(orch, plan([{"key": "only", "max_attempts": 1}], {"sim": sim("x", fail_times=3)}))
    assert run["result"]["answer"] is None
    assert run["result"]["evidence"]["failed"] == ["only"]


async def test_the_end_event_carries_the_summary(orch):
    run_id, run = await ended(orch, plan([{"key": "a"}]))
    end = [e for e in await events_of(orch, run_id) if e.type == "run_ended"][-1]
    assert end.payload["summary"] == run["result"]["summary"] == "1 of 1 step succeeded"


async def test_finish_a_driven_run_cancels_running_attempts_and_skips_the_rest(orch):
    run_id, task = await start(
        orch,
        plan(
            [
                {"key": "quick", "agent": "fast"},
                {"key": "slow", "agent": "slow"},
                {"key": "later", "agent": "fast", "depends_on": ["slow"]},
            ],
            {"fast": sim("q"), "slow": sim("s", latency_ms=30_000)},
        ),
    )
    await wait_event(orch, run_id, "step_succeeded", "quick")
    await wait_event(orch, run_id, "step_started", "slow")

    delivery = await orch.finish(run_id, answer={"verdict": "good enough"}, user="ana", reason="we have it")

    assert delivery == Delivery.LIVE
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    statuses = {s["key"]: s["status"] for s in snap["steps"]}
    assert statuses == {"quick": "succeeded", "slow": "skipped", "later": "skipped"}
    assert [s["status"] for s in snap["spans"] if s["step"] == "slow"] == ["canceled"]
    result = snap["run"]["result"]
    assert result["answer"] == {"verdict": "good enough"}
    assert result["finished_by"] == "ana" and result["finish_reason"] == "we have it"
    assert result["summary"].startswith("finished by ana: we have it; 1 of 3 steps succeeded")
    finished = [e for e in snap["events"] if e["type"] == "run_finished"]
    assert finished[0]["payload"] == {"user": "ana", "reason": "we have it", "status": "succeeded", "answered": True}


async def test_finish_a_paused_run_failed_keeps_the_answer_of_its_final_steps(orch):
    run_id, task = await start(
        orch,
        plan(
            [{"key": f"s{i}"} for i in range(4)],
            {"sim": sim("part", tokens=[10, 10])},
            token_budget=40,
            on_budget_exhausted="pause",
            max_concurrency=1,
        ),
    )
    await wait_event(orch, run_id, "budget_exhausted")

    assert await orch.finish(run_id, status="failed", user="ana") == Delivery.LIVE
    assert await asyncio.wait_for(task, 5) == RunStatus.FAILED
    result = await orch.result(run_id)
    assert result is not None and result.finished_by == "ana"
    assert result.answer == {"s0": "part", "s1": "part"}  # no answer given: what the final steps produced
    assert result.evidence["skipped"] == ["s2", "s3"]


async def test_finish_a_run_nobody_drives_in_the_store(orch):
    run_id = await orch.create_run(plan([{"key": "a"}, {"key": "b", "depends_on": ["a"]}]))

    assert await orch.finish(run_id, answer="by hand", user="ana") == Delivery.OFFLINE

    snap = await orch.snapshot(run_id)
    assert snap["run"]["status"] == "succeeded"
    assert {s["status"] for s in snap["steps"]} == {"skipped"}
    assert snap["run"]["result"]["answer"] == "by hand"
    assert snap["run"]["result"]["evidence"]["never_ran"] == ["a", "b"]


async def test_finish_is_refused_on_an_ended_run_and_with_a_status_it_cannot_end_with(orch):
    run_id, _ = await ended(orch, plan([{"key": "a"}]))
    with pytest.raises(TransitionError, match=f"run {run_id} is succeeded; an ended run can no longer be finished"):
        await orch.finish(run_id, answer="late", user="ana")
    other = await orch.create_run(plan([{"key": "a"}]))
    with pytest.raises(BadInput, match="succeeded or failed, not 'canceled'"):
        await orch.finish(other, status="canceled", user="ana")
    assert (await orch.run(other)).status == RunStatus.PLANNING


async def test_a_run_that_ended_before_results_were_recorded_gets_one_worked_out(orch):
    run_id, run = await ended(orch, plan([{"key": "a"}, {"key": "b", "depends_on": ["a"]}], {"sim": sim("B")}))
    async with orch.store.engine.begin() as conn:  # as an older loopdeck left it
        await conn.execute(text("UPDATE runs SET result_json = NULL WHERE id = :id"), {"id": run_id})
    assert (await orch.run(run_id)).result is None
    assert (await orch.snapshot(run_id))["run"]["result"] == run["result"]


def test_conclude_on_its_own():
    class Step:
        def __init__(self, key: str, idx: int, status: str, output: object = None, attempts: int = 1) -> None:
            self.key, self.idx, self.status, self.output, self.attempts = key, idx, status, output, attempts

    steps = [Step("a", 0, "succeeded", "A"), Step("b", 1, "rejected", attempts=0), Step("v", 2, "failed")]
    result = conclude(steps, {"b": ["a"], "v": ["b"]}, {"v"}, "rejected at b")
    assert result.answer is None  # the one final step (b; v is a verification) did not succeed
    assert result.summary == 'rejected at b; 1 of 3 steps succeeded; verification "v" failed'
    assert result.evidence["rejected"] == ["b"] and result.evidence["never_ran"] == ["b"]
    assert RunResult.from_json(result.to_json()) == result
