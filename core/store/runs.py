"""Runs and their plans and leases: the rows that say what a run is and who drives it."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Select, delete, insert, select, update

from core.errors import BadInput, RunNotFound, StaleWrite
from core.store import schema
from core.store.base import StoreBase
from core.store.batch import WriteBatch
from core.store.notify import RUNS_CHANNEL, notify
from core.store.records import PlanOutline, RunRecord, plan_data


class PlanOutlines:
    """The outlines of the plans of the last few runs read, each kept with the text it was made from."""

    KEPT = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()  # (reader threads)
        self._by_run: dict[str, tuple[str, PlanOutline]] = {}

    def outline(self, run_id: str, text: str) -> PlanOutline:
        with self._lock:
            known = self._by_run.pop(run_id, None)
            if known is not None and known[0] == text:
                self._by_run[run_id] = known  # (the last read goes last: the first is let go first)
                return known[1]
        outline = PlanOutline.of(plan_data(text))
        with self._lock:
            self._by_run[run_id] = (text, outline)
            while len(self._by_run) > self.KEPT:
                del self._by_run[next(iter(self._by_run))]
        return outline


def _with_plan(stmt: Select[Any]) -> Select[Any]:
    """``stmt`` (a select of runs) with each run's plan text (``plan_json``) beside its row."""
    return stmt.add_columns(schema.run_plans.c.plan_json).join(
        schema.run_plans, schema.run_plans.c.run_id == schema.runs.c.id
    )


