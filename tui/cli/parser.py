"""The argument parser: global options, and every command group's subcommands (types in ``arguments``)."""

from __future__ import annotations

import argparse
from typing import Any

from core import __version__
from tui.cli.commands import acting, dashboard, driving, planning, reading


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    """The parser, and each subcommand's ``Command`` by name."""

    def options(default: Any) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument(
            "--db",
            metavar="URL",
            default=default,
            help="database URL or SQLite file path (default: $LOOPDECK_DB, else a file in the user data directory)",
        )
        p.add_argument(
            "--user",
            metavar="NAME",
            default=default,
            help="operator name recorded with actions (default: the login name)",
        )
        return p

    # before or after the command: `loopdeck --db X runs` and `loopdeck runs --db X` alike
    parser = argparse.ArgumentParser(
        prog="loopdeck", description="A control room for AI agent runs.", parents=[options(None)]
    )
    parser.add_argument("--version", action="version", version=f"loopdeck {__version__}")
    parser.add_argument("--read-only", action="store_true", help="with no command: open the dashboard without actions")
    common = options(argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, Any] = {}
    for group in (driving, planning, dashboard, reading, acting):
        commands.update(group.register(sub, common))
    return parser, commands
