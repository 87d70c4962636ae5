"""Where the database lives: ``--db URL``, else ``LOOPDECK_DB``, else a SQLite file in the user's data directory.

Also the one way a database URL is shown to a person (``display_url``): with
its password masked and without the driver name loopdeck added.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from platformdirs import user_data_dir

from core.errors import BadInput
from core.locations import plain_setting

if TYPE_CHECKING:
    from core.settings import Settings

T = TypeVar("T")

ENV_DB = "LOOPDECK_DB"
ENV_TOKEN_BUDGET = "LOOPDECK_TOKEN_BUDGET"
# scheme as typed -> the driver loopdeck uses for it
SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
SUPPORTED = "sqlite:///PATH (or a plain file path) and postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
# user:PASSWORD@host; a password may even hold a raw "@": it runs to the last "@" before the host
_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>\S*?)(?=@[^@\s/]+(?:[/\s?#]|$))", re.IGNORECASE
)


def default_db_path() -> Path:
    return Path(user_data_dir("loopdeck", appauthor=False)) / "loopdeck.db"


def configured(name: str) -> str | None:
    """The ``db`` or ``user`` setting: read from its variable when ``plain_setting`` can, else by loading
    the settings (which check every value)."""
    known, value = plain_setting(name)
    if known:
        return value
    from core.settings import load_settings

    return getattr(load_settings(), name)


def resolve_db_url(url: str | None = None) -> str:
    """The database URL to use. A bare file path is accepted and means SQLite; other schemes are refused."""
    if not url:
        url = configured("db") or ""
    if not url:
        return sqlite_url(default_db_path())
    if "://" not in url:
        return sqlite_url(Path(url))
    scheme, rest = url.split("://", 1)
    driver = SCHEMES.get(scheme.lower())
    if driver is None:
        raise BadInput(
            f"unsupported database URL scheme {scheme!r} in {display_url(url)}; loopdeck supports {SUPPORTED}"
        )
    return f"{driver}://{rest}"


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.expanduser().absolute()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and for ``:memory:``)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("://", 1)[1].removeprefix("/")
    path = path.split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def display_url(url: str) -> str:
    """The URL as a person may see it: password masked (``***``), loopdeck's driver names removed."""
    shown = _PASSWORD.sub(lambda m: m.group("head") + "***", url)
    return shown.replace("+asyncpg://", "://").replace("+aiosqlite://", "://")


def mask_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked (for error messages from libraries)."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***", text)


def default_token_budget() -> int | None:
    """The budget of runs whose plan sets none: ``LOOPDECK_TOKEN_BUDGET`` (or the configuration's policy), else
    no limit. With no configuration file and no variable that could set it, none, without loading the
    settings (pydantic-settings: ~20-35 ms of a process's first run)."""
    budget = from_settings("token_budget", None, lambda settings: settings.policy_defaults().get("token_budget"))
    return int(budget) if budget is not None else None


def theme_setting() -> str | None:
    """The dashboard's ``theme`` setting; with no configuration file and no variable that could set it, none,
    without loading the settings (~40 ms of each dashboard's start, one per browser tab of `loopdeck serve`)."""
    return from_settings("theme", None, lambda settings: settings.theme)


def from_settings(name: str, unset: T, read: Callable[[Settings], T]) -> T:
    """``read`` of the settings, or ``unset`` without loading them when no configuration file and no variable
    could set ``name`` (``plain_setting``; loading them, pydantic-settings, is ~20-35 ms of a process)."""
    known, value = plain_setting(name)
    if known and value is None:
        return unset
    from core.settings import load_settings

    return read(load_settings())
