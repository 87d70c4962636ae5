"""Group commit: one writer holds one connection and commits together what arrived together.

A commit per transition would cap a run at about a thousand transitions a
second; one transaction per group of concurrent writes keeps every transition
durable at a fraction of the cost. Callers ``await submit(batch)`` and publish
their events only after it returns, i.e. after their commit.

For SQLite the writer holds a synchronous connection and applies a small
group (``INLINE_ROWS`` rows and ``INLINE_TEXT`` characters of JSON at most,
no extras) right on the event loop, asking for the write lock without
waiting: the group is a few hundred microseconds of SQLite (WAL,
``synchronous=NORMAL``: no fsync per commit), less than the round trip to a
thread and back, which was about 40% of a chained step. A group that is
large, carries extras (a run's creation, a lease), or finds another process
holding the write lock goes to the writer's thread, which waits for the lock
up to the store's busy timeout; so does every group when the file is not in
WAL mode (a commit could then wait for readers). SQLite's automatic
checkpoint (copying the WAL into the database, with an fsync) would stall
the loop for milliseconds inside a commit; the writer's connection turns it
off. Every ``CHECKPOINT_GROUPS`` groups a passive checkpoint starts beside
the loop, on a second connection in the writer's thread, while groups go on
committing on the loop; once it is done, the next group goes to the thread,
which checkpoints the few frames appended meanwhile right after its commit,
so that the WAL starts over (a checkpoint beside running commits never
catches up with them by itself). So does the last group, at close. Other
databases use the async connection. All run the same ``apply_group``.

Step updates are compare-and-set (``WHERE status = expected AND attempts =
expected``). A group is applied with executemany; if any compare-and-set
misses, the group is rolled back and replayed batch by batch so that only the
stale batch fails (``StaleWrite``) and the others still commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, insert
from sqlalchemy.exc import DBAPIError

from core.errors import StaleWrite, StoreError
from core.store import schema
from core.store.batch import RUN_MUTABLE, STEP_MUTABLE, WriteBatch
from core.store.notify import EVENTS_CHANNEL, notify, send_pending

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("loopdeck.store")

_STEP_CAS = (
    schema.steps.update()
    .where(
        schema.steps.c.run_id == bindparam("b_run_id"),
        schema.steps.c.key == bindparam("b_key"),
        schema.steps.c.status == bindparam("b_status"),
        schema.steps.c.attempts == bindparam("b_attempts"),
    )
    .values({name: bindparam(name) for name in STEP_MUTABLE})
)
_RUN_UPDATE = (
    schema.runs.update()
    .where(schema.runs.c.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in RUN_MUTABLE})
)
_EVENT_INSERT = insert(schema.events).returning(schema.events.c.id, sort_by_parameter_order=True)
_EVENT_INSERT_PLAIN = insert(schema.events)
_SPAN_INSERT = insert(schema.spans)
_EVENT_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
INLINE_ROWS = 64  # the largest group applied on the event loop (a few hundred µs); larger ones go to the thread
INLINE_TEXT = 256_000  # nor more characters of inputs, outputs and payloads than this (an output may be megabytes)
CHECKPOINT_GROUPS = 100  # groups between WAL checkpoints (a group writes a few pages; SQLite's own is every 1,000)
CHECKPOINT_GROUPS_MAX = 4 * CHECKPOINT_GROUPS  # groups before a checkpoint still copying is waited for
CHECKPOINT_TEXT = 16_000_000  # nor more characters of JSON than this (outputs of ~250 kB each, inline)
EVENTS_LOCK_KEY = 0x6C6F6F70  # "loop": the advisory lock that orders event ids (PostgreSQL)


class GroupWriter:
    def __init__(self, engine: AsyncEngine | None, sync_engine: Engine | None = None, max_rows: int = 500) -> None:
        self._engine = engine
        self._sync_engine = sync_engine
        self._max_rows = max_rows
        self._queue: asyncio.Queue[tuple[WriteBatch, asyncio.Future[list[int]]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._sync_conn: Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._busy_timeout_ms = 0  # the store's: how long the thread waits for another process's write lock
        self._since_checkpoint = 0  # SQLite groups committed since the writer's last checkpoint
        self._text_since_checkpoint = 0  # characters the loop committed since the checkpoint beside it began
        self._beside: asyncio.Future[None] | None = None  # the checkpoint running beside the loop's commits
        self._beside_conn: list[Connection] = []  # its connection, opened by the thread when first needed
        self._inline_ok = False  # SQLite in WAL mode: a commit never waits for readers (else all go to the thread)
        self.groups = 0
        self.inline = 0  # groups applied on the event loop (SQLite)
        self.batches = 0

    async def start(self) -> None:
        if self._sync_engine is not None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopdeck-writer")
            self._sync_conn = await self._in_thread(self._sync_engine.connect)
            self._busy_timeout_ms, self._inline_ok = await self._in_thread(_prepare_inline, self._sync_conn)
        else:
            assert self._engine is not None
            self._conn = await self._engine.connect()
        self._task = asyncio.create_task(self._loop(), name="loopdeck-writer")

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def submit(self, batch: WriteBatch) -> list[int]:
        """Commit ``batch`` (possibly with others) and return the new event ids in order."""
        return await self.enqueue(batch)

    def enqueue(self, batch: WriteBatch) -> asyncio.Future[list[int]]:
        """Queue ``batch``; the future resolves with its event ids once committed.

        Futures resolve in commit order, so callbacks on them see commits in order.
        """
        if self._task is None or self._task.done():
            raise StoreError("the store is closed; open it again to write")
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((batch, future))
        return future

    async def close(self) -> None:
        if self._task is not None:
            await self._drain()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._abandon_queued()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        await self._beside_done()  # (the thread finishes it before it closes anything)
        if self._beside_conn:
            with contextlib.suppress(Exception):  # (nothing of it is left to lose: it only copied)
                await self._in_thread(_close_connection, self._beside_conn.pop())
        if self._sync_conn is not None:  # its last groups checkpointed, its pragmas gone with it (not pooled)
            await self._in_thread(_close_writer, self._sync_conn)
            self._sync_conn = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def _drain(self) -> None:
        """Until every queued batch is committed, or the writer has stopped (a loop-wide cancel at shutdown
        canceled it: what it left is never committed, and waiting for it would never end)."""
        assert self._task is not None
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait({joined, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()

    def _abandon_queued(self) -> None:
        """The writer stopped with batches queued: their callers' waits end (canceled), never hang."""
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            future.cancel()
            self._queue.task_done()

    async def _loop(self) -> None:
        while True:
            group = [await self._queue.get()]
            rows = group[0][0].size
            while rows < self._max_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                group.append(item)
                rows += item[0].size
            try:
                await self._commit_group(group)
            except asyncio.CancelledError:  # (whether a group in the thread committed is unknown: it is
                for _, future in group:  # abandoned as its callers are, and the next driver reads the store)
                    future.cancel()
                raise
            finally:
                for _ in group:
                    self._queue.task_done()

    async def _transaction(self, batches: list[WriteBatch]) -> list[int]:
        """Apply ``batches`` in one transaction and commit; roll back on any error."""
        if self._sync_conn is not None:
            self._since_checkpoint += 1
            due = self._since_checkpoint > CHECKPOINT_GROUPS and await self._checkpoint_due()
            text = _inline_text(batches) if self._inline_ok else None
            if text is not None and not due:
                try:
                    ids = _transaction_sync(self._sync_conn, batches)
                    self.inline += 1
                    self._text_since_checkpoint += text
                    return ids
                except DBAPIError as exc:  # another process writes: wait for it in the thread, off the loop
                    if not _busy(exc):
                        raise
            if due:  # (whether or not the checkpoint succeeds: the next is due in as many groups)
                self._since_checkpoint = 0
            return await self._in_thread(_transaction_waiting, self._sync_conn, batches, self._busy_timeout_ms, due)
        assert self._conn is not None
        async with self._conn.begin():
            return await self._conn.run_sync(apply_group, batches)

    async def _checkpoint_due(self) -> bool:
        """Whether this group goes to the thread to end a checkpoint (see the module docstring): past
        ``CHECKPOINT_GROUPS`` groups, in WAL mode, once the checkpoint started beside the loop is done.
        One still copying after ``CHECKPOINT_GROUPS_MAX`` groups, or once the loop has committed
        ``CHECKPOINT_TEXT`` characters since it began (a slow disk, big outputs), is waited for: the WAL
        grows while it copies. (Asked once ``CHECKPOINT_GROUPS`` have passed: no coroutine per group before.)"""
        if not self._inline_ok:
            return True
        if self._beside is None:  # (a future, not a task: a loop-wide cancel leaves it to ``close``)
            assert self._sync_engine is not None
            loop = asyncio.get_running_loop()
            self._beside = loop.run_in_executor(self._thread, _checkpoint_beside, self._sync_engine, self._beside_conn)
            self._text_since_checkpoint = 0  # (what the loop commits while it copies)
            return False
        bounded = self._since_checkpoint <= CHECKPOINT_GROUPS_MAX and self._text_since_checkpoint <= CHECKPOINT_TEXT
        if not self._beside.done() and bounded:
            return False
        await self._beside_done()
        return True

    async def _beside_done(self) -> None:
        """Wait for the checkpoint beside the loop; one that failed is logged, never a write's failure."""
        beside, self._beside = self._beside, None
        if beside is None:
            return
        try:
            await asyncio.shield(beside)  # (a writer canceled meanwhile leaves it to ``close``)
        except asyncio.CancelledError:
            self._beside = beside
            raise
        except Exception as exc:
            log.warning("a WAL checkpoint failed (the next one tries again): %s", exc)

    async def _commit_group(self, group: list[tuple[WriteBatch, asyncio.Future[list[int]]]]) -> None:
        self.groups += 1
        self.batches += len(group)
        try:
            ids = await self._transaction([batch for batch, _ in group])
        except StaleWrite as exc:
            if len(group) == 1:
                _fail(group[0][1], exc)
                return
            await self._replay_one_by_one(group)
            return
        except Exception as exc:
            for _, future in group:
                _fail(future, _translate(exc))
            return
        offset = 0
        for batch, future in group:
            n = len(batch.events)
            if not future.done():
                future.set_result(ids[offset : offset + n])
            offset += n

    async def _replay_one_by_one(self, group: list[tuple[WriteBatch, asyncio.Future[list[int]]]]) -> None:
        for batch, future in group:
            try:
                ids = await self._transaction([batch])
            except Exception as exc:
                _fail(future, _translate(exc))
            else:
                if not future.done():
                    future.set_result(ids)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _transaction_sync(conn: Connection, batches: list[WriteBatch]) -> list[int]:
    """One SQLite transaction, rolled back whole on any error: a COMMIT that fails leaves the driver's
    transaction open under SQLAlchemy's (ended) one, and the next group would commit this one's rows."""
    try:
        with conn.begin():
            ids = apply_group(conn, batches)
    except BaseException:
        send_pending(conn, committed=False)
        with contextlib.suppress(Exception):
            driver = conn.connection.dbapi_connection
            if driver is not None and driver.in_transaction:
                driver.rollback()
        raise
    send_pending(conn, committed=True)  # other processes woken once it is true (core.store.wakes)
    return ids


