"""Breakers in the controller: routing to alternatives, waiting for the probe, persistence."""

from __future__ import annotations

import asyncio
from datetime import datetime

from core import Orchestrator, RunStatus
from tests.conftest import events_of, plan
from tests.core.helpers import running_profile, wait_event

DOWN = {"kind": "sim", "latency_ms": 0, "fail_rate": 1.0, "breaker": {"failure_threshold": 2, "cooldown_s": 60}}


def target(agents: dict, name: str) -> str:
    """The breaker target of agent ``name`` (breakers are keyed by what an agent calls, not by its name)."""
    return plan([{"key": "x", "agent": name}], agents=agents).agents[name].breaker_target(name)


async def test_an_open_breaker_routes_steps_to_the_first_healthy_alternative(orch):
    agents = {
        "primary": {**DOWN, "alternatives": ["backup", "spare"]},
        "backup": {**DOWN},
        "spare": {"kind": "sim", "latency_ms": 0},
    }
    agents["backup"]["breaker"] = {"failure_threshold": 1, "cooldown_s": 60}
    # one slot, plan order: c opens backup's breaker, a and b open primary's, then the s-steps are routed
    steps = [
        {"key": "c", "agent": "backup", "max_attempts": 1},
        {"key": "a", "agent": "primary", "max_attempts": 1},
        {"key": "b", "agent": "primary", "max_attempts": 1},
    ]
    steps += [{"key": f"s{i}", "agent": "primary"} for i in range(3)]
    run_id = await orch.create_run(plan(steps, agents=agents, max_concurrency=1))
    await orch.drive(run_id)
    snap = await orch.snapshot(run_id)
    agent_of = {s["key"]: s["agent"] for s in snap["steps"]}
    events = await events_of(orch, run_id)
    opened = [e.payload for e in events if e.type == "breaker_changed" and e.payload["to"] == "open"]
    assert [(o["agent"], o["reason"]) for o in opened] == [
        ("backup", "1 consecutive failures"),
        ("primary", "2 consecutive failures"),
    ]
    routed = [e.payload for e in events if e.type == "step_routed"]
    assert (
        routed
        == [{"from": "primary", "to": "spare", "reason": 'breaker of "primary" is open (2 consecutive failures)'}] * 3
    )
    assert all(agent_of[f"s{i}"] == "spare" for i in range(3))  # the step records its new agent
    assert all(s["status"] == "succeeded" for s in snap["steps"] if s["key"].startswith("s"))


