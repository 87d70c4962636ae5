"""What every group of queries shares: the engine, the group-commit writer, translated read errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.errors import StoreError
from core.store.writer import GroupWriter, WriteBatch, describe_db_error

T = TypeVar("T")


class StoreBase:
    """The connection side of the store; the query groups (runs, steps, events, ...) build on it."""

    def __init__(self, engine: AsyncEngine, url: str, sync_engine: Any = None) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._seeded_slots: set[tuple[str, int]] = set()  # (agent, limit) whose slot rows are known to exist
        self._sync_engine = sync_engine
        self.writer = GroupWriter(engine, sync_engine)

    async def write(self, batch: WriteBatch) -> list[int]:
        """Commit ``batch`` through the group writer; returns its event ids."""
        return await self.writer.submit(batch)

    async def _read(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self.engine.connect() as conn:
                return await fn(conn)
        except DBAPIError as exc:
            raise StoreError(describe_db_error(exc)) from exc

    async def _dispose(self) -> None:
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def close(self) -> None:
        await self.writer.close()
        await self._dispose()