class RunQueries(StoreBase):
    @staticmethod
    def insert_run_extra(run_row: dict[str, Any], step_rows: list[dict[str, Any]]) -> Callable[[Connection], None]:
        run_values = {k: v for k, v in run_row.items() if k != "plan_json"}

        def _insert(conn: Connection) -> None:
            conn.execute(insert(schema.runs), [run_values])
            conn.execute(insert(schema.run_plans), [{"run_id": run_row["id"], "plan_json": run_row["plan_json"]}])
            if step_rows:
                conn.execute(insert(schema.steps), step_rows)
            notify(conn, RUNS_CHANNEL, run_row["id"])  # a queued run: workers claim it now, not at their next poll

        return _insert

    async def resolve_run_id(self, run_id: str) -> str:
        """The full id of a run, given its id or a unique prefix of it."""

        def q(conn: Connection) -> list[str]:
            exact = conn.execute(select(schema.runs.c.id).where(schema.runs.c.id == run_id))
            if exact.first():
                return [run_id]
            pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = conn.execute(select(schema.runs.c.id).where(schema.runs.c.id.like(pattern, escape="\\")).limit(5))
            return [r[0] for r in rows]

        matches = await self._read(q) if run_id else []
        if not matches:
            raise RunNotFound(run_id)
        if len(matches) > 1:
            raise BadInput(
                f"run id prefix {run_id!r} matches several runs ({', '.join(matches)}); give more characters"
            )
        return matches[0]

    async def get_run(self, run_id: str, *, plan: bool = True) -> RunRecord:
        """The run (with its plan, unless ``plan=False``: a large plan costs a read of its own)."""

        def q(conn: Connection) -> RunRecord | None:
            stmt = select(schema.runs).where(schema.runs.c.id == run_id)
            row = (conn.execute(_with_plan(stmt) if plan else stmt)).mappings().first()
            return RunRecord.from_row(row) if row else None

        record = await self._read(q)
        if record is None:
            raise RunNotFound(run_id)
        return record

    async def get_run_and_plan_text(self, run_id: str) -> tuple[RunRecord, str]:
        """The run (its ``plan`` None) and its plan's stored JSON text, not decoded: a driver that validated
        that very text in this process takes the plan it has (``core.engine.known_plans``)."""

        def q(conn: Connection) -> tuple[RunRecord, str] | None:
            row = (conn.execute(_with_plan(select(schema.runs)).where(schema.runs.c.id == run_id))).mappings().first()
            return None if row is None else (RunRecord.from_row({**row, "plan_json": None}), row["plan_json"])

        found = await self._read(q)
        if found is None:
            raise RunNotFound(run_id)
        return found

    @functools.cached_property
    def _outlines(self) -> PlanOutlines:
        return PlanOutlines()

    async def plan_outline(self, run_id: str) -> PlanOutline:
        """The outline of the run's plan (its policy, each step's dependencies), made again only when the
        plan's text changed. The dashboard asks for a step's context at each cursor move: parsing a
        20,000-step plan (6 MB) each time held the interpreter for 40 ms, and the screen with it; comparing
        the text is 1 ms."""
        outlines = self._outlines

        def q(conn: Connection) -> PlanOutline | None:
            stmt = select(schema.run_plans.c.plan_json).where(schema.run_plans.c.run_id == run_id)
            text = conn.execute(stmt).scalar()
            return None if text is None else outlines.outline(run_id, text)

        outline = await self._read(q)
        if outline is None:
            raise RunNotFound(run_id)
        return outline

    async def children_of(self, run_id: str) -> list[RunRecord]:
        """The child runs of a run's sub_agent steps, oldest first (without their plans or results)."""

        def q(conn: Connection) -> list[RunRecord]:
            listed = [c for c in schema.runs.c if c.name != "result_json"]
            stmt = select(*listed).where(schema.runs.c.parent_run_id == run_id).order_by(schema.runs.c.created_at)
            return [RunRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def list_runs(self, limit: int = 100) -> list[RunRecord]:
        def q(conn: Connection) -> list[RunRecord]:
            listed = [c for c in schema.runs.c if c.name != "result_json"]  # a listing needs no answers
            stmt = select(*listed).order_by(schema.runs.c.created_at.desc(), schema.runs.c.id.desc()).limit(limit)
            return [RunRecord.from_row(r) for r in (conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def take_lease(
        self, run_id: str, owner: str, host: str, pid: int, ttl_s: float, previous_owner: str | None
    ) -> None:
        """Take the run's lease, provided ``previous_owner`` still holds it (compare-and-set)."""

        def extra(conn: Connection) -> None:
            cond = (
                schema.runs.c.lock_owner.is_(None)
                if previous_owner is None
                else schema.runs.c.lock_owner == previous_owner
            )
            stmt = (
                update(schema.runs)
                .where(schema.runs.c.id == run_id, cond)
                .values(lock_owner=owner, lock_host=host, lock_pid=pid, locked_until=time.time() + ttl_s)
            )
            if conn.execute(stmt).rowcount != 1:
                raise StaleWrite(f"run {run_id} was taken over by another process a moment ago")

        batch = WriteBatch(extras=[extra])
        await self.write(batch)

    @staticmethod
    def renew_lease_extra(run_id: str, owner: str, ttl_s: float) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            stmt = (
                update(schema.runs)
                .where(schema.runs.c.id == run_id, schema.runs.c.lock_owner == owner)
                .values(locked_until=time.time() + ttl_s)
            )
            if conn.execute(stmt).rowcount != 1:
                raise StaleWrite(f"this process lost the lease on run {run_id}")

        return extra

    @staticmethod
    def release_lease_extra(run_id: str, owner: str) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(
                update(schema.runs)
                .where(schema.runs.c.id == run_id, schema.runs.c.lock_owner == owner)
                .values(lock_owner=None, lock_host=None, lock_pid=None, locked_until=None)
            )
            notify(conn, RUNS_CHANNEL, run_id)  # an unfinished run handed back: a worker may take it at once

        return extra

    @staticmethod
    def replan_extra(
        run_id: str, plan_json: str, removed: list[str], new_rows: list[dict[str, Any]]
    ) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(
                update(schema.run_plans).where(schema.run_plans.c.run_id == run_id).values(plan_json=plan_json)
            )
            if removed:
                conn.execute(
                    delete(schema.steps).where(
                        schema.steps.c.run_id == run_id,
                        schema.steps.c.key.in_(removed),
                        schema.steps.c.status == "pending",
                        schema.steps.c.attempts == 0,
                    )
                )
            if new_rows:
                conn.execute(insert(schema.steps), new_rows)

        return extra
