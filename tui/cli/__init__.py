"""The ``loopdeck`` command line, a package: ``main`` here, the parser, the output rules, one module per command group.

    parser.py     global options, every subcommand
    arguments.py  argument types (JSON input, budget, counts), checked before a database opens
    output.py     consoles, strict JSON, one-line errors, exit codes
    progress.py   a headless run's progress on stderr
    commands/     driving, planning, acting, reading, dashboard

Exit codes (``output.py``): 0 ok, 1 the run did not succeed or the action was
refused, 2 bad input, 3 a bug, 130 interrupted.
"""

from __future__ import annotations

import sys

from tui.cli.command import wanted
from tui.cli.output import Interrupted, guarded, log_to_stderr
from tui.cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    Interrupted.run_id = None
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and (args.plan is None) == (args.goal is None):
        parser.error("run takes a plan file or --goal (with --planner), not both or neither")
    if args.command == "run" and args.goal is not None and not args.planner:
        parser.error("--goal needs --planner AGENT: the llm agent that writes the plan")
    if wanted(args):
        from tui.cli.commands import dashboard

        refused = dashboard.refuse_without_terminal(args)
        if refused is not None:
            return refused
        return guarded(lambda: dashboard.open_dashboard(args))
    command = commands[args.command]
    if command.database:
        log_to_stderr()
    return guarded(lambda: command.invoke(args))


if __name__ == "__main__":
    sys.exit(main())
