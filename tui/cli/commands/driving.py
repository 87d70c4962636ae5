"""Driving runs without the dashboard: ``run --headless``, ``demo --headless``, ``resume --headless``,
``submit`` (queue for a worker) and ``worker`` (drive what is queued).

A headless run shows its progress on stderr (``tui.cli.progress``) and
answers approval gates as ``--approve`` says: all, none, or ask (print the
``loopdeck approve`` line to type in another terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from typing import Any

from rich.text import Text

from core import (
    EventType,
    LoopdeckError,
    Orchestrator,
    Plan,
    RunStatus,
    Subscription,
    Worker,
    demo_plan,
    mask_urls,
    parse_plan_data,
    read_plan_data,
    resolve_plan,
    template,
)
from tui.cli.commands.planning import Planned, plan_from_goal
from tui.cli.output import EXIT_OK, EXIT_RUN_NOT_OK, Interrupted, err, print_json, say
from tui.cli.progress import Progress
from tui.text.literal import literal


async def planned(args: argparse.Namespace) -> Planned:
    """The plan to run (a file, a template, the demo's, or planned from --goal) with the configuration and
    --profile under it, validated before the database is touched: bad input writes nothing."""
    profile = getattr(args, "profile", None)
    if args.command == "demo":
        plan, record = resolve_plan(_as_written(demo_plan(args.speed)), "the demo plan", profile)
        return Planned(plan, profile=record)
    if getattr(args, "template", None):
        chosen = template(args.template)
        source = f"template {chosen.name}"
        plan, record = resolve_plan(parse_plan_data(chosen.render(args.goal), source), source, profile)
        return Planned(plan, profile=record)
    if getattr(args, "goal", None) is not None:
        drafted = await plan_from_goal(args, args.planner)
        plan, record = resolve_plan(_as_written(drafted.plan), "the planner's plan", profile)
        return Planned(plan, drafted.tokens, drafted.proposed_by, record)
    plan, record = resolve_plan(read_plan_data(args.plan), args.plan, profile)
    return Planned(plan, profile=record)


def _as_written(plan: Plan) -> dict[str, Any]:
    """A plan made in code, as a file would hold it: only what it sets (the layers fill in the rest)."""
    return plan.model_dump(mode="json", exclude_unset=True)


async def run(orch: Orchestrator, args: argparse.Namespace, plan: Planned) -> int:
    run_id = await create(orch, plan)
    return await drive(orch, run_id, args)


async def create(orch: Orchestrator, plan: Planned) -> str:
    """A new run of ``plan``, held by this process (it drives it)."""
    say_profile(plan.profile)
    return await orch.create_run(
        plan.plan, proposed_by=plan.proposed_by, hold=True, planning_tokens=plan.tokens, profile=plan.profile
    )


async def demo(orch: Orchestrator, args: argparse.Namespace, plan: Planned) -> int:
    run_id = await create(orch, plan)
    if args.approve == "all":
        say(
            "demo: approval gates are approved automatically (--approve all); "
            "pass --approve ask to answer them with `loopdeck approve`"
        )
    return await drive(orch, run_id, args)


async def resume(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    record = await orch.run(args.run_id, plan=False)
    if record.status.terminal:
        say(f"run {record.id} already ended {record.status.value}; nothing to resume")
        return exit_for(record.status, args, None)
    return await drive(orch, record.id, args)


def say_profile(profile: dict[str, Any] | None) -> None:
    """Which profile the run takes, and what of it the plan overrides (its own values win)."""
    if profile is None:
        return
    line = f"profile {profile['name']} (from {profile['from']})"
    kept = profile["kept_from_plan"]
    if kept:
        line += "; the plan's own values stay: " + ", ".join(
            f"{k}={v!r} (the profile says {profile['policy'][k]!r})" for k, v in kept.items()
        )
    say(line)


async def submit(orch: Orchestrator, args: argparse.Namespace, plan: Planned) -> int:
    say_profile(plan.profile)
    run_id = await orch.create_run(plan.plan, profile=plan.profile)
    if args.json:
        print_json({"id": run_id})
    say(
        f"run {run_id} queued ({len(plan.plan.steps)} steps); a `loopdeck worker` on this "
        f"database drives it — watch it with `loopdeck attach {run_id}`"
    )
    return EXIT_OK


async def worker(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    pool = Worker(
        orch,
        name=args.name,
        max_runs=args.max_runs,
        poll_s=args.poll,
        grace_s=args.grace,
        on_note=say,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pool.stop)
    await pool.run()
    return EXIT_OK


async def drive(orch: Orchestrator, run_id: str, args: argparse.Namespace) -> int:
    """Drive the run here, its progress on stderr, answering gates as ``--approve`` says."""
    snapshot = await orch.snapshot(run_id, events=False, spans=False)
    say(f"run {run_id}: {snapshot['run']['goal'] or '(no goal)'} — {len(snapshot['steps'])} steps")
    progress = Progress(err, run_id, snapshot)
    sub = orch.subscribe(run_id)
    Interrupted.run_id = run_id
    helpers = _Helpers(progress)
    watcher = helpers.start(_watch(orch, run_id, sub, progress, args.approve, helpers))
    helpers.start(_watch_children(orch, run_id, args.approve, helpers))
    if snapshot["run"]["status"] == RunStatus.AWAITING_PLAN_APPROVAL.value:
        progress.note(progress.plan_waits(None))
        if args.approve in ("all", "none"):
            helpers.start(_answer_plan(orch, run_id, args.approve, progress))
    try:
        with progress:
            status = await orch.drive(run_id, on_wait=progress.note)
            await asyncio.sleep(0)  # let the watcher see the final events
    finally:
        for task in list(helpers.tasks):
            task.cancel()
        sub.close()
        await asyncio.gather(watcher, *helpers.tasks, return_exceptions=True)
    return exit_for(status, args, await orch.snapshot(run_id, events=args.json))


CHILD_POLL_S = 0.5  # how often a headless run looks for new child runs (sub_agent steps) to watch


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
            self.progress.note(
                literal(mask_urls(f"loopdeck: unexpected error in the progress display: {type(exc).__name__}: {exc}"))
            )


async def _watch(
    orch: Orchestrator, run_id: str, sub: Any, progress: Progress, approve: str, helpers: _Helpers, child: bool = False
) -> None:
    """Feed events to the progress display; answer gates when --approve says so."""
    async for item in sub:
        if not hasattr(item, "type"):
            continue  # a Gap: the tally catches up on the next events; nothing is lost in the store
        progress.on_event(item)
        if child and item.type == EventType.RUN_ENDED:
            return
        if child and item.type == EventType.RUN_PLAN_PROPOSED and not item.step_key and approve in ("all", "none"):
            helpers.start(_answer_plan(orch, run_id, approve, progress))
        if item.type == EventType.STEP_WAITING and approve in ("all", "none"):
            helpers.start(_answer_gate(orch, run_id, item.step_key, approve, progress))
        if item.type in (EventType.TOOL_CALL_WAITING, EventType.TOOL_CALL_INTERRUPTED) and approve in ("all", "none"):
            helpers.start(_answer_call(orch, run_id, item.payload["call"], approve, progress))
        if item.type == EventType.RUN_PLAN_PROPOSED and item.step_key and approve in ("all", "none"):
            helpers.start(_answer_plan(orch, run_id, approve, progress))


async def _watch_children(orch: Orchestrator, run_id: str, approve: str, helpers: _Helpers) -> None:
    """A child run's gates (a sub_agent step's plan) wait in the run too: each is said on stderr with the
    command that answers it, and answered as --approve says (grandchildren alike).

    Children are made in this process: each one's ``run_created`` wakes the look at once (an answer from
    another terminal can end a child's gate within milliseconds, before a poll would have seen it). A child
    that ended before it was seen is still told from its first event; one that had ended before this began
    (a resumed run's) is not told again."""
    seen: set[str] = set()
    first = True
    created = orch.subscribe(None)
    try:
        while True:
            try:
                if (await orch.run(run_id, plan=False)).status.terminal:
                    return  # its children are done with it
                for child in await orch.children(run_id):
                    if child["id"] in seen:
                        continue
                    seen.add(child["id"])
                    if first and RunStatus(child["status"]).terminal:
                        continue  # ended before this began (a resumed run's): not told again
                    snapshot = await orch.snapshot(child["id"], events=False, spans=False)
                    progress = Progress(err, child["id"], snapshot, child_of=f'step "{child["step"]}" of run {run_id}')
                    helpers.start(_watch_child(orch, child["id"], progress, approve, helpers))
                    helpers.start(_watch_children(orch, child["id"], approve, helpers))
                first = False
            except LoopdeckError:
                pass  # the store is busy or away: looked at again shortly (the run's own progress says more)
            await _a_run_created(created, CHILD_POLL_S)
    finally:
        created.close()


async def _a_run_created(sub: Subscription, timeout: float) -> None:
    """Until a run is created in this process (a child run, it may be), or ``timeout`` passes."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                item = await sub.get()
                if not hasattr(item, "type") or item.type == EventType.RUN_CREATED:  # (a Gap: look anyway)
                    return


async def _watch_child(orch: Orchestrator, child: str, progress: Progress, approve: str, helpers: _Helpers) -> None:
    """Its events from its first (a gate may have opened before it was seen), then as they come, until it ends;
    a child's own plan review (its plan says plan_approval: required) is answered like a replan's."""
    await _watch(orch, child, orch.follow(child, 0), progress, approve, helpers, child=True)


async def _answer_plan(orch: Orchestrator, run_id: str, approve: str, progress: Progress) -> None:
    try:
        await orch.approve_plan(
            run_id,
            approve=approve == "all",
            user=f"{orch.user} (--approve {approve})",
            reason=f"{'approved' if approve == 'all' else 'rejected'} automatically",
        )
    except LoopdeckError as exc:
        progress.note(literal(f"could not answer the plan review: {exc}"))


async def _answer_gate(orch: Orchestrator, run_id: str, key: str, approve: str, progress: Progress) -> None:
    try:
        if approve == "all":
            await orch.approve(run_id, key, user=f"{orch.user} (--approve all)", reason="approved automatically")
        else:
            await orch.reject(run_id, key, user=f"{orch.user} (--approve none)", reason="rejected automatically")
    except LoopdeckError as exc:
        progress.note(literal(f"could not answer the gate of {key}: {exc}"))


async def _answer_call(orch: Orchestrator, run_id: str, call_id: str, approve: str, progress: Progress) -> None:
    try:
        await orch.decide_call(
            run_id,
            call_id,
            approve=approve == "all",
            user=f"{orch.user} (--approve {approve})",
            reason=f"{'approved' if approve == 'all' else 'rejected'} automatically",
        )
    except LoopdeckError as exc:
        progress.note(literal(f"could not answer tool call {call_id}: {exc}"))


def exit_for(status: RunStatus, args: argparse.Namespace, final: dict[str, Any] | None) -> int:
    if final is not None:
        run = final["run"]
        style = "green" if status == RunStatus.SUCCEEDED else "red"
        line = Text.assemble(("run ", ""), (run["id"], "bold"), " ended ", (status.value, style))
        said = (run.get("result") or {}).get("summary") or run["reason"]  # the summary holds the reason too
        if said:
            line.append(": ")
            line.append_text(literal(said))
        line.append(f" · {run['tokens']['total']:,} tokens")
        err.print(line)
        if getattr(args, "json", False):
            print_json(final)
    return EXIT_OK if status == RunStatus.SUCCEEDED else EXIT_RUN_NOT_OK
