"""The commands, one module per group; each registers its subcommands and what runs them.

driving    run, demo, resume, submit, worker     planning  plan, approve-plan, skills
acting     approve, cancel, budget, replan, feedback
reading    runs, show, agents, export, workers, schema
dashboard  the Textual dashboard (plain ``loopdeck``, attach, and run/demo/resume without --headless)
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core import Orchestrator, default_user

Handler = Callable[[Orchestrator, argparse.Namespace, Any], Awaitable[int]]


@dataclass(frozen=True)
class Command:
    """A subcommand: what it does, and what it needs before it starts."""

    run: Callable[..., Awaitable[int]]  # (orch, args, prepared), or (args, prepared) when it needs no database
    prepare: Callable[[argparse.Namespace], Awaitable[Any]] | None = None  # checks input before the database opens
    creates: bool = False  # may create the database (every other command refuses a missing one)
    database: bool = True

    async def invoke(self, args: argparse.Namespace) -> int:
        prepared = await self.prepare(args) if self.prepare is not None else None
        if not self.database:
            return await self.run(args, prepared)
        async with await Orchestrator.open(args.db, user=args.user or default_user(), create=self.creates) as orch:
            return await self.run(orch, args, prepared)
