"""Many processes on one database: workers, their claims on runs, agent slots held across processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from core.store import schema
from core.store.base import StoreBase, upsert
from core.store.batch import WriteBatch
from core.store.records import WorkerRecord

# statuses of runs a worker may claim: queued (planning), or left by a driver that stopped
CLAIMABLE = ("planning", "running", "waiting_user", "awaiting_plan_approval")


class ClusterQueries(StoreBase):
    async def claim_runs(
        self, owner: str, host: str, pid: int, ttl_s: float, limit: int, skip: Collection[str] = ()
    ) -> list[str]:
        """Take the leases of up to ``limit`` runs nobody drives (queued, or orphaned by an expired lease), none
        of ``skip``.

        ``FOR UPDATE SKIP LOCKED`` lets every worker claim at once without
        queueing on the same rows (SQLite serialises writers anyway and ignores it).
        """
        claimed: list[str] = []

        def extra(conn: Connection) -> None:
            now = time.time()
            runs = schema.runs
            claimable = [
                runs.c.status.in_(CLAIMABLE),
                or_(runs.c.lock_owner.is_(None), runs.c.locked_until < now),
                # a plan nobody approved yet would only hold a worker's slot: claim it once approved
                or_(runs.c.status != "awaiting_plan_approval", runs.c.proposal_json.is_not(None)),
            ]
            if skip:
                claimable.append(runs.c.id.not_in(list(skip)))
            candidates = (
                select(runs.c.id)
                .where(*claimable)
                .order_by(runs.c.created_at, runs.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .cte("candidates")
            )
            stmt = (
                update(runs)
                .where(runs.c.id.in_(select(candidates.c.id)))
                .values(lock_owner=owner, lock_host=host, lock_pid=pid, locked_until=now + ttl_s)
                .returning(runs.c.id)
            )
            claimed.extend(row[0] for row in conn.execute(stmt))
            if claimed:
                conn.execute(
                    update(schema.workers)
                    .where(schema.workers.c.owner == owner)
                    .values(runs_claimed=schema.workers.c.runs_claimed + len(claimed))
                )

        await self.write(WriteBatch(extras=[extra]))
        return claimed

    async def register_worker(self, owner: str, name: str, host: str, pid: int) -> None:
        now = time.time()

        def extra(conn: Connection) -> None:
            conn.execute(
                insert(schema.workers).values(
                    owner=owner, name=name, host=host, pid=pid, started_at=now, heartbeat_at=now, runs_claimed=0
                )
            )

        await self.write(WriteBatch(extras=[extra]))

    @staticmethod
    def worker_heartbeat_extra(owner: str, stopped: bool = False) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            now = time.time()
            values: dict[str, Any] = {"heartbeat_at": now}
            if stopped:
                values["stopped_at"] = now
            conn.execute(update(schema.workers).where(schema.workers.c.owner == owner).values(**values))

        return extra

    async def list_workers(self) -> list[WorkerRecord]:
        def q(conn: Connection) -> list[WorkerRecord]:
            rows = (conn.execute(select(schema.workers).order_by(schema.workers.c.started_at))).mappings().all()
            return [WorkerRecord.from_row(r) for r in rows]

        return await self._read(q)

    async def acquire_slot(self, agent: str, limit: int, holder: str, run_id: str, ttl_s: float) -> int | None:
        """One of the agent's ``limit`` slots, held by ``holder`` until released or expired; None if all are taken."""
        got: list[int] = []
        seeded = (agent, limit) in self._seeded_slots

        def extra(conn: Connection) -> None:
            now = time.time()
            slots = schema.agent_slots
            if not seeded:  # the agent's slot rows exist once this process has made sure of it
                ins = upsert(conn, slots)
                conn.execute(ins.values([{"agent": agent, "slot": i} for i in range(limit)]).on_conflict_do_nothing())
            free = (
                select(slots.c.agent, slots.c.slot)
                .where(
                    slots.c.agent == agent,
                    slots.c.slot < limit,
                    or_(slots.c.holder.is_(None), slots.c.expires_at < now),
                )
                .order_by(slots.c.slot)
                .limit(1)
                .with_for_update(skip_locked=True)
                .cte("free")
            )
            stmt = (
                update(slots)
                .where(slots.c.agent == agent, slots.c.slot.in_(select(free.c.slot)))
                .values(holder=holder, run_id=run_id, expires_at=now + ttl_s)
                .returning(slots.c.slot)
            )
            got.extend(row[0] for row in conn.execute(stmt))

        await self.write(WriteBatch(extras=[extra]))
        self._seeded_slots.add((agent, limit))
        return got[0] if got else None

    @staticmethod
    def release_slots_extra(holder: str, slots: list[tuple[str, int]]) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            for agent, slot in slots:
                conn.execute(
                    update(schema.agent_slots)
                    .where(
                        schema.agent_slots.c.agent == agent,
                        schema.agent_slots.c.slot == slot,
                        schema.agent_slots.c.holder == holder,
                    )
                    .values(holder=None, run_id=None, expires_at=None)
                )

        return extra

    @staticmethod
    def renew_slots_extra(holder: str, ttl_s: float) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(
                update(schema.agent_slots)
                .where(schema.agent_slots.c.holder == holder)
                .values(expires_at=time.time() + ttl_s)
            )

        return extra
