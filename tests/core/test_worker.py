"""A worker in this process: what it does with a run it cannot drive."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text

from core import RunStatus
from core.worker import RETRY_FIRST_S, Worker
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
    await asyncio.sleep(RETRY_FIRST_S * 2.5)  # past its first wait (1 s), within its second (2 s more)
    worker.stop()
    await working
    assert (await orch.run(good)).status == RunStatus.SUCCEEDED
    failures = [n for n in notes if n.startswith(f"run {refused} stopped here")]
    assert len(failures) == 2 and worker.stats.claimed == 3  # not hundreds of claims, each one a note
    assert "tried again by this worker in 1 s: " in failures[0] and "in 2 s: " in failures[1]
    assert "stored plan, which this loopdeck refuses" in failures[0]
