"""The store: compare-and-set writes, group commit, migrations, and clear errors."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from core import Orchestrator, StaleWrite, StoreError, validate_plan
from core.engine.run_state import new_step_row
from core.store import Store, migrate, schema
from core.store import writer as writer_module
from core.store.batch import WriteBatch
from core.store.records import STEP_COLUMNS, StepRecord
from tests.conftest import plan

ON_POSTGRES = True  # every test here runs on SQLite and on PostgreSQL (tests/conftest.py)


async def _run_with_one_step(orch) -> tuple[str, dict]:
    p = plan([{"key": "a"}])
    run_id = await orch.create_run(p)
    return run_id, new_step_row(run_id, 0, p.steps[0], "sim")  # the row as stored: pending, no attempt


async def test_a_compare_and_set_that_misses_writes_nothing(orch):
    run_id, row = await _run_with_one_step(orch)
    stale = WriteBatch()
    stale.step(run_id, "a", "running", 0, {**row, "status": "succeeded"})  # it is pending, not running
    stale.event(run_id, "step_succeeded", "a", {}, time.time())
    before = await orch.store.events_since(run_id)
    with pytest.raises(StaleWrite, match='step "a" changed in the database'):
        await orch.store.write(stale)
    assert (await orch.store.get_steps(run_id))[0].status == "pending"
    assert await orch.store.events_since(run_id) == before


async def test_in_a_group_only_the_stale_batch_fails_and_the_others_commit(orch):
    run_id, row = await _run_with_one_step(orch)
    good, stale = WriteBatch(), WriteBatch()
    good.step(run_id, "a", "pending", 0, {**row, "status": "running", "attempts": 1})
    good.event(run_id, "step_started", "a", {"attempt": 1}, time.time())
    stale.step(run_id, "a", "pending", 0, {**row, "status": "skipped"})
    results = await asyncio.gather(orch.store.write(good), orch.store.write(stale), return_exceptions=True)
    assert isinstance(results[0], list) and len(results[0]) == 1
    assert isinstance(results[1], StaleWrite)
    assert (await orch.store.get_steps(run_id))[0].status == "running"


async def test_concurrent_writes_share_transactions_and_get_increasing_ids(orch):
    run_id, _ = await _run_with_one_step(orch)
    groups_before = orch.store.writer.groups

    async def one(i: int) -> list[int]:
        batch = WriteBatch()
        batch.event(run_id, "note", None, {"i": i}, time.time())
        return await orch.store.write(batch)

    ids = [i[0] for i in await asyncio.gather(*(one(i) for i in range(200)))]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert orch.store.writer.groups - groups_before < 50  # grouped, not one commit each
    events = await orch.store.events_since(run_id, ids[0] - 1)
    assert [e.payload["i"] for e in events] == list(range(200))


def test_a_step_record_is_read_from_every_column_of_the_steps_table_in_its_field_order():
    assert sorted(STEP_COLUMNS) == sorted(c.name for c in schema.steps.c)
    assert [name.removesuffix("_json") for name in STEP_COLUMNS] == [f.name for f in dataclasses.fields(StepRecord)]


async def test_a_step_reads_back_as_it_was_written(orch):
    run_id = await orch.create_run(plan([{"key": "a", "input": {"n": 1}, "title": "the a"}, {"key": "b"}]))
    await orch.drive(run_id)
    a = await orch.store.get_step(run_id, "a")
    assert a is not None and (a.key, a.idx, a.title, a.status.value, a.attempts) == ("a", 0, "the a", "succeeded", 1)
    assert a.input == {"n": 1} and a.started_at is not None and a.ended_at >= a.started_at and a.error is None
    assert await orch.store.get_steps(run_id, ["b"]) == [await orch.store.get_step(run_id, "b")]


async def test_events_since_resumes_after_an_id(orch):
    run_id = await orch.create_run(plan([{"key": "a"}]))
    await orch.drive(run_id)
    events = await orch.store.events_since(run_id)
    later = await orch.store.events_since(run_id, events[2].id)
    assert later == events[3:]


def _first_schema_db(path) -> None:
    """A database as the first release wrote it: schema revision 0001 and one finished run."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        migrate.upgrade(conn, "0001")
        now = time.time()
        plan_json = validate_plan({"goal": "old", "steps": [{"key": "a"}]}).model_dump_json()
        conn.execute(
            text(
                "INSERT INTO runs (id, goal, status, plan_json, prompt_tokens, completion_tokens,"
                " created_at, updated_at)"
                " VALUES ('old-run', 'old', 'succeeded', :plan, 5, 6, :now, :now)"
            ),
            {"plan": plan_json, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO steps (run_id, key, idx, title, type, agent, status, attempts,"
                " prompt_tokens, completion_tokens)"
                " VALUES ('old-run', 'a', 0, 'a', 'reasoning', 'sim', 'succeeded', 1, 5, 6)"
            )
        )
    engine.dispose()


async def test_an_older_database_is_upgraded_on_open(tmp_path):
    path = tmp_path / "old.db"
    _first_schema_db(path)
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        run = await store.get_run("old-run")
        assert run.goal == "old" and run.lease is None
        assert (await store.get_steps("old-run"))[0].status == "succeeded"
    finally:
        await store.close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        assert "commands" in inspect(conn).get_table_names()
    engine.dispose()


def _schema_of(path) -> dict:
    """Every table as SQLite and SQLAlchemy see it: columns, keys, indexes, constraints, AUTOINCREMENT."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        seen, sql = inspect(conn), dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master").all())
        schema = {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c["default"], c["primary_key"])
                    for c in seen.get_columns(table)
                ],
                "primary key": seen.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], i["column_names"], i["unique"]) for i in seen.get_indexes(table)),
                "unique": sorted(u["column_names"] for u in seen.get_unique_constraints(table)),
                "foreign keys": sorted(
                    (f["constrained_columns"], f["referred_table"], f["referred_columns"], f["options"])
                    for f in seen.get_foreign_keys(table)
                ),
                "checks": sorted(c["sqltext"] for c in seen.get_check_constraints(table)),
                "autoincrement": "AUTOINCREMENT" in (sql.get(table) or ""),
            }
            for table in seen.get_table_names()
        }
        revision = migrate.current_revision(conn)
    engine.dispose()
    return {"tables": schema, "revision": revision}


async def test_a_new_file_gets_the_schema_the_migrations_build_without_alembic(tmp_path):
    from alembic import command

    migrated = tmp_path / "migrated.db"
    engine = create_engine(f"sqlite:///{migrated}")
    with engine.begin() as conn:  # every migration, one after another, as an older database is upgraded
        command.upgrade(migrate._config(conn), "head")
    engine.dispose()
    created = tmp_path / "created.db"
    store = await Store.open(str(created))
    await store.close()
    assert _schema_of(created) == _schema_of(migrated)
    assert _schema_of(created)["revision"] == migrate.head_revision()
    opened = subprocess.run(
        [sys.executable, "-c", OPEN_NEW, str(tmp_path / "fresh.db")], capture_output=True, text=True, timeout=60
    )
    assert opened.stdout.strip() == "alembic loaded: False", opened.stderr


OPEN_NEW = """
import asyncio, sys
from core.store import Store

async def main():
    store = await Store.open(sys.argv[1])
    await store.close()

asyncio.run(main())
print("alembic loaded:", "alembic" in sys.modules)
"""


def test_the_newest_revision_read_from_the_file_names_is_alembics_head():
    assert migrate.head_revision() == migrate.alembic_head_revision()


async def test_a_database_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "new.db"
    store = await Store.open(str(path))
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="schema revision 9999, newer than this loopdeck knows"):
        await Store.open(str(path))


async def test_a_corrupt_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a loopdeck database or is corrupt"):
        await Store.open(str(path))


async def test_a_locked_database_gets_a_clear_error(tmp_path):
    path = tmp_path / "locked.db"
    store = await Store.open(str(path))
    await store.close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            store = await Store.open(str(path), busy_timeout_ms=100)
            try:
                note = WriteBatch()
                note.event("x", "note", None, {}, time.time())
                await store.write(note)
            finally:
                await store.close()
    finally:
        holder.rollback()
        holder.close()


async def test_a_small_group_commits_on_the_loop_and_waits_off_it_while_another_process_writes(tmp_path):
    path = tmp_path / "shared.db"
    store = await Store.open(str(path))
    try:
        note = WriteBatch()
        note.event("r", "note", None, {"n": 1}, time.time())
        await store.write(note)
        assert store.writer.inline == 1  # no hop to the writer's thread

        holder = sqlite3.connect(path, check_same_thread=False)  # another process's writer, holding the lock
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.3, holder.commit)
        second = WriteBatch()
        second.event("r", "note", None, {"n": 2}, time.time())
        started = time.perf_counter()
        await store.write(second)  # refused on the loop at once, then waited for in the thread
        waited = time.perf_counter() - started
        ticking.cancel()
        holder.close()
        assert waited >= 0.25 and ticks >= 10  # the loop went on while the write waited for the lock
        assert store.writer.inline == 1
        assert [e.payload["n"] for e in await store.events_since("r", 0)] == [1, 2]
        third = WriteBatch()
        third.event("r", "note", None, {"n": 3}, time.time())
        await store.write(third)
        assert store.writer.inline == 2  # and back on the loop once the lock is free
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_and_starts_over_while_the_writer_writes(tmp_path):
    path = tmp_path / "busy.db"
    store = await Store.open(str(path))
    try:
        for i in range(1000):  # ~13 MB of WAL if nothing checkpointed it (the loop's connection never does)
            note = WriteBatch()
            note.event("r", "note", None, {"n": i, "pad": "x" * 200}, time.time())
            await store.write(note)
        assert store.writer.inline > 900
        assert (tmp_path / "busy.db-wal").stat().st_size < 7_000_000  # (~13 MB without; 400 groups: 5.2 MB)
    finally:
        await store.close()


async def notes(store: Store, count: int) -> None:
    for i in range(count):
        note = WriteBatch()
        note.event("r", "note", None, {"n": i, "pad": "x" * 200}, time.time())
        await store.write(note)


async def test_the_checkpoint_runs_beside_the_loops_commits_and_the_wal_still_starts_over(tmp_path, monkeypatch):
    store = await Store.open(str(tmp_path / "beside.db"))
    real = writer_module._sqlite_cursor
    beside: list[tuple[int, int]] = []  # (groups the loop committed while it copied, frames it copied)

    class Slow:  # a disk that takes 5 ms to copy: ~100 groups of ~50 µs could commit meanwhile
        def __init__(self, conn):
            self.conn, self.cursor = conn, real(conn)

        def execute(self, sql, *args):
            if "wal_checkpoint" not in sql or self.conn is store.writer._sync_conn:
                return self.cursor.execute(sql, *args)  # (the writer's own: the few frames left, after a commit)
            before = store.writer.inline
            time.sleep(0.005)
            rows = self.cursor.execute(sql, *args).fetchall()
            beside.append((store.writer.inline - before, rows[0][2]))
            return iter(rows)

        def __getattr__(self, name):
            return getattr(self.cursor, name)

    monkeypatch.setattr(writer_module, "_sqlite_cursor", Slow)
    try:
        await notes(store, 1000)
        assert max(meanwhile for meanwhile, _ in beside) > 0  # the loop went on committing while it copied
        assert all(copied > 0 for _, copied in beside)  # and it copied (the thread's follow-up only the rest)
        assert (tmp_path / "beside.db-wal").stat().st_size < 7_000_000  # the WAL started over (~13 MB without)
        assert len(await store.events_since("r", 0, limit=2000)) == 1000
    finally:
        await store.close()


async def test_a_checkpoint_slower_than_its_bound_is_waited_for(tmp_path, monkeypatch):
    store = await Store.open(str(tmp_path / "bound.db"))
    real = writer_module._checkpoint_beside
    meanwhile: list[int] = []

    def slow(engine, held):  # a disk so slow that the WAL would grow for as long as the loop writes
        before = store.writer.inline
        deadline = time.monotonic() + 10
        while store.writer._since_checkpoint <= writer_module.CHECKPOINT_GROUPS_MAX and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)  # (the loop, unless it waits, commits hundreds more meanwhile)
        real(engine, held)
        meanwhile.append(store.writer.inline - before)

    monkeypatch.setattr(writer_module, "_checkpoint_beside", slow)
    try:
        await notes(store, writer_module.CHECKPOINT_GROUPS_MAX + 50)
        assert meanwhile and meanwhile[0] <= writer_module.CHECKPOINT_GROUPS_MAX - writer_module.CHECKPOINT_GROUPS
    finally:
        await store.close()


async def test_a_checkpoint_is_waited_for_once_the_loop_has_committed_its_bound_of_text(tmp_path, monkeypatch):
    store = await Store.open(str(tmp_path / "text.db"))
    real = writer_module._checkpoint_beside
    monkeypatch.setattr(writer_module, "CHECKPOINT_TEXT", 200_000)  # (16 MB: outputs of a quarter megabyte)
    committed_while_copying: list[int] = []

    def slow(engine, held):  # a copy that lasts until the loop has committed its bound of text, and then some
        deadline = time.monotonic() + 10
        while store.writer._text_since_checkpoint <= 200_000 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)  # (the loop, unless it waits, commits hundreds more groups meanwhile)
        committed_while_copying.append(store.writer._text_since_checkpoint)
        real(engine, held)

    monkeypatch.setattr(writer_module, "_checkpoint_beside", slow)
    try:
        for i in range(writer_module.CHECKPOINT_GROUPS + 100):
            note = WriteBatch()
            note.event("r", "note", None, {"n": i, "output": "x" * 10_000}, time.time())  # ~10 kB a group
            await store.write(note)
        # the loop went on committing while it copied (counted from when it began, not from the checkpoint
        # before: 1 MB by then), up to its bound and one group more, far short of its 300 groups' (3 MB)
        assert committed_while_copying and 200_000 < committed_while_copying[0] <= 200_000 + 10_100
    finally:
        await store.close()


async def test_a_store_whose_writer_a_shutdown_canceled_closes_and_its_waiting_writers_end(tmp_path):
    """A loop-wide cancel (shutdown code canceling every task) can stop the writer with batches queued:
    closing the store must not wait for them for ever, nor leave their callers waiting."""
    store = await Store.open(str(tmp_path / "shutdown.db"))

    async def write(i: int) -> None:
        note = WriteBatch()
        note.event("r", "note", None, {"n": i}, time.time())
        await store.write(note)

    writes = [asyncio.ensure_future(write(i)) for i in range(200)]
    await asyncio.sleep(0)  # (queued)
    store.writer._task.cancel()  # the writer, canceled with the rest; these callers are not
    await asyncio.wait_for(store.close(), 10)  # (it waited for ever)
    done = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 10)
    assert all(result is None or isinstance(result, asyncio.CancelledError) for result in done)
    assert any(isinstance(result, asyncio.CancelledError) for result in done)  # abandoned, not hung


async def test_a_checkpoint_beside_the_loop_that_fails_fails_no_write(tmp_path, monkeypatch, caplog):
    store = await Store.open(str(tmp_path / "failing.db"))

    def failing(engine, held):  # (an error it did not catch itself: the writer's own guard)
        raise RuntimeError("cannot open a second connection")

    monkeypatch.setattr(writer_module, "_checkpoint_beside", failing)
    try:
        await notes(store, 3 * writer_module.CHECKPOINT_GROUPS)
        assert len(await store.events_since("r", 0, limit=1000)) == 3 * writer_module.CHECKPOINT_GROUPS
        assert "cannot open a second connection" in caplog.text
        await notes(store, 1)  # and it goes on writing
    finally:
        await store.close()  # (and closes)


async def test_short_lived_writers_checkpoint_what_they_wrote_while_a_reader_stays(tmp_path):
    path = str(tmp_path / "shared.db")
    reader = await Store.open(path)  # a dashboard, open all along (its connections keep the WAL from closing)
    try:
        await reader.events_since("r", 0)
        for _ in range(5):  # `loopdeck run`s of fewer groups than a checkpoint's period, one after another
            writer = await Store.open(path)
            for i in range(90):
                note = WriteBatch()
                note.event("r", "note", None, {"n": i, "pad": "x" * 200}, time.time())
                await writer.write(note)
            await writer.close()
        assert (tmp_path / "shared.db-wal").stat().st_size < 2_500_000  # ~5.6 MB and growing without
        assert len(await reader.events_since("r", 0, limit=1000)) == 450
    finally:
        await reader.close()


async def test_a_checkpoint_that_fails_fails_no_write(tmp_path, monkeypatch, caplog):
    store = await Store.open(str(tmp_path / "c.db"))
    real = writer_module._sqlite_cursor

    class Refusing:
        def __init__(self, conn):
            self.cursor = real(conn)

        def execute(self, sql, *args):
            if "wal_checkpoint" in sql:
                raise sqlite3.OperationalError("disk I/O error")
            return self.cursor.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.cursor, name)

    monkeypatch.setattr(writer_module, "_sqlite_cursor", Refusing)
    try:
        groups = writer_module.CHECKPOINT_GROUPS_MAX + 5  # (a checkpoint still copying by then is waited for)
        for i in range(groups):
            note = WriteBatch()
            note.event("r", "note", None, {"n": i}, time.time())
            await store.write(note)  # the groups past the period are checkpointed (and fail): still written
        assert len(await store.events_since("r", 0, limit=groups)) == groups
        assert "a WAL checkpoint failed" in caplog.text
        assert store.writer.inline >= groups - 5  # and the writer went back to the loop
    finally:
        await store.close()


def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path):
    path = tmp_path / "rollback.db"
    engine = create_engine(f"sqlite+pysqlite:///{path}")  # a rollback journal: readers block a commit
    with engine.begin() as conn:
        migrate.upgrade(conn, create=True)
    conn = engine.connect()
    driver = conn.connection.dbapi_connection
    driver.execute("PRAGMA busy_timeout=0")
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchall()  # a shared lock held: the commit cannot finish
    note = WriteBatch()
    note.event("r", "note", None, {}, time.time())
    try:
        with pytest.raises(DBAPIError, match="locked"):
            writer_module._transaction_sync(conn, [note])
        assert not driver.in_transaction  # rolled back: the next group commits only its own rows
    finally:
        reader.rollback()
        reader.close()
    writer_module._transaction_sync(conn, [note])
    assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
    conn.close()
    engine.dispose()


async def test_a_directory_is_not_a_database(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        await Store.open(str(tmp_path))


async def test_agent_slots_are_limited_released_and_expire(db_url):
    store = await Store.open(db_url)
    try:
        got = [await store.acquire_slot("api", 2, f"holder{i}", "run", 30.0) for i in range(3)]
        assert sorted(got[:2]) == [0, 1] and got[2] is None  # two slots, the third asker waits
        await store.write(WriteBatch(extras=[store.release_slots_extra("holder0", [("api", got[0])])]))
        assert await store.acquire_slot("api", 2, "holder2", "run", 30.0) == got[0]
        # a holder that stopped renewing loses its slot when it expires
        assert await store.acquire_slot("slow", 1, "dead", "run", 0.05) == 0
        assert await store.acquire_slot("slow", 1, "alive", "run", 30.0) is None
        await asyncio.sleep(0.1)
        assert await store.acquire_slot("slow", 1, "alive", "run", 30.0) == 0
    finally:
        await store.close()


async def test_claims_take_queued_and_orphaned_runs_once(db_url):
    store = await Store.open(db_url)
    orch = Orchestrator(store, user="t", lease_ttl_s=0.05)
    try:
        ids = [await orch.create_run(plan([{"key": "a"}])) for _ in range(3)]
        first = await store.claim_runs("w1", "h", 1, 0.05, 2)
        second = await store.claim_runs("w2", "h", 2, 30.0, 5)
        assert sorted(first) == sorted(ids[:2]) and second == ids[2:]  # oldest first, none twice
        await asyncio.sleep(0.1)  # w1 went silent: its leases expire, its runs are orphaned
        assert sorted(await store.claim_runs("w3", "h", 3, 30.0, 5)) == sorted(ids[:2])
    finally:
        await store.close()


SLOW_READ = """
import asyncio, sys
from core.store import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    for _ in range(3):
        count = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2e6) SELECT count(*) FROM c"
        slow = asyncio.ensure_future(store._read(lambda conn: conn.exec_driver_sql(count)))
        await asyncio.sleep(0.1)
        slow.cancel()  # a reader that leaves mid-query: a dashboard closing, a timeout
    await store.close()

