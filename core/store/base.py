"""What every group of queries shares: the engines, the group-commit writer, translated read errors.

A query is a plain function of a synchronous ``Connection``. On SQLite it runs
in a small pool of reader threads, each with the standard library's driver
(SQLAlchemy's async layer and aiosqlite would add an ORM import, ~45 ms of
every command's start, and a thread hop per statement); on PostgreSQL it runs
through the async connection's ``run_sync``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from core.errors import StoreError
from core.store.batch import WriteBatch
from core.store.writer import GroupWriter, describe_db_error

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
READS_GRACE_S = 5.0  # at close, how long queries still running may take before the pool closes under them
READERS = 4  # SQLite reader threads (WAL: readers never wait for the writer)


def _settled(task: asyncio.Future[Any]) -> None:
    """Its reader may be gone: the error was raised to whoever still waited; here it is only retrieved."""
    if not task.cancelled():
        task.exception()


def upsert(conn: Any, table: Any) -> Any:
    """An INSERT that can say ON CONFLICT: each dialect has its own, imported when first needed
    (a SQLite user never loads PostgreSQL's dialect: 30 ms of every command's start)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


class StoreBase:
    """The connection side of the store; the query groups (runs, steps, events, ...) build on it.

    SQLite has ``sync_engine`` only (``engine``, the async one, is made on first use, for callers that
    want one); PostgreSQL has ``engine``."""

    def __init__(self, engine: AsyncEngine | None, url: str, sync_engine: Engine | None = None) -> None:
        assert engine is not None or sync_engine is not None
        self._engine = engine
        self.url = url
        self.dialect = (sync_engine or engine).dialect.name  # type: ignore[union-attr]
        self._seeded_slots: set[tuple[str, int]] = set()  # (agent, limit) whose slot rows are known to exist
        self._sync_engine = sync_engine
        self._readers: ThreadPoolExecutor | None = None
        self.on_connect: Callable[[Any, Any], None] | None = None  # SQLite's pragmas, for an async engine made later
        self.writer = GroupWriter(engine, sync_engine)
        self._reads: set[asyncio.Future[Any]] = set()  # queries running on, their readers cancelled or not

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (SQLite: made on first use, with the store's pragmas; disposed by ``close``)."""
        if self._engine is None:
            from sqlalchemy import event
            from sqlalchemy.ext.asyncio import create_async_engine

            self._engine = create_async_engine(self.url)
            if self.on_connect is not None:
                event.listen(self._engine.sync_engine, "connect", self.on_connect)
        return self._engine

    async def write(self, batch: WriteBatch) -> list[int]:
        """Commit ``batch`` through the group writer; returns its event ids."""
        return await self.writer.submit(batch)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        """Run a read query. A reader cancelled mid-query (a dashboard closing, a timeout) does not cancel the
        query: it ends in its own task and its connection goes back to the pool whole."""
        task = asyncio.ensure_future(self._query(fn))
        self._reads.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._reads.discard)
        return await asyncio.shield(task)

    async def _query(self, fn: Callable[[Connection], T]) -> T:
        try:
            if self._sync_engine is not None:
                if self._readers is None:
                    self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="loopdeck-reader")
                return await asyncio.get_running_loop().run_in_executor(
                    self._readers, _connected, self._sync_engine, fn
                )
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn)
        except DBAPIError as exc:
            raise StoreError(describe_db_error(exc)) from exc

    async def _dispose(self) -> None:
        if self._reads:  # reads whose readers left: they end by themselves, the pool then closes whole
            await asyncio.wait(set(self._reads), timeout=READS_GRACE_S)
        if self._readers is not None:  # (a read after close makes a new pool, as a disposed engine reconnects)
            self._readers.shutdown(wait=False)
            self._readers = None
        if self._engine is not None:
            await self._engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def close(self) -> None:
        await self.writer.close()
        await self._dispose()


def _connected(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """In a reader thread: ``fn`` on a pooled connection (its implicit transaction ends with it)."""
    with engine.connect() as conn:
        return fn(conn)
