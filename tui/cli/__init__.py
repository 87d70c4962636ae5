"""The ``loopdeck`` command line, a package: ``main`` here, the parser, the output rules, one module per command group.

    parser.py     global options, every subcommand
    arguments.py  argument types (JSON input, budget, counts), checked before a database opens
    output.py     consoles, strict JSON, one-line errors, exit codes
    progress.py   a headless run's progress on stderr
    startup.py    no garbage collection while a command loads its modules
    exiting.py    no teardown of the loaded heap once a command has returned
    commands/     driving, planning, acting, reading, dashboard

Exit codes (``output.py``): 0 ok, 1 the run did not succeed or the action was
refused, 2 bad input, 3 a bug, 130 interrupted.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from tui.cli.command import wanted
from tui.cli.exiting import exit_now
from tui.cli.output import Interrupted, guarded, log_to_stderr
from tui.cli.parser import build_parser
from tui.cli.startup import Startup


def entry() -> NoReturn:
    """The ``loopdeck`` script and ``python -m tui.cli``: ``main``, then the process ends without its teardown
    (``tui.cli.exiting``), argparse's own exits (``--help``, a usage error) included. Tests call ``main``, which
    returns the exit code."""
    try:
        code = main()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise  # (a message to print: the interpreter's exit prints it)
        code = exc.code or 0
    exit_now(code)


def main(argv: list[str] | None = None) -> int:
    with Startup() as start:  # (no garbage collection while the command loads its modules: tui.cli.startup)
        Interrupted.run_id = None
        parser, commands = build_parser()
        args = parser.parse_args(argv)
        if args.command in ("run", "submit"):
            _check_plan_source(parser, args)
        if wanted(args):
            from tui.cli.commands import dashboard

            start.end()  # (the dashboard has its own policy: tui.dashboard.heap)
            refused = dashboard.refuse_without_terminal(args)
            if refused is not None:
                return refused
            return guarded(lambda: dashboard.open_dashboard(args))
        command = commands[args.command]
        if command.database:
            log_to_stderr()
        return guarded(lambda: start.run(command.invoke(args)))


def _check_plan_source(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One source of the plan: a file, a template (with --goal), or a planner (with --goal)."""
    template, planner = args.template, getattr(args, "planner", None)
    if template is not None:
        if args.plan is not None:
            parser.error("give a plan file or --template, not both")
        if args.goal is None:
            parser.error("--template needs --goal TEXT: the goal the template's plan is for")
        if planner:
            parser.error("--planner plans from a goal; --template starts from a template: choose one")
        return
    if (args.plan is None) == (args.goal is None):
        what = "--goal (with --planner) or --template NAME --goal TEXT" if args.command == "run" else "--template"
        parser.error(f"{args.command} takes a plan file or {what}, not both or neither")
    if args.goal is not None and not planner:
        parser.error("--goal needs --planner AGENT (the llm agent that writes the plan) or --template NAME")


if __name__ == "__main__":
    entry()
