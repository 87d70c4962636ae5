"""The ``loopdeck`` command line.

Exit codes: 0 the run succeeded (or the command did what it was asked);
1 the run ended failed, rejected or canceled, or the action was refused;
2 bad input (an invalid plan, an unknown run or step, malformed JSON, a
database that cannot be opened); 3 an unexpected error (a bug: one line, and
the traceback with ``LOOPDECK_DEBUG=1``); 130 interrupted (the run stays resumable).

Never a traceback: every error is one line on stderr, with any URL's password masked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from core import (
    AgentError,
    BadInput,
    CommandTimeout,
    Delivery,
    EventType,
    LeaseHeld,
    LeaseLost,
    LoopdeckError,
    Orchestrator,
    PlanError,
    RunNotFound,
    RunStatus,
    StepNotFound,
    StoreError,
    TransitionError,
    Worker,
    default_user,
    demo_plan,
    iso,
    load_plan,
    PLANNER_ENV,
    available_skills,
    default_agents_file,
    load_base,
    plan_goal,
    plan_to_yaml,
    planner_agent,
    plan_json_schema,
)

from core import __version__, dumps, limits, load_document, mask_urls, parse_json, parse_token_budget

from tui.text.literal import literal
from tui.cli.progress import Progress

EXIT_OK, EXIT_RUN_NOT_OK, EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# commands that may create the database; every other one refuses a missing file (`no loopdeck database at ...`)
CREATING = frozenset({"run", "demo", "submit", "worker"})
DASHBOARD_COMMANDS = frozenset({None, "attach", "run", "demo", "resume"})
BAD_INPUT_ERRORS = (PlanError, BadInput, RunNotFound, StepNotFound, StoreError)
REFUSED_ERRORS = (TransitionError, LeaseHeld, LeaseLost, CommandTimeout, AgentError)

def _console(stderr: bool) -> Console:
    """Plain, unwrapped lines when not on a terminal (logs and pipes are read by tools)."""
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
    return console


err = _console(stderr=True)
out = _console(stderr=False)


def print_json(data: Any) -> None:
    """Machine-readable, strict JSON on stdout (never NaN); ASCII-escaped, so no untrusted byte reaches the terminal raw."""
    sys.stdout.write(dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def write_text(path: str, text: str) -> None:
    """Write an output file; a missing directory or a directory in the way is bad input, said plainly."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except IsADirectoryError:
        raise BadInput(f"cannot write {path}: it is a directory; give a file name") from None
    except FileNotFoundError:
        raise BadInput(f"cannot write {path}: the directory {os.path.dirname(path) or '.'} does not exist") from None
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None


