"""A worker in this process: what it does with a run it cannot drive."""

from __future__ import annotations

import asyncio
import json
import time

from sqlalchemy import text

from core import RunStatus
from core.worker import SKIPPED_MAX, Worker
from tests.conftest import plan

ON_POSTGRES = True  # on SQLite and on PostgreSQL (tests/conftest.py): the claim's query differs

A_THEN_B = [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]


async def test_a_run_a_worker_cannot_drive_is_left_alone_for_a_while_and_the_others_are_driven(orch):
    refused = await orch.create_run(plan(A_THEN_B))  # (the oldest: the first a claim takes)
    async with orch.store.engine.begin() as conn:  # a plan this loopdeck refuses (a newer one's, or damaged)
        stmt = text("UPDATE run_plans SET plan_json = :plan WHERE run_id = :id")
        await conn.execute(stmt, {"plan": json.dumps({"steps": 5}), "id": refused})
    good = await orch.create_run(plan(A_THEN_B))
    notes: list[str] = []
    worker = Worker(orch, max_runs=1, poll_s=0.02, on_note=notes.append)
    working = asyncio.create_task(worker.run())

    def failures() -> list[str]:
        return [n for n in notes if n.startswith(f"run {refused} stopped here")]

    try:
        async with asyncio.timeout(20):
            while len(failures()) < 2:  # its second failure comes 1 s after the first, no sooner
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await working
    assert (await orch.run(good)).status == RunStatus.SUCCEEDED  # (driven meanwhile, in the one slot)
    first, second = failures()[:2]  # (a third needs 2 s more)
    assert "tried again by this worker in 1 s: " in first and "tried again by this worker in 2 s: " in second
    assert "this loopdeck refuses the run's stored plan" in first
    assert worker.stats.claimed == 3  # the good run and the refused one twice: not hundreds of claims


async def test_a_claim_leaves_out_at_most_the_runs_waiting_longest(orch):
    worker = Worker(orch)
    now = time.monotonic()
    worker._failing = {f"r{i}": (now + 10 + i, 10.0) for i in range(SKIPPED_MAX + 500)}
    worker._failing["over"] = (now - 1, 1.0)  # its wait is over: claimable
    left = worker._left_alone()
    assert len(left) == SKIPPED_MAX and set(left) == {f"r{i}" for i in range(500, SKIPPED_MAX + 500)}
