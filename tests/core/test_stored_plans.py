"""A run's stored plan. A run created and driven in one process is driven with the plan validated as it was
created; any other plan (another process's, one changed in place, one stored over) is decoded and validated
again; a damaged one is refused by the driver with what to do, and read without an error by everything else."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from core import Orchestrator, PlanError, RunStatus
from core.engine import controller
from core.engine.known_plans import KnownPlans
from core.model.plan import Plan, child_plan_data, validate_plan
from tests.conftest import plan

A_THEN_B = [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The runs whose stored plan a driver decoded and validated."""
    seen: list[str] = []
    real = controller.stored_plan

    def counted(run_id: str, stored: str) -> Plan:
        seen.append(run_id)
        return real(run_id, stored)

    monkeypatch.setattr(controller, "stored_plan", counted)
    return seen


async def test_a_run_created_here_is_driven_with_its_plan_and_another_process_validates_it(orch, db_url, validations):
    here = await orch.create_run(plan(A_THEN_B))
    assert await orch.drive(here) == RunStatus.SUCCEEDED
    assert validations == []
    elsewhere = await orch.create_run(plan(A_THEN_B))
    async with await Orchestrator.open(db_url, user="other", lease_ttl_s=3.0, poll_s=0.05) as other:
        assert await other.drive(elsewhere) == RunStatus.SUCCEEDED
    assert validations == [elsewhere]


async def test_a_plan_changed_in_place_before_its_run_was_created_is_validated_before_it_is_driven(orch):
    p = plan(A_THEN_B)
    p.steps[0].depends_on = ["b"]  # a pydantic model takes it: a cycle no check has seen
    run_id = await orch.create_run(p)
    with pytest.raises(PlanError, match="this loopdeck refuses the run's stored plan") as info:
        await orch.drive(run_id)
    assert any("cycle" in str(issue) for issue in info.value.issues)


async def test_a_plan_changed_in_place_after_its_run_was_created_is_not_what_the_run_drives(orch, validations):
    p = plan(A_THEN_B)
    run_id = await orch.create_run(p)
    p.steps[0].depends_on = ["b"]  # the caller's object, no longer what was stored
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    assert validations == [run_id]
    assert [s["status"] for s in (await orch.snapshot(run_id))["steps"]] == ["succeeded", "succeeded"]


async def test_a_plan_not_vouched_for_is_validated_before_it_is_driven(orch, validations):
    data = plan(A_THEN_B).model_dump(mode="json")
    unchecked = await orch.create_run(Plan.model_validate(data))  # pydantic's checks only, not validate_plan's
    unvouched = await orch.create_run(validate_plan(data, vouch=False))
    for run_id in (unchecked, unvouched):
        assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    assert validations == [unchecked, unvouched]


def test_only_the_plans_of_the_last_few_runs_created_are_kept():
    known, plans = KnownPlans(), [plan(A_THEN_B) for _ in range(KnownPlans.KEPT + 1)]
    for i, p in enumerate(plans):
        known.remember(f"r{i}", p.model_dump_json(), p)
    assert known.recall("r0", plans[0].model_dump_json()) is None
    assert all(known.recall(f"r{i}", p.model_dump_json()) is p for i, p in enumerate(plans) if i)


async def test_a_plan_stored_over_since_its_run_was_created_is_the_one_validated(orch):
    run_id = await orch.create_run(plan(A_THEN_B))
    stored = plan(A_THEN_B).model_dump(mode="json")
    stored["steps"][0]["depends_on"] = ["b"]
    async with orch.store.engine.begin() as conn:  # as a broken or older writer might leave it
        await conn.execute(
            text("UPDATE run_plans SET plan_json = :plan WHERE run_id = :id"),
            {"plan": json.dumps(stored), "id": run_id},
        )
    with pytest.raises(PlanError, match="this loopdeck refuses the run's stored plan"):
        await orch.drive(run_id)


async def test_a_stored_plan_that_is_not_json_is_refused_with_what_to_do(orch):
    run_id = await orch.create_run(plan(A_THEN_B))
    async with orch.store.engine.begin() as conn:  # (a damaged database: nothing loopdeck writes)
        await conn.execute(text("UPDATE run_plans SET plan_json = '' WHERE run_id = :id"), {"id": run_id})
    with pytest.raises(PlanError, match=f"`loopdeck cancel {run_id}` ends the run") as info:
        await orch.drive(run_id)
    assert "not JSON" in str(info.value.issues[0])


def test_a_child_plan_is_the_same_from_the_plan_as_created_and_from_the_plan_read_back():
    """A plan taken back from memory keeps the fields its author set; one read back has all of them set.
    ``child_plan_data`` reads which are set: the child plan must come out the same either way."""
    created = validate_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "policy": {"max_concurrency": 3, "token_budget": 500},
            "approval_rules": [{"tool": "delete_*", "action": "ask"}],
            "steps": [{"key": "sub", "type": "sub_agent", "plan": {"steps": [{"key": "x"}]}}],
        }
    )
    read_back = validate_plan(json.loads(created.model_dump_json()))
    assert created.model_fields_set != read_back.model_fields_set  # (what the test is about)
    spec = created.steps[0]
    child = [validate_plan(child_plan_data(parent, spec)).model_dump_json() for parent in (created, read_back)]
    assert child[0] == child[1]


DAMAGED = [  # stored texts, and what a read shows of each
    ('{"steps": 5}', {"steps": 5}),
    ("[1, 2]", [1, 2]),
    (
        '{"policy": "x", "steps": [5, {"key": 3}, {"key": "a", "depends_on": "b"}, {"key": "b", "depends_on": [7]}]}',
        ...,
    ),
    ("{not json", {}),
]


@pytest.mark.parametrize(
    ("stored", "read"), DAMAGED, ids=["steps-not-a-list", "not-a-mapping", "odd-steps", "not-json"]
)
async def test_a_damaged_stored_plan_is_read_without_an_error_refused_by_a_driver_and_can_be_canceled(
    orch, stored, read
):
    run_id = await orch.create_run(plan(A_THEN_B))
    async with orch.store.engine.begin() as conn:  # (a hand-edited or damaged database)
        stmt = text("UPDATE run_plans SET plan_json = :plan WHERE run_id = :id")
        await conn.execute(stmt, {"plan": stored, "id": run_id})
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["a", "b"]
    assert snap["plan"] == (json.loads(stored) if read is ... else read)
    assert await orch.step_context(run_id, "b") == []  # (no crash: no dependency it can trust)
    for refused in (orch.drive(run_id), orch.approve(run_id, "a", user="tester")):  # (driven, decided here)
        with pytest.raises(PlanError, match=f"`loopdeck cancel {run_id}` ends the run"):
            await refused
    await orch.cancel(run_id, user="tester")
    assert (await orch.run(run_id)).status == RunStatus.CANCELED
