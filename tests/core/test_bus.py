"""The event bus: per-run and global subscriptions, gap markers for slow readers, follow since id N."""

from __future__ import annotations

import asyncio

from core import EventBus, Gap
from core.model.events import Event
from tests.conftest import plan
from tests.core.helpers import start


def ev(i: int, run: str = "r") -> Event:
    return Event(i, run, "note", None, {})


async def test_subscribers_get_their_run_or_every_run():
    bus = EventBus()
    mine, everything = bus.subscribe("r1"), bus.subscribe(None)
    bus.publish([ev(1, "r1"), ev(2, "r2")])
    assert [e.id for e in mine.get_nowait()] == [1]
    assert [e.id for e in everything.get_nowait()] == [1, 2]


async def test_a_slow_subscriber_gets_one_gap_marker_and_never_blocks_the_publisher():
    bus = EventBus()
    slow = bus.subscribe("r", maxsize=3)
    fast = bus.subscribe("r", maxsize=1000)
    bus.publish(ev(i) for i in range(1, 101))  # returns at once however far behind `slow` is
    got = [await slow.get() for _ in range(4)]
    assert [e.id for e in got[:3]] == [1, 2, 3]
    assert got[3] == Gap("r", 3)
    assert len(fast.get_nowait()) == 100
    bus.publish([ev(101)])
    assert (await slow.get()).id == 101  # after the gap it receives live events again


async def test_closed_subscriptions_stop_iteration():
    bus = EventBus()
    sub = bus.subscribe("r")
    sub.close()
    assert [e async for e in sub] == []


async def test_follow_starts_since_an_id_and_reads_gaps_back_from_the_store(orch):
    run_id = await orch.create_run(plan([{"key": f"s{i}"} for i in range(30)]))
    await orch.drive(run_id)
    stored = await orch.store.events_since(run_id)
    since = stored[10].id
    seen = []
    async for event in orch.follow(run_id, since):
        seen.append(event)
        if event.id == stored[-1].id:
            break
    assert seen == stored[11:]


async def test_follow_with_a_tiny_buffer_loses_nothing_during_a_live_run(orch):
    run_id, task = await start(orch, plan([{"key": f"s{i}"} for i in range(200)], max_concurrency=20))
    seen = []

    async def reader():
        async for event in orch.follow(run_id, 0, maxsize=2):
            seen.append(event.id)
            await asyncio.sleep(0)  # slower than the controller
            if event.type == "run_ended":
                return

    await asyncio.wait_for(asyncio.gather(task, reader()), 20)
    stored = [e.id for e in await orch.store.events_since(run_id)]
    assert seen == stored


async def test_wait_for_events_wakes_at_once_when_this_process_commits_events_of_the_run(orch):
    """A dashboard driving its run in the same process hears of new events at once, not at its next poll."""
    from core import Event
    from tests.conftest import plan

    run_id = await orch.create_run(plan([{"key": "a"}]))
    waiting = asyncio.create_task(orch.wait_for_events(run_id, 30))
    await asyncio.sleep(0.05)
    orch.bus.publish([Event(1, run_id, "step_started", "a", {}, 0.0)])
    assert await asyncio.wait_for(waiting, 5) is True
    waiting = asyncio.create_task(orch.wait_for_events(run_id, 0.3))
    await asyncio.sleep(0.05)
    orch.bus.publish([Event(2, "another-run", "step_started", "a", {}, 0.0)])  # another run's: no wake
    assert await waiting is False
    assert not orch.bus._by_run.get(run_id)  # its doorbells were taken down
