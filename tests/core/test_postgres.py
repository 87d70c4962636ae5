"""PostgreSQL-only behaviour: event ids in commit order across processes' writers, NOTIFY wake-ups."""

from __future__ import annotations

import asyncio

from core.store import Store
from core.store.batch import WriteBatch


async def test_readers_since_id_never_miss_events_from_concurrent_writers(pg_url):
    """Several stores (as several processes would) write events at once; a reader polling
    "since id N" must see every one of them: ids become visible in commit order."""
    writers = [await Store.open(pg_url) for _ in range(4)]
    reader = await Store.open(pg_url)
    seen: list[int] = []
    done = asyncio.Event()

    async def write(store: Store, n: int) -> None:
        for i in range(150):
            batch = WriteBatch()
            for j in range(1 + (i % 3)):
                batch.event(f"run-{n}", "probe", None, {"i": i, "j": j}, 0.0)
            await store.write(batch)

    async def read() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for event in await reader.events_since(None, last):
                seen.append(event.id)
                last = event.id
            if finished:
                return
            await asyncio.sleep(0)

    try:
        reading = asyncio.create_task(read())
        await asyncio.gather(*(write(store, n) for n, store in enumerate(writers)))
        done.set()
        await reading
        every = [e.id for e in await reader.events_since(None, 0, limit=100_000)]
    finally:
        for store in [*writers, reader]:
            await store.close()
    assert len(every) == 4 * sum(1 + (i % 3) for i in range(150))
    assert seen == every  # nothing skipped, nothing out of order


async def test_a_dropped_listen_connection_wakes_its_waiters_and_listens_again(pg_url):
    """The LISTEN connection was never reconnected: after a drop, dashboards and workers only polled."""
    import asyncpg

    from core.store import EVENTS_CHANNEL
    from core.store.notify import Notifier

    notifier = Notifier(pg_url)
    admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        assert not await notifier.wait(EVENTS_CHANNEL, "r1", 0.05)  # connects and listens
        assert notifier.connections == 1
        waiting = asyncio.ensure_future(notifier.wait(EVENTS_CHANNEL, "r1", 10))
        await asyncio.sleep(0.1)
        pid = notifier._conn.get_server_pid()
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        assert await asyncio.wait_for(waiting, 5)  # woken to catch up from the tables, not left to time out
        later = asyncio.ensure_future(notifier.wait(EVENTS_CHANNEL, "r1", 10))
        for _ in range(100):  # the next wait listens again (a new connection, after the retry pause if any)
            await asyncio.sleep(0.05)
            if notifier.connections == 2 and not later.done():
                await admin.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, "r1 42")
                break
            if later.done():
                later = asyncio.ensure_future(notifier.wait(EVENTS_CHANNEL, "r1", 10))
        assert await asyncio.wait_for(later, 5) and notifier.connections == 2
    finally:
        await admin.close()
        await notifier.close()


async def test_two_processes_saving_a_targets_first_breaker_state_at_once_never_collide(pg_url):
    """The first save of a breaker was an update-then-insert: two workers at once hit a duplicate key."""
    from core.engine.breaker import Breaker

    stores = [await Store.open(pg_url) for _ in range(6)]
    try:
        for round_ in range(5):
            target = f"llm http://h/v1 model-{round_}"
            rows = [Breaker(target, failure_threshold=1).row() for _ in stores]
            await asyncio.gather(
                *(s.write(WriteBatch(extras=[Store.save_breaker_extra(r)])) for s, r in zip(stores, rows, strict=False))
            )
            assert len(await stores[0].load_breakers([target])) == 1
    finally:
        for store in stores:
            await store.close()
