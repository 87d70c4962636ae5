"""Token budgets with reservations: concurrency can never push a run past its budget."""

from __future__ import annotations

import asyncio

from core import RunStatus
from core.engine.budget import TokenBudget
from tests.conftest import plan
from tests.core.helpers import wait_event


def test_reservations_count_against_the_budget():
    b = TokenBudget(100, used=40)
    assert b.fits(60) and not b.fits(61)
    b.reserve(50)
    assert not b.fits(11) and b.fits(10)
    b.settle(50, 30)  # spent less than reserved: the rest comes back
    assert b.used == 70 and b.reserved == 0 and b.fits(30)
    assert TokenBudget(None).fits(10**9)


async def test_many_parallel_steps_never_overshoot_a_small_budget(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": [5, 30], "tokens": [30, 20]}}  # 50 tokens an attempt
    run_id = await orch.create_run(
        plan([{"key": f"s{i}"} for i in range(40)], agents=agents, max_concurrency=40, token_budget=420)
    )
    assert await orch.drive(run_id) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["tokens"]["total"] == 400  # 8 attempts fit; checking usage alone would have let all 40 start
    assert snap["run"]["tokens"]["total"] <= 420
    assert snap["run"]["reason"] == 'token budget 420 exhausted: 400 tokens used, step "s8" may need 50 more'
    assert sum(1 for s in snap["steps"] if s["status"] == "succeeded") == 8


async def test_pause_waits_for_the_operator_to_raise_the_budget_then_continues(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [60, 40]}}
    p = plan(
        [{"key": f"s{i}"} for i in range(3)],
        agents=agents,
        max_concurrency=1,
        token_budget=150,
        on_budget_exhausted="pause",
    )
    run_id = await orch.create_run(p)
    task = asyncio.create_task(orch.drive(run_id))
    await wait_event(orch, run_id, "budget_exhausted")
    snap = await orch.snapshot(run_id)
    assert snap["run"]["status"] == "waiting_user"
    assert snap["run"]["reason"].startswith("token budget 150 exhausted: 100 tokens used")
    await orch.set_budget(run_id, 300, user="ops")
    assert await asyncio.wait_for(task, 5) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["token_budget"] == 300 and snap["run"]["tokens"]["total"] == 300
    change = next(e for e in snap["events"] if e["type"] == "budget_changed")
    assert change["payload"] == {"from": 150, "to": 300, "unit": "tokens", "user": "ops"}


async def test_default_budget_comes_from_the_environment(orch, monkeypatch):
    monkeypatch.setenv("LOOPDECK_TOKEN_BUDGET", "1_000")
    run_id = await orch.create_run(plan([{"key": "a"}]))
    assert (await orch.snapshot(run_id))["run"]["token_budget"] == 1000
