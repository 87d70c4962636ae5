"""Schema migrations (Alembic), applied when a database is opened.

An older database is upgraded in place; a database newer than this code is
refused with a clear error instead of being misread.

Every upgrade is one transaction, taken before anything is read, so it is
atomic and serialised: processes opening a new database together take turns
(a transaction-scoped advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite), and a crash at any moment leaves the database at its old revision,
which the next open upgrades. (Python's sqlite3 driver would otherwise run
``CREATE TABLE`` outside any transaction, so a crash or a race left tables
with no recorded revision.)

A database with no recorded revision is only ever built on when it is empty,
or when it holds nothing but empty loopdeck tables of the first schema (what
such a crash left): those are rebuilt. Anything else is refused untouched
("not a loopdeck database"), and so is every database without a schema when
the command may not create one (``create=False``).

Alembic is imported only when a migration has to run: a new SQLite file is
created at the newest schema directly (``_create_at_head``), and opening a
database that is current reads its revision with one query (the newest revision is
the highest-numbered file in ``migrations/versions``, checked against
Alembic's own answer by a test), which keeps every command's start short.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from core.errors import StoreError

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY = 0x6D696772  # "migr"


def _config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this loopdeck knows: revisions are numbered files, ``0009_run_results.py``."""
    return max(p.name.split("_", 1)[0] for p in (SCRIPT_LOCATION / "versions").glob("[0-9]*_*.py"))


def alembic_head_revision() -> str:
    """The newest revision as Alembic works it out (slower: for the test that checks ``head_revision``)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision(connection: Connection) -> str | None:
    """The revision the database records, by one query (None: none recorded)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(connection: Connection, revision: str = "head", create: bool = True) -> None:
    """Bring the schema on ``connection`` to ``revision`` (default: the newest).

    On PostgreSQL, workers starting together would migrate a new database at
    once; a transaction-scoped advisory lock lets one migrate while the others
    wait, then find it done.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    current = current_revision(connection)
    if revision == "head" and current == head_revision():
        return  # current: no Alembic needed
    if revision == "head" and current is None and connection.dialect.name == "sqlite":
        _prepare_unversioned(connection, create)
        _create_at_head(connection)
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise StoreError(
            f"the database is at schema revision {current}, newer than this loopdeck knows "
            f"(newest: {script.get_current_head()}); upgrade loopdeck to open it"
        )
    target = script.get_current_head() if revision == "head" else revision
    if current == target:
        return
    if current is None:
        _prepare_unversioned(connection, create)
    command.upgrade(_config(connection), revision)


def _create_at_head(connection: Connection) -> None:
    """A new SQLite database: today's schema at once, stamped at the newest revision. The migrations
    build the same (a test compares the two, table by table), but importing Alembic and running all of
    them cost ~120 ms of a first command; this is ~10 ms, in the same locked transaction."""
    from core.store import schema

    schema.metadata.create_all(connection)
    connection.exec_driver_sql(  # as Alembic creates it
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
    )
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head_revision()})


# what an older loopdeck's interrupted first open could leave: the first migration's tables (and alembic's)
FIRST_SCHEMA = {
    "runs": {"id", "goal", "status"},
    "steps": {"run_id", "key", "status"},
    "events": {"id", "run_id", "type"},
    "alembic_version": {"version_num"},
}


def _prepare_unversioned(connection: Connection, create: bool) -> None:
    """A database with no recorded revision: build on it only if it is empty or a first open's leftovers."""
    inspector = inspect(connection)
    tables = sorted(inspector.get_table_names())
    if not tables:
        if not create:
            raise StoreError(
                "the database has no loopdeck schema yet; `loopdeck run`, `demo`, `submit` or `worker` creates it"
            )
        return
    leftovers = (
        set(tables) <= set(FIRST_SCHEMA)
        and "runs" in tables
        and all(
            FIRST_SCHEMA[name] <= {c["name"] for c in inspector.get_columns(name)}
            and not connection.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
            for name in tables
        )
    )
    if not leftovers:
        shown = ", ".join(tables[:6]) + (", …" if len(tables) > 6 else "")
        raise StoreError(
            f"not a loopdeck database: it holds tables ({shown}) but no loopdeck schema revision; "
            "point --db at another file (nothing was changed)"
        )
    if not create:
        raise StoreError(
            "the database was left half-created by an interrupted first open; `loopdeck run`, "
            "`demo`, `submit` or `worker` repairs it"
        )
    for name in tables:  # empty tables of an interrupted first open: rebuilt from scratch
        connection.exec_driver_sql(f'DROP TABLE "{name}"')


def sqlite_revision(path: Path, busy_timeout_ms: int) -> str | None:
    """The revision recorded in a SQLite file, read without a write lock (None: none recorded)."""
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None  # no such table yet
    finally:
        conn.close()
    return row[0] if row else None


def refuse_unversioned_sqlite(path: Path) -> None:
    """Say why a SQLite file with no revision cannot be used by a command that may not create, reading only."""
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _prepare_unversioned(conn, create=False)
    finally:
        engine.dispose()


def upgrade_sqlite(url: str, on_connect: Any, create: bool = True) -> None:
    """Upgrade a SQLite database in one ``BEGIN IMMEDIATE`` transaction (see the module docstring).

    ``url`` is a synchronous (pysqlite) URL; ``on_connect`` sets the connection's pragmas.
    """
    engine = create_engine(url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        on_connect(dbapi_conn, record)
        dbapi_conn.isolation_level = None  # the driver's own transaction handling off: we BEGIN ourselves

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: openers queue here, not mid-way

    try:
        with engine.begin() as conn:
            upgrade(conn, create=create)
    finally:
        engine.dispose()
