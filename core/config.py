"""Where the database lives: ``--db URL``, else ``LOOPDECK_DB``, else a SQLite file in the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

from .errors import BadInput

ENV_DB = "LOOPDECK_DB"
ENV_TOKEN_BUDGET = "LOOPDECK_TOKEN_BUDGET"


def default_db_path() -> Path:
    return Path(user_data_dir("loopdeck", appauthor=False)) / "loopdeck.db"


def resolve_db_url(url: str | None = None) -> str:
    """The database URL to use. A bare file path is accepted and means SQLite."""
    url = url or os.environ.get(ENV_DB) or ""
    if not url:
        return sqlite_url(default_db_path())
    if "://" not in url:
        return sqlite_url(Path(url))
    if url.startswith("sqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.expanduser().absolute()}"


def default_token_budget() -> int | None:
    """The budget of runs whose plan sets none: ``LOOPDECK_TOKEN_BUDGET``, else no limit."""
    raw = os.environ.get(ENV_TOKEN_BUDGET, "").strip()
    if not raw:
        return None
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise BadInput(f"{ENV_TOKEN_BUDGET}={raw!r} is not a whole number of tokens") from None
    if value < 0:
        raise BadInput(f"{ENV_TOKEN_BUDGET}={raw!r} must be >= 0")
    return value
