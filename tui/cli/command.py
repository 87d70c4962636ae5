"""What a command is: its handler, what it needs before it starts, and which command lines open the dashboard.

A handler is named ``"group:function"`` (a module of ``tui.cli.commands``) and
imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# what plain `loopdeck`, `attach` and a driving command without --headless open: the dashboard
DASHBOARD_COMMANDS = frozenset({None, "attach", "run", "demo", "resume"})
DRIVING = frozenset({"run", "demo", "resume"})


@dataclass(frozen=True)
class Command:
    """A subcommand: what runs it (``"group:function"``), and what it needs before it starts."""

    run: str  # (orch, args, prepared) -> exit code, or (args, prepared) when it needs no database
    prepare: str | None = None  # (args) -> prepared: checks input before the database opens
    creates: bool = False  # may create the database (every other command refuses a missing one)
    database: bool = True

    async def invoke(self, args: argparse.Namespace) -> int:
        prepared = await handler(self.prepare)(args) if self.prepare is not None else None
        run = handler(self.run)
        if not self.database:
            return await run(args, prepared)
        from core import Orchestrator, default_user

        async with await Orchestrator.open(args.db, user=args.user or default_user(), create=self.creates) as orch:
            return await run(orch, args, prepared)


def handler(name: str) -> Callable[..., Awaitable[Any]]:
    """``"group:function"``: the function of ``tui.cli.commands.group``, imported now."""
    group, function = name.split(":")
    return getattr(importlib.import_module(f"tui.cli.commands.{group}"), function)  # type: ignore[no-any-return]


def wanted(args: argparse.Namespace) -> bool:
    """Whether this command line opens the dashboard."""
    return args.command in DASHBOARD_COMMANDS and not getattr(args, "headless", False)
