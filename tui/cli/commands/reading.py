"""Reading runs: ``runs``, ``show``, ``calls``, ``agents``, ``export``, ``workers``, ``schema``."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table
from rich.text import Text

from core import Orchestrator, call_json, dumps, nested_runs, worker_json
from tui.cli.output import EXIT_OK, listing, out, print_columns, print_json, say, write_text
from tui.text.literal import clean, literal
from tui.text.money import dollars
from tui.text.runs import driver_words, waiting_words


async def runs(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    listed = await orch.runs(args.limit)
    if args.json:
        print_json(
            [
                {
                    k: r[k]
                    for k in (
                        "id",
                        "goal",
                        "status",
                        "created_at",
                        "ended_at",
                        "steps",
                        "done",
                        "tokens",
                        "cost_usd",
                        "profile",
                        "parent",
                        "driver",
                        "waiting_for",
                    )
                }
                for r in listed
            ]
        )
        return EXIT_OK
    if not listed:
        say("no runs yet: `loopdeck demo --headless` starts one")
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "STATUS", "PROGRESS", "TOKENS", "COST", "CREATED", "GOAL"):  # (STATUS: and what it waits for)
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=60 if col == "GOAL" else None)
    for depth, r in nested_runs(listed):
        table.add_row(
            "  " * (depth - 1) + "└ " + r["id"] if depth else r["id"],
            literal(status_line(r)),
            f"{r['done']}/{r['steps']}",
            f"{r['tokens']:,}",
            dollars(r["cost_usd"]),
            (r["created_at"] or "")[:19].replace("T", " "),
            literal(r["goal"]),
        )
    out.print(table)
    return EXIT_OK


def status_line(run: dict[str, Any]) -> str:
    """``waiting_user: publish``, ``running, driver gone``: the status, what it waits for, whether anyone drives it."""
    waiting, driver = waiting_words(run), driver_words(run)
    return run["status"] + (f": {waiting}" if waiting else "") + (f", {driver}" if driver else "")


async def calls(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    """A run's tool calls: one line each, or ``--json`` (the same objects as ``show --json``'s ``tool_calls``)."""
    found = await orch.tool_calls(args.run_id)
    if args.json:
        print_json([call_json(c) for c in found])
        return EXIT_OK
    if not found:
        out.print("no tool calls")
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in ("id", "status", "tool", "arguments", "decided", "rule / reason"):
        table.add_column(column, overflow="fold")
    for c in found:
        decided = c.decided_by or ""
        why = " · ".join(x for x in (c.rule, c.reason) if x)
        table.add_row(
            literal(c.id),
            literal(c.status.value),
            literal(c.tool),
            literal(dumps(c.arguments)),
            literal(decided),
            literal(why),
        )
    out.print(table)
    return EXIT_OK


async def show(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    snap = await orch.snapshot(args.run_id, events=args.json, spans=args.json)  # (the table counts events)
    if args.json:
        print_json(snap)
        return EXIT_OK
    run = snap["run"]
    events = await orch.event_count(run["id"])
    head = Text.assemble((run["id"], "bold"), "  ", literal(run["status"], "bold"), "  ", literal(run["goal"]))
    if run["reason"]:
        head.append("\n  ")
        head.append_text(literal(run["reason"]))
    if run["driver"] and run["driver"]["state"] != "alive":
        head.append("\n  ")
        head.append_text(literal(run["driver"]["text"] + f"; `loopdeck resume {run['id']}` drives it here"))
    out.print(head)
    print_columns(
        ("STEP", "STATUS", "AGENT", "TRY", "TOKENS", "COST", "ERROR"),
        [
            (
                clean(s["key"]),
                clean(s["status"]),
                clean(s["agent"]),
                str(s["attempts"]),
                f"{s['tokens']['total']:,}",
                dollars(s["cost_usd"]),
                clean((s["error"] or "")[:200]),
            )
            for s in snap["steps"]
        ],
        fold=6,  # (an error continues on the next lines)
    )
    unpriced = run["unpriced_steps"]
    out.print(
        f"{events} events; tokens {run['tokens']['total']:,}"
        + (f" of {run['token_budget']:,}" if run["token_budget"] is not None else "")
        + f"; cost {dollars(run['cost_usd'], unpriced)}"
        + (f" ({unpriced} step{'s' if unpriced != 1 else ''} unpriced)" if unpriced else "")
    )
    if run.get("result"):
        print_result(run["result"])
    return EXIT_OK


def print_result(result: dict[str, Any]) -> None:
    """The run's result, for a person: the summary (naming who finished it), the answer (text, or JSON)."""
    out.print(Text.assemble(("result: ", "bold"), literal(result["summary"])))
    answer = result.get("answer")
    out.print(Text("answer:", style="bold"))
    out.print(literal(answer if isinstance(answer, str) else dumps(answer, indent=2)))


async def agents(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    found = await orch.agents()
    return listing(
        args.json,
        found,
        "no agent has run yet",
        ("AGENT", "ATTEMPTS", "FAILURES", "TOKENS", "COST", "👍", "👎", "RATE"),
        [
            (
                literal(name),
                str(a["attempts"]),
                str(a["failures"]),
                f"{a['tokens']['total']:,}",
                dollars(a["cost_usd"], a["unpriced_attempts"]),
                str(a["feedback"]["up"]),
                str(a["feedback"]["down"]),
                "-" if a["feedback"]["rate"] is None else f"{a['feedback']['rate']:.0%}",
            )
            for name, a in found.items()
        ],
    )


async def export(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    data = await orch.export_otlp(args.run_id)
    if args.out:
        write_text(args.out, dumps(data, indent=2))
        spans = len(data["resourceSpans"][0]["scopeSpans"][0]["spans"])
        say(f"wrote {spans} spans to {args.out}")
    else:
        print_json(data)
    return EXIT_OK


async def workers(orch: Orchestrator, args: argparse.Namespace, _: Any) -> int:
    data = [worker_json(w) for w in await orch.workers()]
    return listing(
        args.json,
        data,
        "no worker has run on this database: `loopdeck worker` starts one",
        ("NAME", "HOST", "PID", "HEARTBEAT", "STOPPED", "CLAIMED"),
        [
            (
                literal(w["name"]),
                literal(w["host"]),
                str(w["pid"]),
                (w["heartbeat_at"] or "")[11:19],
                (w["stopped_at"] or "")[11:19] or "-",
                str(w["runs_claimed"]),
            )
            for w in data
        ],
    )


async def schema(args: argparse.Namespace, _: Any) -> int:
    from core import plan_json_schema  # (the plan's models: not for every reading command)

    print_json(plan_json_schema())
    return EXIT_OK
