"""The dashboard from the command line: plain ``loopdeck`` (the runs list), ``attach RUN_ID``, and
``run``/``demo``/``resume`` without ``--headless`` (driven here, shown live).

The database is opened and the run created before the screen starts, so a
start-up error is one line on a normal terminal, never a screen of traceback;
without a terminal the dashboard refuses and says what to use instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from core import BadInput, Orchestrator, RunStatus, default_user, theme_setting
from tui.cli.command import DRIVING
from tui.cli.output import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_NOT_OK, Interrupted, say

WEB_DRIVER = "textual.drivers.web_driver:WebDriver"  # set by textual-serve for each dashboard it starts


def refuse_without_terminal(args: argparse.Namespace) -> int | None:
    """Exit 2 with what to use instead, when stdin or stdout is not a terminal (never a flood of escape codes)."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        return None
    if os.environ.get("TEXTUAL_DRIVER") == WEB_DRIVER:
        return None  # a dashboard of `loopdeck serve`: the browser is its terminal
    hint = (
        "use --headless"
        if args.command in DRIVING
        else "use `loopdeck runs` or `loopdeck show RUN_ID` to read runs without a terminal"
    )
    say(f"loopdeck: not a terminal (the dashboard needs one on stdin and stdout); {hint}")
    return EXIT_BAD_INPUT


def configured_theme() -> str | None:
    """The ``theme`` setting, checked against Textual's themes (``BadInput`` naming them when unknown)."""
    from textual.theme import BUILTIN_THEMES

    theme = theme_setting()
    if theme is not None and theme not in BUILTIN_THEMES:
        raise BadInput(f'unknown theme "{theme}" (setting theme / LOOPDECK_THEME); one of: {", ".join(BUILTIN_THEMES)}')
    return theme


async def open_dashboard(args: argparse.Namespace) -> int:
    """Open the Textual dashboard: drive a new or resumed run here, or watch one."""
    from tui.dashboard.app import LoopdeckApp

    theme = configured_theme()
    plan = None
    if args.command in ("run", "demo"):
        from tui.cli.commands.driving import planned  # (`attach`, each tab of `loopdeck serve`, needs neither)

        plan = await planned(args)
    drive = args.command in DRIVING
    async with await Orchestrator.open(
        args.db, user=args.user or default_user(), create=args.command in ("run", "demo")
    ) as orch:
        run_id = getattr(args, "run_id", None)
        if plan is not None:
            from tui.cli.commands.driving import create

            run_id = await create(orch, plan)
        elif run_id is not None:
            run_id = await orch.resolve_run_id(run_id)
        Interrupted.run_id = run_id if drive else None
        app = LoopdeckApp(run_id=run_id, drive=drive, read_only=args.read_only, orchestrator=orch, theme=theme)
        code = await app.run_async()
    if app.return_code:
        return app.return_code
    if drive:
        status = app.final_status
        if status is None:
            say(f"the run is not finished; `loopdeck resume {run_id}` continues it")
            return EXIT_INTERRUPTED
        say(f"run {run_id} ended {status.value}")
        return EXIT_OK if status == RunStatus.SUCCEEDED else EXIT_RUN_NOT_OK
    return code or EXIT_OK
