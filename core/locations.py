"""Where loopdeck's configuration lives, and the settings a command needs before anything else.

Every command with a database asks for ``db``, ``user`` and ``lease_s``. When no
configuration file exists and only their own variables could set them,
``plain_setting`` answers without loading the settings (pydantic-settings and
the settings' schema cost ~40 ms of every command's start); otherwise the
caller loads them (``core.settings.load_settings``), which stays the one
authority. This module imports nothing heavier than ``os``.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "LOOPDECK_"  # of every setting's variable
CONFIG_VAR = "LOOPDECK_CONFIG"
DEFAULT_LEASE_S = 15.0  # the ``lease_s`` setting's default
# the variables of every other setting (``core.settings.Settings``; a test keeps the two in step): when one is
# set, the settings are loaded, so that a bad value is refused by every command, as it always was
OTHER_SETTINGS = frozenset(
    {"AGENTS", "AGENTS_FILE", "APPROVAL_RULES", "MCP_SERVERS", "NOTIFY", "POLICY", "PROFILES", "THEME", "TOKEN_BUDGET"}
)


def config_path() -> Path:
    """``$LOOPDECK_CONFIG``, else ``config.toml`` in the user's configuration directory."""
    named = os.environ.get(CONFIG_VAR, "").strip()
    if named:
        return Path(named).expanduser()
    from platformdirs import user_config_path

    return user_config_path("loopdeck", appauthor=False) / "config.toml"


def plain_setting(name: str) -> tuple[bool, str | None]:
    """A setting without loading the settings (pydantic-settings and the settings' schema: ~40 ms of
    every command's start), when nothing but its own variable can decide it: no configuration file, no
    variable of another setting but ``db``, ``user`` and ``lease_s``, and at most one ``LOOPDECK_<NAME>``
    (names are matched in any case, as the settings do). Its text, or None when it is not set;
    ``(False, None)`` when the settings must be loaded (``core.settings.load_settings``, the one
    authority, which also checks the value)."""
    try:
        if os.environ.get(CONFIG_VAR, "").strip() or config_path().exists():
            return False, None
    except OSError:  # an unreadable configuration directory: the settings say so
        return False, None
    wanted = (PREFIX + name).upper()
    values, length = [], len(PREFIX)
    for key, value in os.environ.items():
        upper = key.upper()
        if upper == wanted:
            values.append(value)
        elif upper.startswith(PREFIX) and upper[length:].split("__")[0] in OTHER_SETTINGS:
            return False, None
    if len(values) > 1 or (values and len(values[0]) > 200):  # which one wins, or too long: the settings say
        return False, None
    return True, (values[0] or None) if values else None  # (an empty variable is no setting)