def _transaction_waiting(
    conn: Connection, batches: list[WriteBatch], busy_timeout_ms: int, checkpoint: bool
) -> list[int]:
    """In the writer's thread: the transaction, waiting up to ``busy_timeout_ms`` for another writer;
    then, with ``checkpoint``, a passive checkpoint (right after this connection's commit, as SQLite's
    automatic one: nothing is appended meanwhile, so it can finish and the WAL starts over)."""
    _busy_timeout(conn, busy_timeout_ms)
    try:
        ids = _transaction_sync(conn, batches)
    finally:
        _busy_timeout(conn, 0)
    if checkpoint:
        _checkpoint(conn)
    return ids


def _checkpoint(conn: Connection) -> None:
    """A passive WAL checkpoint; one that fails is logged, never the group's failure (it has committed)."""
    try:
        _sqlite_cursor(conn).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except Exception as exc:
        log.warning("a WAL checkpoint failed (the next one tries again): %s", exc)


def _checkpoint_beside(engine: Engine, held: list[Connection]) -> None:
    """In the writer's thread, while the loop goes on committing: a passive checkpoint on a connection of
    its own (``held``: opened once, closed with the writer); it copies what the WAL held when it began.
    SQLite runs it without the interpreter's lock, and it takes no lock a writer needs."""
    try:
        if not held:
            held.append(engine.connect())
    except Exception as exc:
        log.warning("a WAL checkpoint failed (the next one tries again): %s", exc)
        return
    _checkpoint(held[0])


