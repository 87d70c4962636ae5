"""The command line's syntax: global options and every subcommand's arguments, with what runs each.

Nothing here imports the engine: a command's handler is named by
``"group:function"`` (a module of ``tui.cli.commands``) and imported only
when that command runs, so ``loopdeck --help`` or a typo is answered at
once and each command loads only what it uses (a ``runs`` never imports the
planner, the controller or Textual).
"""

from __future__ import annotations

import argparse

from core import __version__, limits
from tui.cli.arguments import budget_value, count, dollars_value, json_input, port, repairs, seconds, speed
from tui.cli.command import Command


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser, and each subcommand's ``Command`` by name."""
    # before or after the command: `loopdeck --db X runs` and `loopdeck runs --db X` alike
    parser = argparse.ArgumentParser(
        prog="loopdeck", description="A control room for AI agent runs.", parents=[_options(None)]
    )
    parser.add_argument("--version", action="version", version=f"loopdeck {__version__}")
    parser.add_argument("--read-only", action="store_true", help="with no command: open the dashboard without actions")
    common = _options(argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, Command] = {}
    for group in (_driving, _planning, _configuring, _dashboard, _reading, _acting):
        commands.update(group(sub, common))
    return parser, commands


def _options(default: object) -> argparse.ArgumentParser:
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


def _driving_options(p: argparse.ArgumentParser, approve_default: str) -> None:
    p.add_argument("--headless", action="store_true", help="no dashboard: progress on stderr")
    p.add_argument("--read-only", action="store_true", help="dashboard without actions (for watching)")
    p.add_argument("--json", action="store_true", help="print the run (as `show --json`) when it ends")
    p.add_argument(
        "--approve",
        choices=["all", "none", "ask"],
        default=approve_default,
        help="answer approval gates: all (approve), none (reject), ask (wait for `loopdeck approve`)",
    )


def _plan_options(p: argparse.ArgumentParser, template: bool = True) -> None:
    """What a new run's plan is made with: a template (with --goal), and a harness profile."""
    if template:
        p.add_argument(
            "--template", metavar="NAME", help="start from this template (`loopdeck templates`), with --goal"
        )
    p.add_argument(
        "--profile", metavar="NAME", help="apply this harness profile (`loopdeck profiles`): the plan's own values win"
    )


def _planning_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agents",
        metavar="FILE",
        help="agents file: agents, and optionally policy and skills (default: $LOOPDECK_AGENTS, else ./agents.yaml)",
    )
    p.add_argument(
        "--max-repairs",
        type=repairs,
        default=3,
        metavar="N",
        help="times the planner may fix an invalid plan (default 3)",
    )


