"""Schema migrations (Alembic), applied when a database is opened.

An older database is upgraded in place; a database newer than this code is
refused with a clear error instead of being misread.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .errors import StoreError

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY = 0x6D696772  # "migr"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema on ``connection`` to ``revision`` (default: the newest).

    On PostgreSQL, workers starting together would migrate a new database at
    once; a transaction-scoped advisory lock lets one migrate while the others
    wait, then find it done.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    script = ScriptDirectory.from_config(_config())
    current = current_revision(connection)
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise StoreError(
            f"the database is at schema revision {current}, newer than this loopdeck knows "
            f"(newest: {script.get_current_head()}); upgrade loopdeck to open it"
        )
    target = script.get_current_head() if revision == "head" else revision
    if current == target:
        return
    command.upgrade(_config(connection), revision)