def _close_writer(conn: Connection) -> None:
    """At close: checkpoint what this process wrote (another process may never write again, and SQLite
    checkpoints by itself only when the last connection closes), then close the driver's connection
    rather than pool it with the writer's pragmas."""
    _checkpoint(conn)
    _close_connection(conn)


def _close_connection(conn: Connection) -> None:
    conn.invalidate()
    conn.close()


def _prepare_inline(conn: Connection) -> tuple[int, bool]:
    """The writer's own connection: no waiting for the lock and no automatic checkpoint on the loop
    (see the module docstring). Returns the store's busy timeout, for the thread, and whether groups may
    commit on the loop: only in WAL mode (a file system without it keeps every commit in the thread)."""
    driver = conn.connection.dbapi_connection
    assert driver is not None
    wal = str(driver.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
    if wal:
        driver.execute("PRAGMA wal_autocheckpoint=0")
    return _busy_timeout(conn, 0), wal  # (the thread sets the store's timeout for each of its transactions)


def _busy_timeout(conn: Connection, ms: int) -> int:
    """Set the connection's SQLite busy timeout; returns the one it had."""
    driver = conn.connection.dbapi_connection
    assert driver is not None
    before = int(driver.execute("PRAGMA busy_timeout").fetchone()[0])
    driver.execute(f"PRAGMA busy_timeout={int(ms)}")
    return before


def _inline_text(batches: list[WriteBatch]) -> int | None:
    """The characters of text of a group cheap enough to apply on the event loop, else None: no extras (a
    run's creation may be thousands of rows), at most ``INLINE_ROWS`` rows and ``INLINE_TEXT`` characters
    (inputs, outputs, errors, payloads, a run's answer or proposal)."""
    rows = text = 0
    for batch in batches:
        if batch.extras:
            return None
        rows += batch.size
        for row in batch.steps:
            text += len(row["input_json"] or "") + len(row["output_json"] or "") + len(row["error"] or "")
        for row in batch.runs:
            text += len(row["result_json"] or "") + len(row["proposal_json"] or "") + len(row["reason"] or "")
        for row in batch.events:
            text += len(row["payload_json"])
        for row in batch.spans:
            text += len(row["attributes_json"] or "") + len(row["error"] or "")
    return text if rows <= INLINE_ROWS and text <= INLINE_TEXT else None


def _busy(exc: DBAPIError) -> bool:
    """SQLite said another connection holds the lock (``database is locked``). In WAL mode only the
    group's first write can meet it, and the transaction was rolled back whole (``_transaction_sync``):
    the thread may apply the group again."""
    return "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()


def apply_group(conn: Connection, batches: list[WriteBatch]) -> list[int]:
    """Write every batch: extras first, then step CAS updates, run updates, events (ids returned)."""
    for batch in batches:
        for extra in batch.extras:
            extra(conn)
    step_rows = [row for batch in batches for row in batch.steps]
    if step_rows and _executemany(conn, _STEP_CAS, step_rows, count=True) != len(step_rows):
        raise StaleWrite(_stale_message(step_rows) if len(batches) == 1 else "a step in the group changed underneath")
    span_rows = [row for batch in batches for row in batch.spans]
    if span_rows:
        _executemany(conn, _SPAN_INSERT, span_rows)
    latest_run_rows = {row["b_id"]: row for batch in batches for row in batch.runs}  # the last write wins
    if latest_run_rows:
        _executemany(conn, _RUN_UPDATE, list(latest_run_rows.values()))
    event_rows = [row for batch in batches for row in batch.events]
    if not event_rows:
        return []
    if conn.dialect.name == "postgresql":
        return _insert_events_postgresql(conn, event_rows)
    if conn.dialect.name != "sqlite":
        return [row[0] for row in conn.execute(_EVENT_INSERT, event_rows).all()]
    # SQLite: this transaction holds the write lock and AUTOINCREMENT hands out
    # consecutive ids, so the new ids end at the table's sequence value.
    _executemany(conn, _EVENT_INSERT_PLAIN, event_rows)
    last = _sqlite_cursor(conn).execute(_EVENT_SEQ).fetchone()[0]  # (the driver's: see _executemany)
    for run_id in {row["run_id"] for row in event_rows}:  # followers in other processes (sent once committed)
        notify(conn, EVENTS_CHANNEL, f"{run_id} {last}")
    return list(range(last - len(event_rows) + 1, last + 1))


def _insert_events_postgresql(conn: Connection, event_rows: list[dict[str, Any]]) -> list[int]:
    """Insert events with ids in commit order, and tell listeners (delivered when the transaction commits).

    A sequence hands out ids when rows are inserted, not when they commit: a
    transaction holding id 5 may commit after one holding id 6, and a reader
    "since 5" would never see 5. Taking one transaction-scoped advisory lock
    before the insert makes event-writing transactions take turns from insert
    to commit, so ids become visible in order. The lock is held for one group
    commit (a few ms), by one writer per process.
    """
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({EVENTS_LOCK_KEY})")
    ids = [row[0] for row in conn.execute(_EVENT_INSERT, event_rows).all()]
    for run_id in sorted({row["run_id"] for row in event_rows}):
        notify(conn, EVENTS_CHANNEL, f"{run_id} {ids[-1]}")
    return ids


_compiled_cache: dict[tuple[int, str, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}


def _executemany(conn: Connection, stmt: Any, rows: list[dict[str, Any]], count: bool = False) -> int:
    """executemany of a Core statement compiled once per dialect; with ``count``, returns the rows matched.

    The hot path writes the same three statements thousands of times a second;
    handing the driver positional tuples skips SQLAlchemy's per-row parameter
    processing, which cost more than SQLite itself. Dialects with named
    parameters take the ordinary Core path.
    """
    dialect = conn.dialect
    if not dialect.positional:
        return conn.execute(stmt, rows).rowcount
    columns = tuple(rows[0])
    key = (id(stmt), dialect.name, columns)
    cached = _compiled_cache.get(key)
    if cached is None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))  # an insert names only what it sets
        cached = (compiled.string, tuple(compiled.positiontup or ()))
        _compiled_cache[key] = cached
    sql, names = cached
    params = _positional(rows, names)
    if dialect.name == "sqlite":  # the driver's cursor, in the same transaction: SQLAlchemy's execution context
        cursor = _sqlite_cursor(conn)  # cost more per group than SQLite's own work
        try:
            cursor.executemany(sql, params)
            return int(cursor.rowcount)  # (sqlite3 sums an executemany's changes)
        except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would have wrapped it (locked, corrupt, ...)
            raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
    if count:  # asyncpg's executemany reports no row counts: one statement each
        return sum(conn.exec_driver_sql(sql, one).rowcount for one in params)
    return conn.exec_driver_sql(sql, params).rowcount


