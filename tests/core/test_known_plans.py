"""A run created and driven in one process is driven with the plan validated as it was created; any other
plan (another process's, one changed in place, one stored over) is decoded and validated again."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from core import Orchestrator, PlanError, RunStatus
from core.engine import controller
from core.model.plan import Plan
from tests.conftest import plan

A_THEN_B = [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The runs whose stored plan a driver decoded and validated."""
    seen: list[str] = []
    real = controller._stored_plan

    def counted(run_id: str, stored: str) -> Plan:
        seen.append(run_id)
        return real(run_id, stored)

    monkeypatch.setattr(controller, "_stored_plan", counted)
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
    with pytest.raises(PlanError, match="stored plan, which this loopdeck refuses") as info:
        await orch.drive(run_id)
    assert any("cycle" in str(issue) for issue in info.value.issues)


async def test_a_plan_changed_in_place_after_its_run_was_created_is_not_what_the_run_drives(orch, validations):
    p = plan(A_THEN_B)
    run_id = await orch.create_run(p)
    p.steps[0].depends_on = ["b"]  # the caller's object, no longer what was stored
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    assert validations == [run_id]
    assert [s["status"] for s in (await orch.snapshot(run_id))["steps"]] == ["succeeded", "succeeded"]


async def test_a_plan_not_validated_here_is_validated_before_it_is_driven(orch, validations):
    data = plan(A_THEN_B).model_dump(mode="json")
    run_id = await orch.create_run(Plan.model_validate(data))  # pydantic's checks only, not validate_plan's
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    assert validations == [run_id]


async def test_a_plan_stored_over_since_its_run_was_created_is_the_one_validated(orch):
    run_id = await orch.create_run(plan(A_THEN_B))
    stored = plan(A_THEN_B).model_dump(mode="json")
    stored["steps"][0]["depends_on"] = ["b"]
    async with orch.store.engine.begin() as conn:  # as a broken or older writer might leave it
        await conn.execute(
            text("UPDATE run_plans SET plan_json = :plan WHERE run_id = :id"),
            {"plan": json.dumps(stored), "id": run_id},
        )
    with pytest.raises(PlanError, match="stored plan, which this loopdeck refuses"):
        await orch.drive(run_id)
