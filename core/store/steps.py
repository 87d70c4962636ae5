"""Steps of runs: their rows as typed records, and counts by status."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, func, select

from core.store import schema
from core.store.base import StoreBase
from core.store.records import STEP_COLUMNS, StepRecord

_COLUMNS = [schema.steps.c[name] for name in STEP_COLUMNS]


class StepQueries(StoreBase):
    async def step_counts(self, run_ids: list[str]) -> dict[str, dict[str, int]]:
        """Per run, how many steps are in each status (for lists and progress)."""

        def q(conn: Connection) -> dict[str, dict[str, int]]:
            stmt = (
                select(schema.steps.c.run_id, schema.steps.c.status, func.count())
                .where(schema.steps.c.run_id.in_(run_ids))
                .group_by(schema.steps.c.run_id, schema.steps.c.status)
            )
            out: dict[str, dict[str, int]] = {}
            for run_id, status, n in conn.execute(stmt):
                out.setdefault(run_id, {})[status] = n
            return out

        return await self._read(q) if run_ids else {}

    async def waiting_of(self, run_ids: list[str]) -> dict[str, list[str]]:
        """Per run, what waits for an operator: its waiting steps' keys, then ``tool KEY`` for waiting tool calls."""

        def q(conn: Connection) -> dict[str, list[str]]:
            steps, calls = schema.steps.c, schema.tool_calls.c
            out: dict[str, list[str]] = {}
            waiting_steps = (
                select(steps.run_id, steps.key)
                .where(steps.run_id.in_(run_ids), steps.status == "waiting_user")
                .order_by(steps.run_id, steps.idx)
            )
            for run_id, key in conn.execute(waiting_steps):
                out.setdefault(run_id, []).append(key)
            waiting_calls = (
                select(calls.run_id, calls.tool)
                .where(calls.run_id.in_(run_ids), calls.status == "waiting_user")
                .order_by(calls.run_id, calls.created_at)
            )
            for run_id, tool in conn.execute(waiting_calls):
                out.setdefault(run_id, []).append(f"tool {tool}")
            return out

        return await self._read(q) if run_ids else {}

    async def get_steps(self, run_id: str, keys: Collection[str] | None = None) -> list[StepRecord]:
        """The run's steps in plan order; only ``keys`` when given (decoding every output of a 5,000-step run
        for the three a step depends on would hold the event loop for tens of milliseconds)."""

        def q(conn: Connection) -> list[StepRecord]:
            stmt = select(*_COLUMNS).where(schema.steps.c.run_id == run_id).order_by(schema.steps.c.idx)
            if keys is not None:
                stmt = stmt.where(schema.steps.c.key.in_(list(keys)))
            return [StepRecord.from_values(r) for r in conn.execute(stmt)]

        return await self._read(q)

    async def get_step(self, run_id: str, key: str) -> StepRecord | None:
        def q(conn: Connection) -> StepRecord | None:
            stmt = select(*_COLUMNS).where(schema.steps.c.run_id == run_id, schema.steps.c.key == key)
            row = conn.execute(stmt).first()
            return StepRecord.from_values(row) if row else None

        return await self._read(q)