def _positional(rows: list[dict[str, Any]], names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Each row's values in ``names`` order (a name a row lacks is None). WriteBatch gives every row of a
    statement the same columns, so one ``itemgetter`` picks them all."""
    if len(names) > 1:  # (``itemgetter`` of one name gives a value, not a tuple)
        with contextlib.suppress(KeyError):
            return list(map(itemgetter(*names), rows))
    return [tuple(map(row.get, names)) for row in rows]


def _sqlite_cursor(conn: Connection) -> Any:
    """A cursor of the driver's connection under ``conn`` (checked out: it is in a transaction)."""
    driver = conn.connection.dbapi_connection
    assert driver is not None
    return driver.cursor()


def _stale_message(rows: list[dict[str, Any]]) -> str:
    keys = ", ".join(f'"{row["b_key"]}"' for row in rows)
    return (
        f"step {keys} changed in the database since this process read it "
        f"(expected status and attempt did not match); nothing was written"
    )


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, DBAPIError):
        err = StoreError(describe_db_error(exc))
        err.__cause__ = exc
        return err
    return exc


def describe_db_error(exc: BaseException) -> str:
    """A sentence about a database error that says what to do."""
    text = str(getattr(exc, "orig", None) or exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return f"the database is locked by another process and stayed busy ({text}); retry, or stop the other writer"
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return f"the database file is not a loopdeck database or is corrupt ({text}); point --db at another file"
    if "readonly" in low or "read-only" in low:
        return f"the database is read-only ({text}); check the file's permissions"
    return f"database error: {text}"
