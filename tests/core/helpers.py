"""Helpers for driving runs in tests."""

from __future__ import annotations

import asyncio
from typing import Any

from core import Event, Orchestrator


async def start(orch: Orchestrator, plan: Any) -> tuple[str, asyncio.Task]:
    """Create a run and drive it in the background."""
    run_id = await orch.create_run(plan)
    return run_id, asyncio.create_task(orch.drive(run_id))


async def wait_event(
    orch: Orchestrator, run_id: str, type_: str, key: str | None = None, timeout: float = 10.0
) -> Event:
    """The first event of ``type_`` (for ``key``) in the run, waiting for it if need be."""

    async def find() -> Event:
        async for event in orch.follow(run_id, 0):
            if event.type == type_ and (key is None or event.step_key == key):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), timeout)


def running_profile(events: list[Event]) -> tuple[int, dict[str, int]]:
    """Replay events: the most steps ever running at once, in all and per agent."""
    running: dict[str, str] = {}
    peak, peak_by_agent = 0, {}
    counts: dict[str, int] = {}
    for e in events:
        if e.type == "step_started":
            running[e.step_key] = e.payload["agent"]
            counts[e.payload["agent"]] = counts.get(e.payload["agent"], 0) + 1
        elif e.step_key in running and e.type in (
            "step_succeeded",
            "step_failed",
            "step_retrying",
            "step_skipped",
            "step_requeued",
        ):
            counts[running.pop(e.step_key)] -= 1
        peak = max(peak, len(running))
        for agent, n in counts.items():
            peak_by_agent[agent] = max(peak_by_agent.get(agent, 0), n)
    return peak, peak_by_agent
