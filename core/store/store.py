"""The store: SQLAlchemy 2 over SQLite (the default) or PostgreSQL (async), split by aggregate.

``Store`` is the facade; each group of queries lives in a module of its own
(runs and leases, steps, events, commands, the cluster's workers and slots,
history, breakers), reads return typed records (``records.py``), and writes of
the hot path go through the group-commit writer (``writer.py``); on SQLite,
reads run in reader threads (``base.py``) and small groups of writes on the
event loop. Opening a store applies migrations, so an older database is
upgraded in place. Library errors are translated to ``StoreError`` with a
sentence that says what to do.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from core.config import display_url, mask_urls, resolve_db_url, sqlite_path
from core.errors import BadInput, StoreError
from core.store import migrate
from core.store.breakers import BreakerQueries
from core.store.cluster import ClusterQueries
from core.store.commands import CommandQueries
from core.store.events import EventQueries
from core.store.history import HistoryQueries
from core.store.runs import RunQueries
from core.store.steps import StepQueries
from core.store.tool_calls import ToolCallQueries
from core.store.writer import describe_db_error

CONNECT_TIMEOUT_S = 10.0


WAL_RETRY_S = 0.005  # between tries of the switch to WAL while another connection makes it


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        _switch_to_wal(cur, busy_timeout_ms)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


def _switch_to_wal(cur: Any, busy_timeout_ms: int) -> None:
    """``PRAGMA journal_mode=WAL``, tried again until the busy timeout while it says the file is locked.

    On a new file several processes open at once, the switch fails at once with "database is locked"
    whatever the busy timeout (SQLite calls no busy handler there): 10 processes racing on a new file,
    without a retry, failed in 12 of 40 trials here; with it, in none.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # (sqlite3's, or the async driver's adaptation of it)
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_RETRY_S)


class Store(
    RunQueries,
    StepQueries,
    EventQueries,
    CommandQueries,
    ClusterQueries,
    HistoryQueries,
    BreakerQueries,
    ToolCallQueries,
):
    """One database, every query loopdeck makes of it."""

    @classmethod
    async def open(
        cls, url: str | None = None, *, migrate_schema: bool = True, busy_timeout_ms: int = 5000, create: bool = True
    ) -> Store:
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
        is_sqlite = parsed.get_backend_name() == "sqlite"
        pragmas = _sqlite_pragmas(busy_timeout_ms)
        engine, sync_engine = None, None
        try:
            if is_sqlite:  # the standard library's driver, in threads (see base.py)
                sync_engine = create_engine(parsed.set(drivername="sqlite+pysqlite"))
                sa_event.listen(sync_engine, "connect", pragmas)
            else:
                from sqlalchemy.ext.asyncio import create_async_engine

                engine = create_async_engine(url, connect_args=_connect_args(parsed.get_backend_name()))
        except (ArgumentError, ImportError) as exc:
            raise BadInput(f"cannot use database URL {shown}: {mask_urls(str(exc))}") from exc
        store = cls(engine, url, sync_engine)
        store.on_connect = pragmas if is_sqlite else None
        try:
            if migrate_schema and is_sqlite:
                revision = None if path is None else migrate.sqlite_revision(path, busy_timeout_ms)
                if revision is None and path is not None and not create:  # refused without a single write
                    await asyncio.to_thread(migrate.refuse_unversioned_sqlite, path)
                if path is None or revision != migrate.head_revision():
                    sync_url = parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
                    await asyncio.to_thread(migrate.upgrade_sqlite, sync_url, pragmas, create)
            elif migrate_schema:
                async with store.engine.begin() as conn:
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

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _prepare_sqlite_file(path: Path, create: bool) -> None:
    """A SQLite file's place: refuse a directory; create the parent only for commands that may create."""
    if path.is_dir():
        raise StoreError(f"database path {path} is a directory; give a file path")
    if not path.exists():
        if not create:
            raise StoreError(
                f"no loopdeck database at {path}; `loopdeck run`, `demo` or `submit` creates one "
                "(or point --db / LOOPDECK_DB at an existing one)"
            )
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