def _driving(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict[str, Command]:
    p = sub.add_parser("run", parents=[common], help="run a plan file (YAML or JSON), or plan one from --goal")
    p.add_argument("plan", nargs="?", help="path to the plan file")
    p.add_argument("--goal", metavar="TEXT", help="the goal: planned by --planner, or filled into --template's plan")
    p.add_argument("--planner", metavar="AGENT", help="the llm agent (in the agents file) that plans from --goal")
    _plan_options(p)
    _planning_options(p)
    _driving_options(p, "ask")
    p = sub.add_parser("demo", parents=[common], help="run the built-in demo plan of simulated agents")
    _driving_options(p, "all")
    _plan_options(p, template=False)
    p.add_argument(
        "--speed", type=speed, default=1.0, metavar="N", help="run the demo N times faster (1 to 100; default 1)"
    )
    p = sub.add_parser("resume", parents=[common], help="continue a run whose process stopped")
    p.add_argument("run_id")
    _driving_options(p, "ask")
    p = sub.add_parser("submit", parents=[common], help="queue a run of a plan file for a worker (does not drive it)")
    p.add_argument("plan", nargs="?", help="path to the plan file")
    p.add_argument("--goal", metavar="TEXT", help="with --template: the goal filled into its plan")
    _plan_options(p)
    p.add_argument("--json", action="store_true", help='print {"id": RUN_ID} on stdout')
    p = sub.add_parser("worker", parents=[common], help="claim queued or orphaned runs and drive them, until SIGTERM")
    p.add_argument("--max-runs", type=count, default=4, metavar="N", help="runs driven at once (default 4)")
    p.add_argument("--name", metavar="NAME", help="this worker's name in `loopdeck workers` (default: host-pid)")
    p.add_argument(
        "--grace",
        type=seconds,
        default=30.0,
        metavar="S",
        help="on SIGTERM, seconds running steps may take to finish before their runs are handed back",
    )
    p.add_argument(
        "--poll",
        type=seconds,
        default=1.0,
        metavar="S",
        help="seconds between looks for work when nothing wakes the worker (PostgreSQL notifies it at once)",
    )
    return {
        "run": Command("driving:run", prepare="driving:planned", creates=True),
        "demo": Command("driving:demo", prepare="driving:planned", creates=True),
        "resume": Command("driving:resume"),
        "submit": Command("driving:submit", prepare="driving:planned", creates=True),
        "worker": Command("driving:worker", creates=True),
    }


def _planning(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict[str, Command]:
    p = sub.add_parser("plan", parents=[common], help="ask an llm agent for a plan that reaches a goal")
    p.add_argument("goal", help="what the plan should achieve")
    p.add_argument("--agent", required=True, metavar="NAME", help="the llm agent (in the agents file) that plans")
    p.add_argument("--out", metavar="FILE", help="write the plan here (YAML) instead of stdout")
    _planning_options(p)
    p = sub.add_parser("approve-plan", parents=[common], help="approve (or --reject) the plan a run awaits approval of")
    p.add_argument("run_id")
    p.add_argument(
        "--reject",
        action="store_true",
        help="reject: a run that has not started ends rejected; a proposed replan is dropped and the run goes on",
    )
    p.add_argument(
        "--plan",
        dest="edited",
        metavar="FILE",
        help="approve this (edited) plan file instead; for a proposed replan, a file of steps",
    )
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser("skills", parents=[common], help="list the skills a plan can call, and where they come from")
    p.add_argument("--plan", dest="plan_file", metavar="FILE", help="include this plan's own skills map")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "tools", parents=[common], help="list the tools agents can be given: skills and MCP servers' tools"
    )
    p.add_argument("--plan", dest="plan_file", metavar="FILE", help="include this plan's skills and MCP servers")
    p.add_argument("--json", action="store_true")
    return {
        "tools": Command("planning:tools", database=False),
        "plan": Command("planning:plan", database=False),
        "approve-plan": Command("planning:approve_plan", prepare="planning:read_edited"),
        "skills": Command("planning:skills", database=False),
    }


def _configuring(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict[str, Command]:
    p = sub.add_parser(
        "config",
        parents=[common],
        help="show the effective configuration and where each value comes from",
        description="Show the effective configuration: each value and where it comes from (a flag, a LOOPDECK_ "
        "variable, the configuration file, or the default). The file is $LOOPDECK_CONFIG, else "
        "$XDG_CONFIG_HOME/loopdeck/config.toml. Secrets are masked.",
    )
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("profiles", parents=[common], help="list harness profiles and what each changes")
    p.add_argument("--plan", dest="plan_file", metavar="FILE", help="include this plan's own profiles")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("templates", parents=[common], help="list plan templates and where each comes from")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("new", parents=[common], help="write a plan from a template, to edit and run")
    p.add_argument("template", metavar="TEMPLATE", help="a template's name (`loopdeck templates`)")
    p.add_argument("--goal", metavar="TEXT", help="the goal to fill in (default: a note to write one)")
    p.add_argument("--out", metavar="FILE", help="write the plan here instead of stdout")
    p.add_argument("--force", action="store_true", help="with --out: replace a file that exists")
    return {
        "config": Command("configuring:config", database=False),
        "profiles": Command("configuring:profiles", database=False),
        "templates": Command("configuring:templates", database=False),
        "new": Command("configuring:new", database=False),
    }


def _dashboard(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict[str, Command]:
    p = sub.add_parser("attach", parents=[common], help="open the dashboard on a run driven by another process")
    p.add_argument("run_id")
    p.add_argument("--read-only", action="store_true", help="disable every action (for watching production)")
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the dashboard in a browser (one dashboard per connection)",
        description="Serve the dashboard in a browser: every connection gets its own dashboard process on the "
        "same database. On loopback it works as is; any other address needs --tokens.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8765, help="port to listen on (default: 8765; 0 picks a free one)")
    p.add_argument(
        "--tokens",
        metavar="FILE",
        help="who may connect: `TOKEN NAME ROLE` lines, role operator or viewer "
        "(default: $LOOPDECK_SERVE_TOKENS; required beyond loopback)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, when behind a reverse proxy (e.g. https://loopdeck.example.com)",
    )
    p.add_argument("--read-only", action="store_true", help="every dashboard read-only, whatever the token's role")
    p.add_argument(
        "--grace",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long a closed tab's dashboard gets to quit before it is killed (default 5)",
    )
    return {"serve": Command("serve:serve", prepare="serve:prepare", database=False)}


def _reading(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict[str, Command]:
    p = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--limit",
        type=count,
        default=50,
        metavar="N",
        help=f"at most N runs (1 to {limits.MAX_LIST_LIMIT:,}; default 50)",
    )
    p = sub.add_parser("show", parents=[common], help="show one run: steps and events")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("agents", parents=[common], help="agents across runs: attempts, failures, tokens, feedback")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("export", parents=[common], help="export a run's execution spans")
    p.add_argument("run_id")
    p.add_argument("--format", choices=["otlp-json"], default="otlp-json")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    p = sub.add_parser("workers", parents=[common], help="list workers: name, host, pid, heartbeat, runs claimed")
    p.add_argument("--json", action="store_true")
    sub.add_parser("schema", parents=[common], help="print the JSON Schema of plan files")
    p = sub.add_parser("calls", parents=[common], help="list a run's tool calls: tool, arguments, status, decision")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    return {
        "calls": Command("reading:calls"),
        "runs": Command("reading:runs"),
        "show": Command("reading:show"),
        "agents": Command("reading:agents"),
        "export": Command("reading:export"),
        "workers": Command("reading:workers"),
        "schema": Command("reading:schema", database=False),
    }


def _acting(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> dict[str, Command]:
    p = sub.add_parser("approve", parents=[common], help="approve (or --reject) a step waiting for approval")
    p.add_argument("run_id")
    p.add_argument("step_key")
    p.add_argument("--reject", action="store_true", help="reject instead of approving")
    p.add_argument("--input", metavar="JSON", type=json_input, help="approve with this input instead of the step's own")
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser(
        "approve-call",
        parents=[common],
        help="approve (or --reject) a tool call waiting for approval",
        description="Answer a tool call that waits for an operator (`loopdeck calls RUN_ID` lists them). "
        "Approving runs it (with --args instead of the model's arguments); rejecting tells the model why.",
    )
    p.add_argument("run_id")
    p.add_argument("call_id", help="loopdeck's id of the call, STEP.ATTEMPT.TURN.INDEX")
    p.add_argument("--reject", action="store_true", help="refuse the call; the model receives --reason")
    p.add_argument("--always", action="store_true", help="and allow this tool for the rest of the run")
    p.add_argument(
        "--args",
        metavar="JSON",
        type=json_input,
        help="run it with these arguments (checked against the tool's schema)",
    )
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser("cancel", parents=[common], help="cancel a run")
    p.add_argument("run_id")
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser(
        "finish",
        parents=[common],
        help="end a run now with a final answer: running steps are canceled, the rest skipped",
    )
    p.add_argument("run_id")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--answer", metavar="TEXT", help="the run's answer (default: what its final steps produced)")
    given.add_argument("--answer-file", metavar="FILE", help="the run's answer: this UTF-8 text file")
    p.add_argument("--status", choices=["succeeded", "failed"], default="succeeded", help="default: succeeded")
    p.add_argument("--reason", metavar="TEXT")
    p.add_argument("--json", action="store_true", help="print the run's result as JSON on stdout")
    p = sub.add_parser(
        "budget", parents=[common], help="set a run's token or dollar budget (a run paused on it continues)"
    )
    p.add_argument("run_id")
    p.add_argument("--set", dest="limit", metavar="N", type=budget_value, help="tokens, or 'none' for no limit")
    p.add_argument("--usd", metavar="DOLLARS", type=dollars_value, help="US dollars, or 'none' for no limit")
    p = sub.add_parser("replan", parents=[common], help="append steps to a live run, or replace its pending steps")
    p.add_argument("run_id")
    p.add_argument("steps", help="YAML or JSON file: a list of steps, or a mapping with `steps:`")
    p.add_argument("--mode", choices=["append", "replace_pending"], default="append")
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser("feedback", parents=[common], help="thumbs up or down on a finished step")
    p.add_argument("run_id")
    p.add_argument("step_key")
    p.add_argument("rating", choices=["up", "down"])
    p.add_argument("--comment", metavar="TEXT")
    p.add_argument("--category", metavar="NAME")
    return {
        "approve": Command("acting:approve"),
        "approve-call": Command("acting:approve_call"),
        "cancel": Command("acting:cancel"),
        "finish": Command("acting:finish", prepare="acting:read_answer"),
        "budget": Command("acting:set_budget"),
        "replan": Command("acting:replan", prepare="acting:read_steps"),
        "feedback": Command("acting:feedback"),
    }
