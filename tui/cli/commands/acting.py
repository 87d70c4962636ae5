"""Acting on runs: ``approve``, ``cancel``, ``finish``, ``budget``, ``replan``, ``feedback``.

Each goes wherever the run is (this process, the driving one, or the store)
and says so when nobody drives the run: an action in the store does not make it go on.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from core import BadInput, Delivery, Orchestrator, RunResult, RunStatus, load_document, load_text
from tui.cli.output import EXIT_OK, print_json, say
from tui.text.money import budget_text


async def approve(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    kwargs: dict[str, Any] = {}
    if args.input is not None:
        if args.reject:
            raise BadInput("--input goes with approving; a rejected step does not run, so it takes no input")
        kwargs["input"] = args.input.value
    run_id = await orch.resolve_run_id(args.run_id)
    if args.reject:
        delivery = await orch.reject(run_id, args.step_key, user=orch.user, reason=args.reason)
        say(f"step {args.step_key} of run {run_id} rejected by {orch.user}")
    else:
        delivery = await orch.approve(run_id, args.step_key, user=orch.user, reason=args.reason, **kwargs)
        edited = " with edited input" if "input" in kwargs else ""
        say(f"step {args.step_key} of run {run_id} approved{edited} by {orch.user}")
    await say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def approve_call(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    """Answer a waiting tool call from any terminal (through the store to the driving process)."""
    kwargs: dict[str, Any] = {}
    if args.args is not None:
        if args.reject:
            raise BadInput("--args goes with approving; a rejected call does not run")
        kwargs["arguments"] = args.args.value
    run_id = await orch.resolve_run_id(args.run_id)
    delivery = await orch.decide_call(
        run_id, args.call_id, approve=not args.reject, reason=args.reason, always=args.always, user=orch.user, **kwargs
    )
    what = "rejected" if args.reject else "approved with edited arguments" if kwargs else "approved"
    if args.always and not args.reject:
        what += "; its tool is allowed for the rest of the run"
    say(f"tool call {args.call_id} of run {run_id} {what} by {orch.user}")
    await say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def cancel(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    run_id = await orch.resolve_run_id(args.run_id)
    await orch.cancel(run_id, user=orch.user, reason=args.reason)
    say(f"run {run_id} canceled by {orch.user}")
    return EXIT_OK


async def read_answer(args: argparse.Namespace) -> Any:
    """The answer given (``...`` for none), read before the database opens: a missing file writes nothing."""
    if args.answer_file is not None:
        return load_text(args.answer_file, "answer file")
    return ... if args.answer is None else args.answer


async def finish(orch: Orchestrator, args: argparse.Namespace, answer: Any) -> int:
    run_id = await orch.resolve_run_id(args.run_id)
    await orch.finish(run_id, answer=answer, status=args.status, reason=args.reason, user=orch.user)
    result = await ended_result(orch, run_id)
    say(f"run {run_id} finished ({args.status}) by {orch.user}")
    if result is not None:
        say(result.summary)
    if args.json:
        print_json(None if result is None else result.to_json())
    return EXIT_OK


async def ended_result(orch: Orchestrator, run_id: str, timeout_s: float = 10.0) -> RunResult | None:
    """The result of a run an action just ended (its driver elsewhere may take a moment to commit it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await orch.result(run_id)
        if result is not None or time.monotonic() >= deadline:
            return result
        await orch.wait_for_events(run_id, 0.1)


async def set_budget(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    if args.limit is None and args.usd is None:
        raise BadInput("say which budget: --set N (tokens), --usd DOLLARS, or both")
    run_id = await orch.resolve_run_id(args.run_id)
    for given, usd in ((args.limit, False), (args.usd, True)):
        if given is None:
            continue
        limit = given.value
        delivery = await orch.set_budget(run_id, limit, usd=usd, user=orch.user)
        shown = budget_text(limit, usd)
        say(f"run {run_id}: {'cost' if usd else 'token'} budget set to {shown} by {orch.user}")
    await say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def read_steps(args: argparse.Namespace) -> Any:
    """A replan file: YAML or JSON, a list of steps or a mapping with ``steps`` (read before the database opens)."""
    return load_document(args.steps, "steps file")


async def replan(orch: Orchestrator, args: argparse.Namespace, steps: Any) -> int:
    run_id = await orch.resolve_run_id(args.run_id)
    delivery = await orch.replan(run_id, steps, mode=args.mode, user=orch.user, reason=args.reason)
    count = len(steps["steps"] if isinstance(steps, dict) else steps)
    say(f"run {run_id} replanned ({args.mode}): {count} step(s) by {orch.user}")
    await say_who_continues(orch, run_id, delivery)
    return EXIT_OK


async def feedback(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    run_id = await orch.resolve_run_id(args.run_id)
    await orch.feedback(
        run_id, args.step_key, args.rating, comment=args.comment, category=args.category, user=orch.user
    )
    thumb = "👍" if args.rating == "up" else "👎"
    say(f"{thumb} recorded for step {args.step_key} of run {run_id} by {orch.user}")
    return EXIT_OK


async def say_who_continues(orch: Orchestrator, run_id: str, delivery: Delivery) -> None:
    """After an action written to the store of a run nobody drives: say how it goes on (it does not by itself)."""
    if delivery != Delivery.OFFLINE:
        return
    run = await orch.run(run_id, plan=False)
    if not RunStatus(run.status).terminal:
        say(
            f"no process drives run {run_id} now; `loopdeck resume {run_id}` (or a `loopdeck worker` "
            "on this database) continues it"
        )