async def test_with_no_healthy_alternative_a_step_waits_for_the_probe_without_spending_attempts(
    db_url, tmp_path, monkeypatch
):
    (tmp_path / "once_down.py").write_text(
        "calls = []\n"
        "def work(input, context, step):\n"
        "    calls.append(step['key'])\n"
        "    if len(calls) == 1:\n"
        "        raise RuntimeError('target is down')\n"
        "    return 'ok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    clock_now = [1000.0]
    from core.engine.breaker import BreakerBoard

    orch = await Orchestrator.open(db_url, lease_ttl_s=5, poll_s=0.05)
    orch.breakers = BreakerBoard(clock=lambda: clock_now[0])
    try:
        agents = {
            "flaky": {"kind": "python", "call": "once_down:work", "breaker": {"failure_threshold": 1, "cooldown_s": 30}}
        }
        steps = [{"key": "first", "max_attempts": 1}] + [{"key": f"w{i}"} for i in range(3)]
        run_id = await orch.create_run(plan(steps, agents=agents, max_concurrency=1))
        task = asyncio.create_task(orch.drive(run_id))
        await asyncio.sleep(0.3)
        snap = await orch.snapshot(run_id)
        assert snap["steps"][0]["status"] == "failed"
        assert [s["attempts"] for s in snap["steps"][1:]] == [0, 0, 0]  # waiting, not burning attempts
        assert not task.done()
        clock_now[0] += 30  # the cooldown passes: exactly one probe goes first
        assert await asyncio.wait_for(task, 5) == RunStatus.FAILED
        events = await events_of(orch, run_id)
        starts = [e for e in events if e.type == "step_started" and e.step_key.startswith("w")]
        assert starts[0].payload.get("probe") is True and not any(e.payload.get("probe") for e in starts[1:])
        closed = next(e for e in events if e.type == "breaker_changed" and e.payload["to"] == "closed")
        assert closed.id > starts[0].id and all(e.id > closed.id for e in starts[1:])  # others waited for the probe
        assert [s["status"] for s in (await orch.snapshot(run_id))["steps"][1:]] == ["succeeded"] * 3
    finally:
        await orch.close()


async def test_breaker_state_survives_a_restart(db_url):
    agents = {"down": {**DOWN, "breaker": {"failure_threshold": 1, "cooldown_s": 3600}}}
    async with await Orchestrator.open(db_url) as first:
        run_id = await first.create_run(plan([{"key": "a", "max_attempts": 1}], agents=agents))
        await first.drive(run_id)
    async with await Orchestrator.open(db_url, poll_s=0.05) as second:  # a new process: state comes from the store
        run_id = await second.create_run(plan([{"key": "b"}], agents=agents))
        task = asyncio.create_task(second.drive(run_id))
        await asyncio.sleep(0.3)
        snap = await second.snapshot(run_id)
        assert snap["steps"][0]["attempts"] == 0  # held back: the breaker is still open
        assert second.breakers.get(target(agents, "down")).is_open
        await second.cancel(run_id)
        await asyncio.wait_for(task, 5)


async def test_breaker_changes_are_events_in_show_json(orch):
    agents = {
        "down": {**DOWN, "breaker": {"failure_threshold": 1, "cooldown_s": 3600}},
        "ok": {"kind": "sim", "latency_ms": 0},
    }
    run_id = await orch.create_run(
        plan([{"key": "a", "agent": "down", "max_attempts": 1}, {"key": "b", "agent": "ok"}], agents=agents)
    )
    await orch.drive(run_id)
    events = (await orch.snapshot(run_id))["events"]
    change = next(e for e in events if e["type"] == "breaker_changed")
    assert change["payload"] == {
        "agent": "down",
        "target": target(agents, "down"),
        "from": "closed",
        "to": "open",
        "reason": "1 consecutive failures",
        "failures": 1,
    }
    peak, _by_agent = running_profile(await events_of(orch, run_id))
    assert peak >= 1


async def test_a_breaker_opened_in_another_process_opens_here_too(db_url):
    """Two orchestrators (as two workers would be) on one database: when one finds an agent
    down, the other stops sending to it and routes its queued work, without failing itself."""
    agents = {
        "api": {
            "kind": "sim",
            "latency_ms": 0,
            "fail_times": 9,
            "breaker": {"failure_threshold": 2, "cooldown_s": 60},
            "alternatives": ["backup"],
        },
        "backup": {"kind": "sim", "latency_ms": 0},
    }
    here = await Orchestrator.open(db_url, user="a", lease_ttl_s=0.3, poll_s=0.05)
    there = await Orchestrator.open(db_url, user="b", lease_ttl_s=0.3, poll_s=0.05)
    try:
        waiting = await there.create_run(  # "later" is held behind a gate until "api" is known to be down
            plan(
                [
                    {"key": "first", "agent": "backup", "approval": "required"},
                    {"key": "later", "agent": "api", "depends_on": ["first"]},
                ],
                agents=agents,
                stop_on_approval_required=False,
            )
        )
        task = asyncio.create_task(there.drive(waiting))
        await wait_event(there, waiting, "step_waiting", "first")  # it runs (a driver that loads later restores)
        failing = await here.create_run(
            plan([{"key": f"f{i}", "agent": "api", "max_attempts": 1} for i in range(2)], agents=agents)
        )
        await here.drive(failing)  # two failures: "api" opens here, and is saved
        assert here.breakers.get(target(agents, "api")).is_open
        await wait_event(there, waiting, "breaker_changed")  # the other process's heartbeat adopts it
        await there.approve(waiting, "first", user="b")
        assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
        assert there.breakers.get(target(agents, "api")).is_open  # adopted from the database
        events = [e for e in await events_of(there, waiting)]
        adopted = next(e for e in events if e.type == "breaker_changed")
        assert adopted.payload["to"] == "open" and "another process" in adopted.payload["reason"]
        routed = next(e for e in events if e.type == "step_routed")
        assert routed.step_key == "later" and routed.payload["to"] == "backup"  # never tried on the down agent
        assert not [e for e in events if e.type == "step_started" and e.payload["agent"] == "api"]
    finally:
        await here.close()
        await there.close()


async def test_a_breaker_guards_its_target_never_another_plans_agent_of_the_same_name(orch):
    """The demo's `scraper` breaker once held an unrelated plan's `scraper` (a shell agent) for 45 s."""
    down = {"scraper": {**DOWN, "breaker": {"failure_threshold": 1, "cooldown_s": 3600}}}
    first = await orch.create_run(plan([{"key": "a", "max_attempts": 1}], agents=down))
    assert await orch.drive(first) == RunStatus.FAILED
    assert orch.breakers.get(target(down, "scraper")).is_open
    other = {"scraper": {"kind": "shell", "timeout_s": 10}}
    second = await orch.create_run(plan([{"key": "b", "input": {"argv": ["true"]}}], agents=other))
    assert await asyncio.wait_for(orch.drive(second), 10) == RunStatus.SUCCEEDED
    events = await events_of(orch, second)
    assert not [e for e in events if e.type in ("step_held", "breaker_changed")]
    assert target(other, "scraper") != target(down, "scraper")


async def test_a_step_held_by_an_open_breaker_says_which_breaker_and_when_its_probe_is_due(orch):
    agents = {"down": {**DOWN, "breaker": {"failure_threshold": 1, "cooldown_s": 3600}}}
    run_id = await orch.create_run(
        plan([{"key": "a", "max_attempts": 1}, {"key": "b"}], agents=agents, max_concurrency=1)
    )
    task = asyncio.create_task(orch.drive(run_id))
    held = await wait_event(orch, run_id, "step_held", "b")
    opened = next(e for e in await events_of(orch, run_id) if e.type == "breaker_changed")
    assert held.payload["by"] == "breaker" and held.payload["agent"] == "down"
    assert held.payload["target"] == target(agents, "down")
    due = opened.created_at + 3600
    assert abs(datetime.fromisoformat(held.payload["probe_at"]).timestamp() - due) < 1
    assert 'breaker of "down" is open (1 consecutive failures); its probe is due at' in held.payload["reason"]
    await orch.cancel(run_id)
    await asyncio.wait_for(task, 5)
