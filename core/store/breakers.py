"""Circuit breakers as processes save them, for the others to adopt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from core.store import schema
from core.store.base import StoreBase, upsert
from core.store.records import BreakerRecord


class BreakerQueries(StoreBase):
    async def load_breakers(self, targets: list[str]) -> list[BreakerRecord]:
        def q(conn: Connection) -> list[BreakerRecord]:
            stmt = select(schema.breakers).where(schema.breakers.c.target.in_(targets))
            return [BreakerRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q) if targets else []

    @staticmethod
    def save_breaker_extra(row: dict[str, Any]) -> Callable[[Connection], None]:
        """An upsert: two processes saving a target's first state at once must not collide."""

        def extra(conn: Connection) -> None:
            values = {k: v for k, v in row.items() if k != "target"}
            ins = upsert(conn, schema.breakers)
            conn.execute(ins.values(row).on_conflict_do_update(index_elements=["target"], set_=values))

        return extra
