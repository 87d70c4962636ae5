"""What every group of queries shares: the engine, the group-commit writer, translated read errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.errors import StoreError
from core.store.writer import GroupWriter, WriteBatch, describe_db_error

T = TypeVar("T")
READS_GRACE_S = 5.0  # at close, how long queries still running may take before the pool closes under them


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
    """The connection side of the store; the query groups (runs, steps, events, ...) build on it."""

    def __init__(self, engine: AsyncEngine, url: str, sync_engine: Any = None) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._seeded_slots: set[tuple[str, int]] = set()  # (agent, limit) whose slot rows are known to exist
        self._sync_engine = sync_engine
        self.writer = GroupWriter(engine, sync_engine)
        self._reads: set[asyncio.Future[Any]] = set()  # queries running on, their readers cancelled or not

    async def write(self, batch: WriteBatch) -> list[int]:
        """Commit ``batch`` through the group writer; returns its event ids."""
        return await self.writer.submit(batch)

    async def _read(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a read query. A reader cancelled mid-query (a dashboard closing, a timeout) does not cancel the
        query: it ends in its own task and its connection goes back to the pool whole. (Cancelled mid-query,
        SQLAlchemy invalidates the connection and closes it in a shielded task that, with aiosqlite, can wait
        for ever once the connection's thread has stopped; an event loop's shutdown then hangs on it.)"""
        task = asyncio.ensure_future(self._query(fn))
        self._reads.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._reads.discard)
        return await asyncio.shield(task)

    async def _query(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self.engine.connect() as conn:
                return await fn(conn)
        except DBAPIError as exc:
            raise StoreError(describe_db_error(exc)) from exc

    async def _dispose(self) -> None:
        if self._reads:  # reads whose readers left: they end by themselves, the pool then closes whole
            await asyncio.wait(set(self._reads), timeout=READS_GRACE_S)
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def close(self) -> None:
        await self.writer.close()
        await self._dispose()
