"""Leases: exactly one process drives a run; a dead holder is replaced at once, a live one never."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
from sqlalchemy import update

from core import LeaseHeld, Orchestrator, RunStatus
from core.cluster.lease import Holder, Identity, holder_state, pid_alive
from core.store import Lease, schema
from tests.conftest import plan

ON_POSTGRES = True  # every test here runs on SQLite and on PostgreSQL (tests/conftest.py)


async def _hold(orch: Orchestrator, run_id: str, *, host: str, pid: int, until: float) -> None:
    async with orch.store.engine.begin() as conn:
        await conn.execute(
            update(schema.runs)
            .where(schema.runs.c.id == run_id)
            .values(lock_owner="someone", lock_host=host, lock_pid=pid, locked_until=until)
        )


def test_holder_states():
    me = Identity(owner="me", host="here", pid=1234)
    assert holder_state(None, me, 0, set()) == Holder.FREE
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    assert holder_state(Lease("x", "here", dead_pid.pid, 1e12), me, 0, set()) == Holder.DEAD
    assert holder_state(Lease("x", "far", 1, 10), me, 20, set()) == Holder.EXPIRED
    assert holder_state(Lease("x", "far", 1, 30), me, 20, set()) == Holder.ALIVE_ELSEWHERE
    assert holder_state(Lease("me", "here", 1234, None), me, 0, {"me"}) == Holder.ALIVE_HERE


def test_pid_alive_sees_zombies_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 5
    while pid_alive(child.pid) and time.time() < deadline:
        time.sleep(0.02)
    assert not pid_alive(child.pid)  # exited but not yet reaped: a zombie is not a holder
    child.wait()


async def test_a_live_holder_on_this_machine_is_never_displaced(orch):
    run_id = await orch.create_run(plan([{"key": "a"}]))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        await _hold(orch, run_id, host=orch.identity.host, pid=sleeper.pid, until=time.time() - 100)
        with pytest.raises(LeaseHeld, match=f"being driven by pid {sleeper.pid} on this machine"):
            await orch.drive(run_id)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED  # once it is dead, the run is taken over at once


async def test_a_holder_elsewhere_is_waited_out_until_its_lease_expires(orch):
    run_id = await orch.create_run(plan([{"key": "a"}]))
    await _hold(orch, run_id, host="another-machine", pid=99, until=time.time() + 0.5)
    with pytest.raises(LeaseHeld, match="on another-machine; its lease expires in"):
        await orch.drive(run_id, wait_for_lease=False)
    waits: list[str] = []
    started = time.monotonic()
    assert await orch.drive(run_id, on_wait=waits.append) == RunStatus.SUCCEEDED
    assert time.monotonic() - started >= 0.4
    assert waits and "waiting" in waits[0]


async def test_a_driver_that_loses_its_lease_stops(orch):
    agents = {"slow": {"kind": "sim", "latency_ms": 300}}
    run_id = await orch.create_run(
        plan([{"key": f"s{i}", "agent": "slow"} for i in range(20)], agents=agents, max_concurrency=1)
    )
    orch.lease_ttl_s = 0.3
    task = asyncio.create_task(orch.drive(run_id))
    await asyncio.sleep(0.2)
    await _hold(orch, run_id, host="thief", pid=1, until=time.time() + 60)  # another process took the run
    from core import LeaseLost

    with pytest.raises(LeaseLost, match="lost the lease"):
        await asyncio.wait_for(task, 5)


async def test_a_run_created_to_be_driven_here_is_not_claimed_by_a_worker(orch):
    held = await orch.create_run(plan([{"key": "a"}]), hold=True)
    queued = await orch.create_run(plan([{"key": "a"}]))
    claimed = await orch.store.claim_runs("other-worker", "elsewhere", 4242, 30.0, 10)
    assert claimed == [queued]  # the queued one only
    assert await orch.drive(held) == RunStatus.SUCCEEDED  # and this process drives its own at once
