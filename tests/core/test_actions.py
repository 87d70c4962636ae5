"""One decision per operator action: a live run and a run nobody drives answer alike.

Two identical runs are brought to the same state; one keeps its driver in
this process, the other's driver is drained away (the run stays as it was,
its lease released). The same action on both must write the same events:
the offline ones are exactly the first events the live run writes after it
(the live run then goes on, launching what the action released).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core import Delivery, Orchestrator
from core.model.commands import (
    Approve,
    Cancel,
    DecidePlan,
    Finish,
    Reject,
    Replan,
    Retry,
    SetBudget,
    Skip,
    from_payload,
    to_payload,
)
from tests.conftest import events_of, plan
from tests.core.helpers import wait_event

ON_POSTGRES = False

GATED = dict(
    steps=[
        {"key": "prep"},
        {"key": "gate", "approval": "required", "depends_on": ["prep"]},
        {"key": "after", "depends_on": ["gate"]},
        {"key": "tail", "depends_on": ["after"]},
    ]
)
FAILED_AND_GATED = dict(
    steps=[
        {"key": "bad", "agent": "bad", "max_attempts": 1},
        {"key": "child", "agent": "sim", "depends_on": ["bad"]},
        {"key": "gate", "agent": "sim", "approval": "required"},
    ],
    agents={"sim": {"kind": "sim", "latency_ms": 0}, "bad": {"kind": "sim", "latency_ms": 0, "fail_times": 1}},
)
PAUSED = dict(
    steps=[{"key": f"s{i}"} for i in range(4)],
    agents={"sim": {"kind": "sim", "latency_ms": 0, "tokens": [10, 10]}},
    token_budget=40,
    on_budget_exhausted="pause",
    max_concurrency=1,
)
PROPOSED = dict(
    steps=[
        {"key": "think", "agent": "proposer", "input": {"steps": [{"key": "extra", "agent": "sim"}]}},
        {"key": "gate", "agent": "sim", "approval": "required"},
    ],
    agents={
        "sim": {"kind": "sim", "latency_ms": 0},
        "proposer": {"kind": "python", "call": "tests.fixtures.agents:propose_more"},
    },
    plan_approval="required",
)
OPTS = {"stop_on_approval_required": False}

CASES: list[tuple[str, dict[str, Any], str, Callable[[Orchestrator, str], Awaitable[Delivery]]]] = [
    (
        "approve with an edited input",
        GATED,
        "step_waiting",
        lambda o, r: o.approve(r, "gate", user="ana", reason="ok", input={"edited": True}),
    ),
    ("reject", GATED, "step_waiting", lambda o, r: o.reject(r, "gate", user="ana", reason="no")),
    ("skip a waiting step", GATED, "step_waiting", lambda o, r: o.skip(r, "gate", user="ana", reason="later")),
    ("cancel", GATED, "step_waiting", lambda o, r: o.cancel(r, user="ana", reason="enough")),
    (
        "finish with an answer",
        GATED,
        "step_waiting",
        lambda o, r: o.finish(r, answer="done by hand", status="failed", user="ana", reason="enough"),
    ),
    (
        "replan",
        GATED,
        "step_waiting",
        lambda o, r: o.replan(r, [{"key": "more", "depends_on": ["prep"]}], user="ana", reason="one more"),
    ),
    ("retry a failed step", FAILED_AND_GATED, "step_waiting", lambda o, r: o.retry(r, "bad", user="ana")),
    ("raise the budget of a paused run", PAUSED, "budget_exhausted", lambda o, r: o.set_budget(r, 1000, user="ana")),
    (
        "approve a proposed replan",
        PROPOSED,
        "run_plan_proposed",
        lambda o, r: o.approve_plan(r, user="ana", reason="fine"),
    ),
]


def comparable(events: list[Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(e.type, e.step_key, e.payload) for e in events]


async def brought_to(orch: Orchestrator, data: dict[str, Any], mark: str) -> tuple[str, asyncio.Task]:
    data = {**data}
    agents = data.pop("agents", None)
    steps = data.pop("steps")
    run_id = await orch.create_run(plan(steps, agents=agents, **{**OPTS, **data}))
    if data.get("plan_approval") == "required":
        await orch.approve_plan(run_id, user="ana")  # the first plan; the case is about the replan proposed later
    task = asyncio.create_task(orch.drive(run_id))
    await wait_event(orch, run_id, mark)
    await asyncio.sleep(0.2)  # whatever follows the mark settles (nothing runs while it waits)
    return run_id, task


@pytest.mark.parametrize("name,data,mark,act", CASES, ids=[c[0] for c in CASES])
async def test_the_same_action_writes_the_same_events_live_and_offline(orch, name, data, mark, act):
    live, live_task = await brought_to(orch, data, mark)
    offline, offline_task = await brought_to(orch, data, mark)
    orch.controller(offline).drain()  # its driver goes away; the run stays as it is, nobody drives it
    await asyncio.wait_for(offline_task, 5)
    live_mark = max(e.id for e in await events_of(orch, live))
    offline_mark = max(e.id for e in await events_of(orch, offline))

    assert await act(orch, live) == Delivery.LIVE
    assert await act(orch, offline) == Delivery.OFFLINE

    await asyncio.sleep(0.3)
    live_task.cancel()
    await asyncio.gather(live_task, return_exceptions=True)
    written_live = comparable([e for e in await events_of(orch, live) if e.id > live_mark])
    written_offline = comparable([e for e in await events_of(orch, offline) if e.id > offline_mark])
    assert written_offline, name
    assert written_live[: len(written_offline)] == written_offline


def test_commands_travel_as_kind_and_payload_and_come_back_the_same():
    for command in (
        Approve("a", "r", {"x": 1}),
        Approve("a"),
        Reject("a", "no"),
        Skip("a"),
        Retry("a"),
        Cancel("why"),
        Finish("the answer", "failed", "why", True),
        Finish(),
        SetBudget(None),
        SetBudget(5),
        Replan([{"key": "z"}], "append", "r"),
        DecidePlan(True, "ok", steps=[{"key": "z"}]),
    ):
        assert from_payload(command.kind, to_payload(command)) == command
