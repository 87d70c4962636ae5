"""The store: SQLAlchemy 2 async over SQLite (default) or PostgreSQL.

Writes of the hot path (transitions, events) go through the group-commit
writer (``writer.py``); reads use pooled connections. Opening a store applies
migrations, so an older database is upgraded in place. Library errors are
translated to ``StoreError`` with a sentence that says what to do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, case, create_engine, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from core.store import migrate, schema
from core.config import display_url, mask_urls, resolve_db_url, sqlite_path
from core.errors import BadInput, RunNotFound, StaleWrite, StoreError
from core.model.events import Event
from core.store.writer import COMMANDS_CHANNEL, RUNS_CHANNEL, GroupWriter, WriteBatch, describe_db_error

T = TypeVar("T")
# statuses of runs a worker may claim: queued (planning), or left by a driver that stopped
CLAIMABLE = ("planning", "running", "waiting_user", "awaiting_plan_approval")
CONNECT_TIMEOUT_S = 10.0


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


def notify(conn: Connection, channel: str, payload: str) -> None:
    """NOTIFY on PostgreSQL (delivered when the transaction commits); nothing elsewhere."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


class Store:
    def __init__(self, engine: AsyncEngine, url: str, sync_engine: Any = None) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._seeded_slots: set[tuple[str, int]] = set()  # (agent, limit) whose slot rows are known to exist
        self._sync_engine = sync_engine
        self.writer = GroupWriter(engine, sync_engine)

    @classmethod
    async def open(cls, url: str | None = None, *, migrate_schema: bool = True, busy_timeout_ms: int = 5000,
                   create: bool = True) -> "Store":
        """Open (creating or upgrading) the database at ``url``; see ``config.resolve_db_url``.

        ``create=False`` (every command that only reads or acts on existing runs)
        refuses a SQLite file that does not exist instead of creating it and its directory.
        """
        url = resolve_db_url(url)
        shown = display_url(url)
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise BadInput(f"--db {shown!r} is not a database URL (e.g. sqlite:///path/to/loopdeck.db)") from exc
        path = sqlite_path(url)
        if path is not None:
            _prepare_sqlite_file(path, create)
        try:
            engine = create_async_engine(url, connect_args=_connect_args(parsed.get_backend_name()))
        except (ArgumentError, ImportError) as exc:
            raise BadInput(f"cannot use database URL {shown}: {mask_urls(str(exc))}") from exc
        sync_engine = None
        is_sqlite = parsed.get_backend_name() == "sqlite"
        pragmas = _sqlite_pragmas(busy_timeout_ms)
        if is_sqlite:
            sa_event.listen(engine.sync_engine, "connect", pragmas)
            sync_engine = create_engine(parsed.set(drivername="sqlite+pysqlite"))
            sa_event.listen(sync_engine, "connect", pragmas)
        store = cls(engine, url, sync_engine)
        try:
            if migrate_schema and is_sqlite:
                revision = None if path is None else migrate.sqlite_revision(path, busy_timeout_ms)
                if revision is None and path is not None and not create:  # refused without a single write
                    await asyncio.to_thread(migrate.refuse_unversioned_sqlite, path)
                if path is None or revision != migrate.head_revision():
                    sync_url = parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
                    await asyncio.to_thread(migrate.upgrade_sqlite, sync_url, pragmas, create)
            elif migrate_schema:
                async with engine.begin() as conn:
                    await conn.run_sync(lambda sync_conn: migrate.upgrade(sync_conn, create=create))
            await store.writer.start()
        except BaseException as exc:
            await store._dispose()
            where = f"connect to {shown}" if path is None else f"open {path}"
            if isinstance(exc, (DBAPIError, OSError, sqlite3.Error)):
                raise StoreError(f"cannot {where}: {_connect_problem(exc)}") from None
            if isinstance(exc, StoreError):
                raise StoreError(f"cannot {where}: {exc}") from None
            raise
        return store

    async def _dispose(self) -> None:
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def close(self) -> None:
        await self.writer.close()
        await self._dispose()

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> list[int]:
        """Commit ``batch`` through the group writer; returns its event ids."""
        return await self.writer.submit(batch)

    async def _read(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self.engine.connect() as conn:
                return await fn(conn)
        except DBAPIError as exc:
            raise StoreError(describe_db_error(exc)) from exc

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

    # -- reads ----------------------------------------------------------------

    async def resolve_run_id(self, run_id: str) -> str:
        """The full id of a run, given its id or a unique prefix of it."""

        async def q(conn: AsyncConnection) -> list[str]:
            exact = await conn.execute(select(schema.runs.c.id).where(schema.runs.c.id == run_id))
            if exact.first():
                return [run_id]
            pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = await conn.execute(select(schema.runs.c.id).where(schema.runs.c.id.like(pattern, escape="\\")).limit(5))
            return [r[0] for r in rows]

        matches = await self._read(q) if run_id else []
        if not matches:
            raise RunNotFound(run_id)
        if len(matches) > 1:
            raise BadInput(f"run id prefix {run_id!r} matches several runs ({', '.join(matches)}); give more characters")
        return matches[0]

    async def get_run(self, run_id: str) -> dict[str, Any]:
        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            stmt = (
                select(schema.runs, schema.run_plans.c.plan_json)
                .join(schema.run_plans, schema.run_plans.c.run_id == schema.runs.c.id)
                .where(schema.runs.c.id == run_id)
            )
            row = (await conn.execute(stmt)).mappings().first()
            return dict(row) if row else None

        row = await self._read(q)
        if row is None:
            raise RunNotFound(run_id)
        return row

    async def list_runs(self, limit: int = 100) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = select(schema.runs).order_by(schema.runs.c.created_at.desc(), schema.runs.c.id.desc()).limit(limit)
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def step_counts(self, run_ids: list[str]) -> dict[str, dict[str, int]]:
        """Per run, how many steps are in each status (for lists and progress)."""

        async def q(conn: AsyncConnection) -> dict[str, dict[str, int]]:
            stmt = (
                select(schema.steps.c.run_id, schema.steps.c.status, func.count())
                .where(schema.steps.c.run_id.in_(run_ids))
                .group_by(schema.steps.c.run_id, schema.steps.c.status)
            )
            out: dict[str, dict[str, int]] = {}
            for run_id, status, n in await conn.execute(stmt):
                out.setdefault(run_id, {})[status] = n
            return out

        return await self._read(q) if run_ids else {}

    async def get_steps(self, run_id: str) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = select(schema.steps).where(schema.steps.c.run_id == run_id).order_by(schema.steps.c.idx)
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def get_step(self, run_id: str, key: str) -> dict[str, Any] | None:
        async def q(conn: AsyncConnection) -> dict[str, Any] | None:
            stmt = select(schema.steps).where(schema.steps.c.run_id == run_id, schema.steps.c.key == key)
            row = (await conn.execute(stmt)).mappings().first()
            return dict(row) if row else None

        return await self._read(q)

    async def events_since(self, run_id: str | None, after_id: int = 0, limit: int = 10_000) -> list[Event]:
        """Events with id > ``after_id`` (of one run, or all runs), oldest first."""

        async def q(conn: AsyncConnection) -> list[Event]:
            stmt = select(schema.events).where(schema.events.c.id > after_id)
            if run_id is not None:
                stmt = stmt.where(schema.events.c.run_id == run_id)
            stmt = stmt.order_by(schema.events.c.id).limit(limit)
            return [row_to_event(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q)

    # -- leases ---------------------------------------------------------------

    async def take_lease(self, run_id: str, owner: str, host: str, pid: int, ttl_s: float, previous_owner: str | None) -> None:
        """Take the run's lease, provided ``previous_owner`` still holds it (compare-and-set)."""

        def extra(conn: Connection) -> None:
            cond = schema.runs.c.lock_owner.is_(None) if previous_owner is None else schema.runs.c.lock_owner == previous_owner
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
    def replan_extra(run_id: str, plan_json: str, removed: list[str], new_rows: list[dict[str, Any]]) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(update(schema.run_plans).where(schema.run_plans.c.run_id == run_id).values(plan_json=plan_json))
            if removed:
                conn.execute(delete(schema.steps).where(schema.steps.c.run_id == run_id, schema.steps.c.key.in_(removed),
                                                        schema.steps.c.status == "pending", schema.steps.c.attempts == 0))
            if new_rows:
                conn.execute(insert(schema.steps), new_rows)

        return extra

    # -- workers, claims and agent slots (a pool of processes on one database) ---------------

    async def claim_runs(self, owner: str, host: str, pid: int, ttl_s: float, limit: int) -> list[str]:
        """Take the leases of up to ``limit`` runs nobody drives (queued, or orphaned by an expired lease).

        ``FOR UPDATE SKIP LOCKED`` lets every worker claim at once without
        queueing on the same rows (SQLite serialises writers anyway and ignores it).
        """
        claimed: list[str] = []

        def extra(conn: Connection) -> None:
            now = time.time()
            runs = schema.runs
            candidates = (
                select(runs.c.id)
                .where(runs.c.status.in_(CLAIMABLE), or_(runs.c.lock_owner.is_(None), runs.c.locked_until < now),
                       # a plan nobody approved yet would only hold a worker's slot: claim it once approved
                       or_(runs.c.status != "awaiting_plan_approval", runs.c.proposal_json.is_not(None)))
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
                conn.execute(update(schema.workers).where(schema.workers.c.owner == owner)
                             .values(runs_claimed=schema.workers.c.runs_claimed + len(claimed)))

        await self.write(WriteBatch(extras=[extra]))
        return claimed

    async def register_worker(self, owner: str, name: str, host: str, pid: int) -> None:
        now = time.time()

        def extra(conn: Connection) -> None:
            conn.execute(insert(schema.workers).values(owner=owner, name=name, host=host, pid=pid, started_at=now,
                                                       heartbeat_at=now, runs_claimed=0))

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

    async def list_workers(self) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = (await conn.execute(select(schema.workers).order_by(schema.workers.c.started_at))).mappings().all()
            return [dict(r) for r in rows]

        return await self._read(q)

    async def acquire_slot(self, agent: str, limit: int, holder: str, run_id: str, ttl_s: float) -> int | None:
        """One of the agent's ``limit`` slots, held by ``holder`` until released or expired; None if all are taken."""
        got: list[int] = []
        seeded = (agent, limit) in self._seeded_slots

        def extra(conn: Connection) -> None:
            now = time.time()
            slots = schema.agent_slots
            if not seeded:  # the agent's slot rows exist once this process has made sure of it
                ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(slots)
                conn.execute(ins.values([{"agent": agent, "slot": i} for i in range(limit)]).on_conflict_do_nothing())
            free = (
                select(slots.c.agent, slots.c.slot)
                .where(slots.c.agent == agent, slots.c.slot < limit,
                       or_(slots.c.holder.is_(None), slots.c.expires_at < now))
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
                conn.execute(update(schema.agent_slots)
                             .where(schema.agent_slots.c.agent == agent, schema.agent_slots.c.slot == slot,
                                    schema.agent_slots.c.holder == holder)
                             .values(holder=None, run_id=None, expires_at=None))

        return extra

    @staticmethod
    def renew_slots_extra(holder: str, ttl_s: float) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(update(schema.agent_slots).where(schema.agent_slots.c.holder == holder)
                         .values(expires_at=time.time() + ttl_s))

        return extra

    # -- spans, feedback, per-agent summaries ---------------------------------------------

    async def spans_of(self, run_id: str) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = select(schema.spans).where(schema.spans.c.run_id == run_id).order_by(schema.spans.c.started_at, schema.spans.c.id)
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def feedback_of(self, run_id: str) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = select(schema.feedback).where(schema.feedback.c.run_id == run_id).order_by(schema.feedback.c.id)
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q)

    @staticmethod
    def feedback_extra(row: dict[str, Any]) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(insert(schema.feedback), [row])

        return extra

    async def agent_summary(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Per agent: attempts, failures, tokens (from spans) and feedback (up, down, rate)."""
        sp, fb = schema.spans, schema.feedback

        async def q(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
            failed = func.sum(case((sp.c.status == "failed", 1), else_=0))
            spans_q = select(sp.c.agent, func.count(), failed, func.sum(sp.c.prompt_tokens), func.sum(sp.c.completion_tokens)).group_by(sp.c.agent)
            up = func.sum(case((fb.c.rating == "up", 1), else_=0))
            down = func.sum(case((fb.c.rating == "down", 1), else_=0))
            fb_q = select(fb.c.agent, up, down).group_by(fb.c.agent)
            if run_id is not None:
                spans_q = spans_q.where(sp.c.run_id == run_id)
                fb_q = fb_q.where(fb.c.run_id == run_id)
            out: dict[str, dict[str, Any]] = {}
            for agent, attempts, failures, prompt, completion in await conn.execute(spans_q):
                out[agent] = _agent_entry(attempts, failures, prompt or 0, completion or 0)
            for agent, n_up, n_down in await conn.execute(fb_q):
                entry = out.setdefault(agent, _agent_entry(0, 0, 0, 0))
                total = (n_up or 0) + (n_down or 0)
                entry["feedback"] = {"up": n_up or 0, "down": n_down or 0, "rate": round((n_up or 0) / total, 4) if total else None}
            return dict(sorted(out.items()))

        return await self._read(q)

    # -- breakers -----------------------------------------------------------------------

    async def load_breakers(self, targets: list[str]) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = select(schema.breakers).where(schema.breakers.c.target.in_(targets))
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q) if targets else []

    @staticmethod
    def save_breaker_extra(row: dict[str, Any]) -> Callable[[Connection], None]:
        """An upsert: two processes saving a target's first state at once must not collide."""

        def extra(conn: Connection) -> None:
            values = {k: v for k, v in row.items() if k != "target"}
            ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(schema.breakers)
            conn.execute(ins.values(row).on_conflict_do_update(index_elements=["target"], set_=values))

        return extra

    # -- commands (actions from other processes) -------------------------------

    async def enqueue_command(self, run_id: str, kind: str, payload: dict[str, Any], user: str | None) -> int:
        ids: list[int] = []

        def extra(conn: Connection) -> None:
            result = conn.execute(
                insert(schema.commands).returning(schema.commands.c.id),
                [{"run_id": run_id, "kind": kind, "payload_json": json.dumps(payload), "created_by": user,
                  "created_at": time.time(), "state": "queued"}],
            )
            ids.append(result.scalar_one())
            notify(conn, COMMANDS_CHANNEL, run_id)  # wake the driving process now instead of at its next poll

        await self.write(WriteBatch(extras=[extra]))
        return ids[0]

    async def queued_commands(self, run_id: str) -> list[dict[str, Any]]:
        async def q(conn: AsyncConnection) -> list[dict[str, Any]]:
            stmt = (
                select(schema.commands)
                .where(schema.commands.c.run_id == run_id, schema.commands.c.state == "queued")
                .order_by(schema.commands.c.id)
            )
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self._read(q)

    async def get_command(self, command_id: int) -> dict[str, Any]:
        async def q(conn: AsyncConnection) -> dict[str, Any]:
            row = (await conn.execute(select(schema.commands).where(schema.commands.c.id == command_id))).mappings().one()
            return dict(row)

        return await self._read(q)

    @staticmethod
    def answer_command_extra(command_id: int, state: str, result: str) -> Callable[[Connection], None]:
        def extra(conn: Connection) -> None:
            conn.execute(
                update(schema.commands)
                .where(schema.commands.c.id == command_id, schema.commands.c.state == "queued")
                .values(state=state, result=result, answered_at=time.time())
            )

        return extra


def _agent_entry(attempts: int, failures: int, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "attempts": attempts, "failures": failures,
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "feedback": {"up": 0, "down": 0, "rate": None},
    }


def row_to_event(row: Any) -> Event:
    return Event(
        id=row["id"],
        run_id=row["run_id"],
        type=row["type"],
        step_key=row["step_key"],
        payload=json.loads(row["payload_json"] or "{}"),
        created_at=row["created_at"],
    )


def _prepare_sqlite_file(path: Path, create: bool) -> None:
    """A SQLite file's place: refuse a directory; create the parent only for commands that may create."""
    if path.is_dir():
        raise StoreError(f"database path {path} is a directory; give a file path")
    if not path.exists():
        if not create:
            raise StoreError(f"no loopdeck database at {path}; `loopdeck run`, `demo` or `submit` creates one "
                             "(or point --db / LOOPDECK_DB at an existing one)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for {path}: {exc.strerror or exc}") from None


def _connect_args(backend: str) -> dict[str, Any]:
    """Fail fast on a server that does not answer (asyncpg waits 60 s by default)."""
    return {"timeout": CONNECT_TIMEOUT_S} if backend == "postgresql" else {}


def _connect_problem(exc: BaseException) -> str:
    """What went wrong opening a database, in a few words, with any URL's password masked."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    if isinstance(exc, (DBAPIError, sqlite3.Error)):
        return mask_urls(describe_db_error(exc).split("\n")[0])
    if isinstance(exc, OSError):
        return mask_urls(exc.strerror or str(exc))
    return mask_urls(str(exc).split("\n")[0])