def build_parser() -> argparse.ArgumentParser:
    def options(default: Any) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--db", metavar="URL", default=default,
                       help="database URL or SQLite file path (default: $LOOPDECK_DB, else a file in the user data directory)")
        p.add_argument("--user", metavar="NAME", default=default,
                       help="operator name recorded with actions (default: the login name)")
        return p

    # before or after the command: `loopdeck --db X runs` and `loopdeck runs --db X` alike
    parser = argparse.ArgumentParser(prog="loopdeck", description="A control room for AI agent runs.", parents=[options(None)])
    parser.add_argument("--version", action="version", version=f"loopdeck {__version__}")
    common = options(argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def driving(p: argparse.ArgumentParser, approve_default: str) -> None:
        p.add_argument("--headless", action="store_true", help="no dashboard: progress on stderr")
        p.add_argument("--read-only", action="store_true", help="dashboard without actions (for watching)")
        p.add_argument("--json", action="store_true", help="print the run (as `show --json`) when it ends")
        p.add_argument("--approve", choices=["all", "none", "ask"], default=approve_default,
                       help="answer approval gates: all (approve), none (reject), ask (wait for `loopdeck approve`)")

    def planning(p: argparse.ArgumentParser) -> None:
        p.add_argument("--agents", metavar="FILE", help=f"agents file: agents, and optionally policy and skills "
                       f"(default: ${PLANNER_ENV}, else ./agents.yaml)")
        p.add_argument("--max-repairs", type=_repairs, default=3, metavar="N",
                       help="times the planner may fix an invalid plan (default 3)")

    p = sub.add_parser("run", parents=[common], help="run a plan file (YAML or JSON), or plan one from --goal")
    p.add_argument("plan", nargs="?", help="path to the plan file")
    p.add_argument("--goal", metavar="TEXT", help="plan from this goal first (with --planner) instead of a plan file")
    p.add_argument("--planner", metavar="AGENT", help="the llm agent (in the agents file) that plans from --goal")
    planning(p)
    driving(p, "ask")
    p = sub.add_parser("plan", parents=[common], help="ask an llm agent for a plan that reaches a goal")
    p.add_argument("goal", help="what the plan should achieve")
    p.add_argument("--agent", required=True, metavar="NAME", help="the llm agent (in the agents file) that plans")
    p.add_argument("--out", metavar="FILE", help="write the plan here (YAML) instead of stdout")
    planning(p)
    p = sub.add_parser("approve-plan", parents=[common], help="approve (or --reject) the plan a run awaits approval of")
    p.add_argument("run_id")
    p.add_argument("--reject", action="store_true", help="reject: a run that has not started ends rejected; "
                   "a proposed replan is dropped and the run goes on")
    p.add_argument("--plan", dest="edited", metavar="FILE", help="approve this (edited) plan file instead; "
                   "for a proposed replan, a file of steps")
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser("submit", parents=[common], help="queue a run of a plan file for a worker (does not drive it)")
    p.add_argument("plan", help="path to the plan file")
    p.add_argument("--json", action="store_true", help="print {\"id\": RUN_ID} on stdout")
    p = sub.add_parser("worker", parents=[common], help="claim queued or orphaned runs and drive them, until SIGTERM")
    p.add_argument("--max-runs", type=_count, default=4, metavar="N", help="runs driven at once (default 4)")
    p.add_argument("--name", metavar="NAME", help="this worker's name in `loopdeck workers` (default: host-pid)")
    p.add_argument("--grace", type=_seconds, default=30.0, metavar="S",
                   help="on SIGTERM, seconds running steps may take to finish before their runs are handed back")
    p.add_argument("--poll", type=_seconds, default=1.0, metavar="S", help="seconds between looks for work when "
                   "nothing wakes the worker (PostgreSQL notifies it at once)")
    p = sub.add_parser("workers", parents=[common], help="list workers: name, host, pid, heartbeat, runs claimed")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("skills", parents=[common], help="list the skills a plan can call, and where they come from")
    p.add_argument("--plan", dest="plan_file", metavar="FILE", help="include this plan's own skills map")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("demo", parents=[common], help="run the built-in demo plan of simulated agents")
    driving(p, "all")
    p = sub.add_parser("resume", parents=[common], help="continue a run whose process stopped")
    p.add_argument("run_id")
    driving(p, "ask")

    p = sub.add_parser("attach", parents=[common], help="open the dashboard on a run driven by another process")
    p.add_argument("run_id")
    p.add_argument("--read-only", action="store_true", help="disable every action (for watching production)")
    p = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=_count, default=50, metavar="N", help=f"at most N runs (1 to {limits.MAX_LIST_LIMIT:,}; default 50)")
    p = sub.add_parser("show", parents=[common], help="show one run: steps and events")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("approve", parents=[common], help="approve (or --reject) a step waiting for approval")
    p.add_argument("run_id")
    p.add_argument("step_key")
    p.add_argument("--reject", action="store_true", help="reject instead of approving")
    p.add_argument("--input", metavar="JSON", type=_json_input, help="approve with this input instead of the step's own")
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser("cancel", parents=[common], help="cancel a run")
    p.add_argument("run_id")
    p.add_argument("--reason", metavar="TEXT")
    p = sub.add_parser("budget", parents=[common], help="set a run's token budget (a paused run continues)")
    p.add_argument("run_id")
    p.add_argument("--set", dest="limit", required=True, metavar="N", type=_budget,
                   help="tokens, or 'none' for no limit")
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
    p = sub.add_parser("agents", parents=[common], help="agents across runs: attempts, failures, tokens, feedback")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("export", parents=[common], help="export a run's execution spans")
    p.add_argument("run_id")
    p.add_argument("--format", choices=["otlp-json"], default="otlp-json")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    sub.add_parser("schema", parents=[common], help="print the JSON Schema of plan files")
    return parser


