"""Tool calls: read a run's, and write one (inserted when requested, then compare-and-set on its status)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, insert, select

from core.errors import StaleWrite
from core.store import schema
from core.store.base import StoreBase
from core.store.records import ToolCallRecord

CALL_MUTABLE = (
    "deadline",
    "attempt",
    "arguments_json",
    "status",
    "result_json",
    "error",
    "decided_by",
    "rule",
    "reason",
    "updated_at",
)


class ToolCallQueries(StoreBase):
    async def calls_of(self, run_id: str) -> list[ToolCallRecord]:
        """A run's tool calls, in the order they were asked for."""

        def q(conn: Connection) -> list[ToolCallRecord]:
            t = schema.tool_calls
            stmt = select(t).where(t.c.run_id == run_id).order_by(t.c.step_key, t.c.attempt, t.c.turn, t.c.idx)
            return [ToolCallRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q)

    @staticmethod
    def call_extra(row: dict[str, Any], expect_status: str | None) -> Callable[[Connection], None]:
        """Insert a new call (``expect_status`` None), or update one still in ``expect_status`` (else StaleWrite)."""

        def extra(conn: Connection) -> None:
            t = schema.tool_calls
            if expect_status is None:
                conn.execute(insert(t), [row])
                return
            done = conn.execute(
                t.update()
                .where(t.c.run_id == row["run_id"], t.c.id == row["id"], t.c.status == expect_status)
                .values({name: row[name] for name in CALL_MUTABLE})
            )
            if done.rowcount != 1:
                raise StaleWrite(f'tool call "{row["id"]}" of run {row["run_id"]} is no longer {expect_status}')

        return extra