asyncio.run(main())
print("closed")
"""


def test_readers_cancelled_mid_query_never_hang_the_event_loops_shutdown(tmp_path):
    """Cancelled mid-query, SQLAlchemy used to invalidate the connection and close it in a task that, with
    aiosqlite, could wait for ever: asyncio.run's shutdown hung on it (a dashboard test's teardown did)."""
    result = subprocess.run(
        [sys.executable, "-c", SLOW_READ, str(tmp_path / "slow.db")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "closed"


async def test_get_steps_reads_only_the_keys_asked_for_in_plan_order(orch):
    from tests.conftest import plan

    run_id = await orch.create_run(plan([{"key": "a"}, {"key": "b"}, {"key": "c"}]))
    assert [s.key for s in await orch.store.get_steps(run_id, ["c", "a"])] == ["a", "c"]
    assert [s.key for s in await orch.store.get_steps(run_id, [])] == []
    assert [s.key for s in await orch.store.get_steps(run_id)] == ["a", "b", "c"]


class _LockedAtFirst:
    """A cursor whose switch to WAL finds the file locked ``times`` times, as one of several processes
    opening a new file at once does (SQLite says so at once, whatever the busy timeout)."""

    def __init__(self, times: int) -> None:
        self.times, self.tries, self.executed = times, 0, []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)
        if sql == "PRAGMA journal_mode=WAL":
            self.tries += 1
            if self.tries <= self.times:
                raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


def test_the_switch_to_wal_is_tried_again_while_another_opener_makes_it():
    from core.store.store import _sqlite_pragmas

    cursor = _LockedAtFirst(times=3)
    _sqlite_pragmas(5000)(type("Conn", (), {"cursor": lambda self: cursor})(), None)
    assert cursor.tries == 4 and cursor.executed[-1] == "PRAGMA synchronous=NORMAL"


def test_the_switch_to_wal_gives_up_at_the_busy_timeout():
    from core.store.store import _sqlite_pragmas

    cursor = _LockedAtFirst(times=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _sqlite_pragmas(50)(type("Conn", (), {"cursor": lambda self: cursor})(), None)
    assert cursor.tries >= 2  # tried again within the 50 ms, then the error stands


async def test_a_snapshot_reads_its_parts_at_once_or_in_turn_and_a_steps_context_reads_the_kept_plan(orch):
    """Reads at once on SQLite, one after another on PostgreSQL: the same snapshot either way; what is
    not asked for is left out; a step's context reads the plan's outline kept (``Store.plan_outline``)."""
    agents = {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [3, 2]}}
    run_id = await orch.create_run(plan([{"key": "a"}, {"key": "b", "depends_on": ["a"]}], agents=agents))
    await orch.drive(run_id)
    whole = await orch.snapshot(run_id)
    assert [s["step"] for s in whole["spans"]] == ["a", "b"] and whole["events"][-1]["type"] == "run_ended"
    light = await orch.snapshot(run_id, spans=False, events=False)
    assert light == {k: v for k, v in whole.items() if k not in ("spans", "events")}
    snap, events = await orch.snapshot_and_events(run_id)  # (the dashboard's: its events as records)
    assert snap == light and [e.to_json() for e in events] == whole["events"]
    assert [c["key"] for c in await orch.step_context(run_id, "b")] == ["a"]
    assert await orch.store.plan_outline(run_id) is await orch.store.plan_outline(run_id)
