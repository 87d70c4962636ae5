"""PostgreSQL-only behaviour: event ids in commit order across processes' writers, NOTIFY wake-ups."""

from __future__ import annotations

import asyncio

from core.store import Store
from core.writer import WriteBatch


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