def _count(text: str) -> int:
    """A positive whole number for a listing or a pool (argparse reports a ValueError as exit 2)."""
    value = int(text.replace("_", ""))
    if not 1 <= value <= limits.MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1 to {limits.MAX_LIST_LIMIT:,}, not {text}")
    return value


def _repairs(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 0 to 100, not {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= limits.MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {limits.MAX_SECONDS:g}, not {text}")
    return value


class _Given:
    """A value given on the command line, parsed and checked before any database is opened."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _json_input(text: str) -> _Given:
    try:
        return _Given(parse_json(text, "--input"))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _budget(text: str) -> _Given:
    try:
        return _Given(parse_token_budget(text, "--set"))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_count.__name__ = _repairs.__name__ = "number"  # what argparse calls a bad value: "invalid number value"
_seconds.__name__ = "seconds"


def _debug() -> bool:
    return os.environ.get("LOOPDECK_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class _OneLine(logging.Formatter):
    """Engine log records on stderr as one masked line each; their traceback only with LOOPDECK_DEBUG."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"loopdeck: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and _debug():
            text += "\n" + self.formatException(record.exc_info)
        return mask_urls(text)


def _log_to_stderr() -> None:
    """Warnings and errors of the engine on stderr (not while the dashboard owns the terminal)."""
    logger = logging.getLogger("loopdeck")
    if not any(getattr(h, "loopdeck_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine())
        handler.setLevel(logging.WARNING)
        handler.loopdeck_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    _Driving.run_id = None
    parser = build_parser()
    parser.add_argument("--read-only", action="store_true", help="with no command: open the dashboard without actions")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print_json(plan_json_schema())
        return EXIT_OK
    if args.command in ("plan", "skills"):  # no database needed
        return _run_guarded(lambda: (cmd_plan if args.command == "plan" else cmd_skills)(args))
    if args.command == "run" and (args.plan is None) == (args.goal is None):
        parser.error("run takes a plan file or --goal (with --planner), not both or neither")
    if args.command == "run" and args.goal is not None and not args.planner:
        parser.error("--goal needs --planner AGENT: the llm agent that writes the plan")
    if args.command in DASHBOARD_COMMANDS and not getattr(args, "headless", False):
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            hint = "use --headless" if args.command in ("run", "demo", "resume") else \
                "use `loopdeck runs` or `loopdeck show RUN_ID` to read runs without a terminal"
            err.print(f"loopdeck: not a terminal (the dashboard needs one on stdin and stdout); {hint}")
            return EXIT_BAD_INPUT
        return _run_guarded(lambda: dashboard(args))
    handler = COMMANDS[args.command]
    _log_to_stderr()
    return _run_guarded(lambda: _with_orchestrator(args, handler))


class _Driving:
    """The run this process drives, so an interruption can name it."""

    run_id: str | None = None


def _run_guarded(make: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine; map every error to its exit code and one clear line (secrets masked)."""
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        run_id = _Driving.run_id
        if run_id:
            err.print(literal(f"interrupted; run {run_id} keeps its state: `loopdeck resume {run_id} --headless` continues it"))
        else:
            err.print("interrupted")
        return EXIT_INTERRUPTED
    except BAD_INPUT_ERRORS as exc:
        err.print(literal(mask_urls(f"loopdeck: {exc}")))
        return EXIT_BAD_INPUT
    except REFUSED_ERRORS as exc:
        err.print(literal(mask_urls(f"loopdeck: {exc}")))
        return EXIT_RUN_NOT_OK
    except LoopdeckError as exc:
        err.print(literal(mask_urls(f"loopdeck: {exc}")))
        return EXIT_RUN_NOT_OK
    except Exception as exc:  # noqa: BLE001 - a bug: one line, never a traceback with locals
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    """A bug: one masked line, the traceback (without locals) only when LOOPDECK_DEBUG asks for it."""
    if _debug():
        sys.stderr.write(mask_urls("".join(traceback.format_exception(exc))))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    err.print(literal(mask_urls(f"loopdeck: unexpected error: {type(exc).__name__}: {first}"[:500])
                      + "; this is a bug (LOOPDECK_DEBUG=1 shows the traceback)"))
    return EXIT_BUG


async def dashboard(args: argparse.Namespace) -> int:
    """Open the Textual dashboard: drive a new or resumed run here, or watch one.

    The database is opened and the run created before the screen starts, so a
    start-up error is one line on a normal terminal, never a screen of traceback.
    """
    from tui.dashboard.app import LoopdeckApp

    plan = None
    if args.command == "run":
        plan = await _plan_from_goal(args) if args.goal is not None else load_plan(args.plan)
    elif args.command == "demo":
        plan = demo_plan()
    drive = args.command in ("run", "demo", "resume")
    async with await Orchestrator.open(args.db, user=args.user or default_user(),
                                       create=args.command in CREATING) as orch:
        run_id = getattr(args, "run_id", None)
        if plan is not None:
            run_id = await orch.create_run(plan, proposed_by=_proposer(args), hold=drive,
                                           planning_tokens=getattr(args, "planning_tokens", (0, 0)))
        elif run_id is not None:
            run_id = await orch.store.resolve_run_id(run_id)
        _Driving.run_id = run_id if drive else None
        app = LoopdeckApp(run_id=run_id, drive=drive, read_only=args.read_only, orchestrator=orch)
        code = await app.run_async()
    if app.return_code:
        return app.return_code
    status = app.final_status
    if drive:
        if status is None:
            err.print(literal(f"the run is not finished; `loopdeck resume {run_id}` continues it"))
            return EXIT_INTERRUPTED
        err.print(literal(f"run {run_id} ended {status.value}"))
        return EXIT_OK if status == RunStatus.SUCCEEDED else EXIT_RUN_NOT_OK
    return code or EXIT_OK


async def _with_orchestrator(args: argparse.Namespace, handler: Callable[[Orchestrator, argparse.Namespace], Awaitable[int]]) -> int:
    if args.command == "run":  # validate before touching the database: bad input writes nothing
        args.loaded_plan = await _plan_from_goal(args) if args.goal is not None else load_plan(args.plan)
    elif args.command == "submit":
        args.loaded_plan = load_plan(args.plan)
    async with await Orchestrator.open(args.db, user=args.user or default_user(),
                                       create=args.command in CREATING) as orch:
        return await handler(orch, args)


# -- driving a run ---------------------------------------------------------------------------


async def cmd_run(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.create_run(args.loaded_plan, proposed_by=_proposer(args), hold=True,
                                   planning_tokens=getattr(args, "planning_tokens", (0, 0)))
    return await _drive(orch, run_id, args)


def _proposer(args: argparse.Namespace) -> str | None:
    return f"planner {args.planner}" if getattr(args, "goal", None) is not None else None


# -- planning --------------------------------------------------------------------------------


def _base(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    path = args.agents or default_agents_file()
    if path is None:
        raise BadInput(f"the planner needs an agents file: pass --agents FILE, set ${PLANNER_ENV}, "
                       "or put agents.yaml in this directory")
    return load_base(path), str(path)


async def _plan_from_goal(args: argparse.Namespace) -> Any:
    """Plan from ``--goal`` with the ``--planner`` agent, showing each request and repair on stderr.

    Returns the plan; its tokens are kept in ``args.planning_tokens`` for the run.
    """
    base, source = _base(args)
    name = args.planner if args.command == "run" else args.agent
    agent = planner_agent(base, name, source)
    if args.max_repairs < 0:
        raise BadInput(f"--max-repairs is 0 or more, not {args.max_repairs}")
    result = await plan_goal(args.goal, name, agent, base, max_repairs=args.max_repairs,
                             on_progress=lambda line: err.print(literal(f"planner: {line}")))
    repairs = f" after {result.repairs} repair(s)" if result.repairs else ""
    err.print(literal(f"planner: {len(result.plan.steps)} steps{repairs} · "
                      f"{result.prompt_tokens + result.completion_tokens:,} tokens"))
    args.planning_tokens = (result.prompt_tokens, result.completion_tokens)
    return result.plan


async def cmd_plan(args: argparse.Namespace) -> int:
    plan = await _plan_from_goal(args)
    text = plan_to_yaml(plan)
    if args.out:
        write_text(args.out, text)
        err.print(literal(f"wrote {args.out}; run it with: loopdeck run {args.out}"))
    else:
        sys.stdout.write(text)
    return EXIT_OK


async def cmd_skills(args: argparse.Namespace) -> int:
    plan_skills = load_plan(args.plan_file).skills if args.plan_file else {}
    skills = available_skills(plan_skills)
    return _listing(args.json, {name: {"target": s.target, "origin": s.origin} for name, s in skills.items()},
                    "no skills: map them in a plan's `skills:` or install a package that registers `loopdeck.skills`",
                    ("SKILL", "CALLS", "FROM"),
                    [(literal(name), literal(s.target), literal(s.origin)) for name, s in skills.items()])


async def cmd_submit(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.create_run(args.loaded_plan)
    if args.json:
        print_json({"id": run_id})
    err.print(literal(f"run {run_id} queued ({len(args.loaded_plan.steps)} steps); a `loopdeck worker` on this "
                      f"database drives it — watch it with `loopdeck attach {run_id}`"))
    return EXIT_OK


async def cmd_worker(orch: Orchestrator, args: argparse.Namespace) -> int:
    if args.max_runs < 1:
        raise BadInput(f"--max-runs is at least 1, not {args.max_runs}")
    worker = Worker(orch, name=args.name, max_runs=args.max_runs, poll_s=args.poll, grace_s=args.grace,
                    on_note=lambda line: err.print(literal(line)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()
    return EXIT_OK


async def cmd_workers(orch: Orchestrator, args: argparse.Namespace) -> int:
    rows = await orch.store.list_workers()
    data = [{"name": w["name"], "host": w["host"], "pid": w["pid"], "started_at": iso(w["started_at"]),
             "heartbeat_at": iso(w["heartbeat_at"]), "stopped_at": iso(w["stopped_at"]),
             "runs_claimed": w["runs_claimed"]} for w in rows]
    return _listing(args.json, data, "no worker has run on this database: `loopdeck worker` starts one",
                    ("NAME", "HOST", "PID", "HEARTBEAT", "STOPPED", "CLAIMED"),
                    [(literal(w["name"]), literal(w["host"]), str(w["pid"]), (w["heartbeat_at"] or "")[11:19],
                      (w["stopped_at"] or "")[11:19] or "-", str(w["runs_claimed"])) for w in data])


def _listing(as_json: bool, data: Any, empty: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
    """A listing command's output: JSON, a line saying there is nothing yet, or a table."""
    if as_json:
        print_json(data)
    elif not data:
        err.print(empty)
    else:
        table = Table(box=None, pad_edge=False)
        for col in columns:
            table.add_column(col, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    return EXIT_OK


async def cmd_approve_plan(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.store.resolve_run_id(args.run_id)
    kwargs: dict[str, Any] = {}
    if args.edited:
        if args.reject:
            raise BadInput("--plan goes with approving; a rejected plan does not run")
        run = await orch.store.get_run(run_id)
        data = load_steps_file(args.edited)
        kwargs["steps" if run["proposal_json"] else "plan"] = data
    delivery = await orch.approve_plan(run_id, approve=not args.reject, user=orch.user, reason=args.reason, **kwargs)
    verb = "rejected" if args.reject else "approved" + (" (edited)" if kwargs else "")
    err.print(literal(f"plan of run {run_id} {verb} by {orch.user}"))
    await _say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def _say_who_continues(orch: Orchestrator, run_id: str, delivery: Delivery) -> None:
    """After an action written to the store of a run nobody drives: say how it goes on (it does not by itself)."""
    if delivery != Delivery.OFFLINE:
        return
    status = (await orch.snapshot(run_id, events=False))["run"]["status"]
    if not RunStatus(status).terminal:
        err.print(literal(f"no process drives run {run_id} now; `loopdeck resume {run_id}` (or a `loopdeck worker` "
                          "on this database) continues it"))


async def cmd_demo(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.create_run(demo_plan(), hold=True)
    if args.approve == "all":
        err.print("demo: approval gates are approved automatically (--approve all); "
                  "pass --approve ask to answer them with `loopdeck approve`")
    return await _drive(orch, run_id, args)


async def cmd_resume(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.store.resolve_run_id(args.run_id)
    run = await orch.store.get_run(run_id)
    if RunStatus(run["status"]).terminal:
        err.print(literal(f"run {run_id} already ended {run['status']}; nothing to resume"))
        return _exit_for(RunStatus(run["status"]), args, None)
    return await _drive(orch, run_id, args)


async def _drive(orch: Orchestrator, run_id: str, args: argparse.Namespace) -> int:
    snapshot = await orch.snapshot(run_id, events=False)
    err.print(literal(f"run {run_id}: {snapshot['run']['goal'] or '(no goal)'} — {len(snapshot['steps'])} steps"))
    progress = Progress(err, run_id, snapshot)
    sub = orch.subscribe(run_id)
    _Driving.run_id = run_id
    helpers = _Helpers(progress)
    watcher = helpers.start(_watch(orch, run_id, sub, progress, args.approve, helpers))
    if snapshot["run"]["status"] == RunStatus.AWAITING_PLAN_APPROVAL.value:
        progress.note(progress.plan_waits(None))
        if args.approve in ("all", "none"):
            helpers.start(_auto_answer_plan(orch, run_id, args.approve, progress))
    try:
        with progress:
            status = await orch.drive(run_id, on_wait=progress.note)
            await asyncio.sleep(0)  # let the watcher see the final events
    finally:
        for task in list(helpers.tasks):
            task.cancel()
        sub.close()
        await asyncio.gather(watcher, *helpers.tasks, return_exceptions=True)
    final = await orch.snapshot(run_id, events=args.json)
    return _exit_for(status, args, final)


class _Helpers:
    """The headless driver's side tasks, kept (so none is collected mid-way) and supervised (none fails silently)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.progress.note(literal(mask_urls(f"loopdeck: unexpected error in the progress display: "
                                                 f"{type(exc).__name__}: {exc}")))


async def _watch(orch: Orchestrator, run_id: str, sub: Any, progress: Progress, approve: str, helpers: _Helpers) -> None:
    """Feed events to the progress display; answer gates when --approve says so."""
    async for item in sub:
        if not hasattr(item, "type"):
            continue  # a Gap: the tally catches up on the next events; nothing is lost in the store
        progress.on_event(item)
        if item.type == EventType.STEP_WAITING and approve in ("all", "none"):
            helpers.start(_auto_answer(orch, run_id, item.step_key, approve, progress))
        if item.type == EventType.RUN_PLAN_PROPOSED and item.step_key and approve in ("all", "none"):
            helpers.start(_auto_answer_plan(orch, run_id, approve, progress))


async def _auto_answer_plan(orch: Orchestrator, run_id: str, approve: str, progress: Progress) -> None:
    try:
        await orch.approve_plan(run_id, approve=approve == "all", user=f"{orch.user} (--approve {approve})",
                                reason=f"{'approved' if approve == 'all' else 'rejected'} automatically")
    except LoopdeckError as exc:
        progress.note(literal(f"could not answer the plan review: {exc}"))


async def _auto_answer(orch: Orchestrator, run_id: str, key: str, approve: str, progress: Progress) -> None:
    try:
        if approve == "all":
            await orch.approve(run_id, key, user=f"{orch.user} (--approve all)", reason="approved automatically")
        else:
            await orch.reject(run_id, key, user=f"{orch.user} (--approve none)", reason="rejected automatically")
    except LoopdeckError as exc:
        progress.note(literal(f"could not answer the gate of {key}: {exc}"))


def _exit_for(status: RunStatus, args: argparse.Namespace, final: dict[str, Any] | None) -> int:
    if final is not None:
        run = final["run"]
        style = "green" if status == RunStatus.SUCCEEDED else "red"
        line = Text.assemble(("run ", ""), (run["id"], "bold"), " ended ", (status.value, style))
        if run["reason"]:
            line.append(": ")
            line.append_text(literal(run["reason"]))
        line.append(f" · {run['tokens']['total']:,} tokens")
        err.print(line)
        if getattr(args, "json", False):
            print_json(final)
    return EXIT_OK if status == RunStatus.SUCCEEDED else EXIT_RUN_NOT_OK


# -- reading -------------------------------------------------------------------------------------


async def cmd_runs(orch: Orchestrator, args: argparse.Namespace) -> int:
    runs = await orch.runs(args.limit)
    if args.json:
        print_json([{k: r[k] for k in ("id", "goal", "status", "created_at", "ended_at", "steps", "done", "tokens")}
                    for r in runs])
        return EXIT_OK
    if not runs:
        err.print("no runs yet: `loopdeck demo --headless` starts one")
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "STATUS", "PROGRESS", "TOKENS", "CREATED", "GOAL"):
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=60 if col == "GOAL" else None)
    for r in runs:
        table.add_row(r["id"], literal(r["status"]), f"{r['done']}/{r['steps']}", f"{r['tokens']:,}",
                      (r["created_at"] or "")[:19].replace("T", " "), literal(r["goal"]))
    out.print(table)
    return EXIT_OK


async def cmd_show(orch: Orchestrator, args: argparse.Namespace) -> int:
    snap = await orch.snapshot(args.run_id)
    if args.json:
        print_json(snap)
        return EXIT_OK
    run = snap["run"]
    head = Text.assemble((run["id"], "bold"), "  ", literal(run["status"], "bold"), "  ", literal(run["goal"]))
    if run["reason"]:
        head.append("\n  ")
        head.append_text(literal(run["reason"]))
    out.print(head)
    table = Table(box=None, pad_edge=False)
    for col in ("STEP", "STATUS", "AGENT", "TRY", "TOKENS", "ERROR"):
        table.add_column(col, no_wrap=col != "ERROR")
    for s in snap["steps"]:
        table.add_row(literal(s["key"]), literal(s["status"]), literal(s["agent"]), str(s["attempts"]),
                      f"{s['tokens']['total']:,}", literal((s["error"] or "")[:200]))
    out.print(table)
    out.print(f"{len(snap['events'])} events; tokens {run['tokens']['total']:,}"
              + (f" of {run['token_budget']:,}" if run["token_budget"] is not None else ""))
    return EXIT_OK


# -- acting --------------------------------------------------------------------------------------


async def cmd_approve(orch: Orchestrator, args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {}
    if args.input is not None:
        if args.reject:
            raise BadInput("--input goes with approving; a rejected step does not run, so it takes no input")
        kwargs["input"] = args.input.value
    run_id = await orch.store.resolve_run_id(args.run_id)
    if args.reject:
        delivery = await orch.reject(run_id, args.step_key, user=orch.user, reason=args.reason)
        err.print(literal(f"step {args.step_key} of run {run_id} rejected by {orch.user}"))
    else:
        delivery = await orch.approve(run_id, args.step_key, user=orch.user, reason=args.reason, **kwargs)
        edited = " with edited input" if "input" in kwargs else ""
        err.print(literal(f"step {args.step_key} of run {run_id} approved{edited} by {orch.user}"))
    await _say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def cmd_cancel(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.store.resolve_run_id(args.run_id)
    await orch.cancel(run_id, user=orch.user, reason=args.reason)
    err.print(literal(f"run {run_id} canceled by {orch.user}"))
    return EXIT_OK


async def cmd_budget(orch: Orchestrator, args: argparse.Namespace) -> int:
    limit = args.limit.value
    run_id = await orch.store.resolve_run_id(args.run_id)
    delivery = await orch.set_budget(run_id, limit, user=orch.user)
    err.print(literal(f"run {run_id}: token budget set to {'no limit' if limit is None else f'{limit:,}'} by {orch.user}"))
    await _say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def cmd_replan(orch: Orchestrator, args: argparse.Namespace) -> int:
    steps = load_steps_file(args.steps)
    run_id = await orch.store.resolve_run_id(args.run_id)
    delivery = await orch.replan(run_id, steps, mode=args.mode, user=orch.user, reason=args.reason)
    count = len(steps["steps"] if isinstance(steps, dict) else steps)
    err.print(literal(f"run {run_id} replanned ({args.mode}): {count} step(s) by {orch.user}"))
    await _say_who_continues(orch, run_id, delivery)
    return EXIT_OK


def load_steps_file(path: str) -> Any:
    """A replan file: YAML or JSON, a list of steps or a mapping with ``steps``."""
    return load_document(path, "steps file")


async def cmd_feedback(orch: Orchestrator, args: argparse.Namespace) -> int:
    run_id = await orch.store.resolve_run_id(args.run_id)
    await orch.feedback(run_id, args.step_key, args.rating, comment=args.comment, category=args.category, user=orch.user)
    thumb = "👍" if args.rating == "up" else "👎"
    err.print(literal(f"{thumb} recorded for step {args.step_key} of run {run_id} by {orch.user}"))
    return EXIT_OK


async def cmd_agents(orch: Orchestrator, args: argparse.Namespace) -> int:
    agents = await orch.agents()
    return _listing(args.json, agents, "no agent has run yet", ("AGENT", "ATTEMPTS", "FAILURES", "TOKENS", "👍", "👎", "RATE"),
                    [(literal(name), str(a["attempts"]), str(a["failures"]), f"{a['tokens']['total']:,}",
                      str(a["feedback"]["up"]), str(a["feedback"]["down"]),
                      "-" if a["feedback"]["rate"] is None else f"{a['feedback']['rate']:.0%}") for name, a in agents.items()])


async def cmd_export(orch: Orchestrator, args: argparse.Namespace) -> int:
    data = await orch.export_otlp(args.run_id)
    if args.out:
        write_text(args.out, json.dumps(data, indent=2, allow_nan=False))
        spans = len(data["resourceSpans"][0]["scopeSpans"][0]["spans"])
        err.print(literal(f"wrote {spans} spans to {args.out}"))
    else:
        print_json(data)
    return EXIT_OK


COMMANDS: dict[str, Callable[[Orchestrator, argparse.Namespace], Awaitable[int]]] = {
    "run": cmd_run,
    "demo": cmd_demo,
    "resume": cmd_resume,
    "runs": cmd_runs,
    "show": cmd_show,
    "approve": cmd_approve,
    "cancel": cmd_cancel,
    "budget": cmd_budget,
    "replan": cmd_replan,
    "feedback": cmd_feedback,
    "agents": cmd_agents,
    "export": cmd_export,
    "approve-plan": cmd_approve_plan,
    "submit": cmd_submit,
    "worker": cmd_worker,
    "workers": cmd_workers,
}


if __name__ == "__main__":
    sys.exit(main())
