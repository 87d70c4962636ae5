"""Headless progress on stderr: steps done/total, running, waiting for approval, tokens.

It folds the run's events with the engine's projection (``core.RunProjection``,
the same fold the dashboard uses). On a terminal it redraws one live line;
elsewhere (CI, a log file) it prints a line when something notable happens
and a heartbeat line every few seconds, never a flood.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from core import Event, EventType, RunProjection, StepProjection
from tui.text.literal import literal
from tui.text.money import budget_text

E = EventType


def tally(snapshot: dict[str, Any]) -> RunProjection:
    """The run as the snapshot has it, ready to fold the events that follow."""
    run = snapshot["run"]
    projection = RunProjection(
        run_id=run["id"], status=run["status"], tokens=run["tokens"]["total"], budget=run["token_budget"]
    )
    for s in snapshot["steps"]:
        projection.steps[s["key"]] = StepProjection(
            key=s["key"], agent=s["agent"], status=s["status"], attempts=s["attempts"]
        )
    return projection


def line(run: RunProjection) -> Text:
    budget = f"/{run.budget:,}" if run.budget is not None else ""
    text = Text()
    text.append(f"{run.status:<12}", style="bold")
    text.append(
        f" {run.done}/{len(run.steps)} done · {run.count('running')} running · "
        f"{run.count('waiting_user')} waiting for approval · "
        f"{run.count('failed')} failed · {run.tokens:,}{budget} tokens"
    )
    return text


class Progress:
    """Shows a run's progress on ``console`` (stderr) while events stream in."""

    HEARTBEAT_S = 5.0

    def __init__(
        self, console: Console, run_id: str, snapshot: dict[str, Any], quiet: bool = False, child_of: str = ""
    ) -> None:
        self.console = console
        self.run_id = run_id
        self.child_of = child_of  # a child run's (its notes say whose; the parent's line shows the progress)
        self.tally = tally(snapshot)
        self.quiet = quiet
        self._live: Live | None = None
        self._last_print = 0.0
        # tool calls that already wait (a resumed run): their answer is one command away, said again
        self._waiting = [
            (c["id"], c["tool"], c["status"])
            for c in snapshot.get("tool_calls", ())
            if c["status"] in ("waiting_user", "interrupted")
        ]

    def __enter__(self) -> Progress:
        if self.console.is_terminal and not self.quiet:
            self._live = Live(line(self.tally), console=self.console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        for call_id, tool, status in self._waiting:
            self.note(self.call_waits(call_id, tool, status == "interrupted"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
        if not self.quiet:
            self.console.print(line(self.tally))

    def note(self, message: str | Text) -> None:
        """A line that stays (above the live line on a terminal)."""
        if not self.quiet:
            if self.child_of:
                message = Text.assemble(("↳ ", "dim"), f"child run {self.run_id} of {self.child_of}: ", message)
            self.console.print(message)

    def on_event(self, event: Event) -> None:
        self.tally.apply(event)
        notable = self._describe(event)
        if notable is not None:
            self.note(notable)
        if self._live is not None:
            self._live.update(line(self.tally))
        elif not self.quiet and not self.child_of and time.monotonic() - self._last_print >= self.HEARTBEAT_S:
            self._last_print = time.monotonic()
            self.console.print(line(self.tally))

    def plan_waits(self, by_step: str | None) -> Text:
        """The line telling the operator a plan waits for review, and how to answer it."""
        what = "the plan" if by_step is None else Text.assemble("a replan proposed by step ", literal(by_step, "bold"))
        return Text.assemble(
            ("⏸ ", "yellow"),
            what,
            " waits for approval: ",
            f"loopdeck approve-plan {self.run_id} [--reject] (see it: loopdeck show {self.run_id} --json)",
        )

    def call_waits(self, call_id: Any, tool: Any, interrupted: bool) -> Text:
        """The line telling the operator a tool call waits, and the exact command that answers it."""
        why = "was interrupted while it ran, and waits" if interrupted else "waits for approval"
        return Text.assemble(
            ("⏸ ", "yellow"),
            "tool call ",
            literal(call_id, "bold"),
            " (",
            literal(tool),
            f") {why}: loopdeck approve-call {self.run_id} ",
            literal(call_id),
            " [--reject] [--args JSON]",
        )

    def _describe(self, event: Event) -> Text | None:
        key = event.step_key or ""
        p = event.payload
        if event.type == E.STEP_WAITING:
            return Text.assemble(
                ("⏸ ", "yellow"),
                "step ",
                literal(key, "bold"),
                " waits for approval: ",
                f"loopdeck approve {self.run_id} ",
                literal(key),
                " [--reject]",
            )
        if event.type in (E.TOOL_CALL_WAITING, E.TOOL_CALL_INTERRUPTED):
            return self.call_waits(p.get("call"), p.get("tool"), event.type == E.TOOL_CALL_INTERRUPTED)
        if event.type in (E.TOOL_CALL_APPROVED, E.TOOL_CALL_REJECTED, E.TOOL_CALL_DENIED):
            mark, verb = {
                E.TOOL_CALL_APPROVED: (("✓ ", "green"), " approved by "),
                E.TOOL_CALL_REJECTED: (("✗ ", "red"), " rejected by "),
                E.TOOL_CALL_DENIED: (("✗ ", "red"), " denied by "),
            }[event.type]
            who = p.get("user") or p.get("rule")
            return Text.assemble(mark, "tool call ", literal(p.get("call"), "bold"), verb, literal(who))
        if event.type == E.APPROVAL_RULE_ADDED:
            rule = p.get("rule") or {}
            return Text.assemble(
                ("+ ", "green"),
                "rule added by ",
                literal(p.get("user")),
                ": ",
                literal(f"{rule.get('tool')} -> {rule.get('action')}"),
            )
        if event.type == E.STEP_APPROVED:
            return Text.assemble(
                ("✓ ", "green"), "step ", literal(key, "bold"), " approved by ", literal(p.get("user"))
            )
        if event.type == E.STEP_REJECTED:
            return Text.assemble(("✗ ", "red"), "step ", literal(key, "bold"), " rejected by ", literal(p.get("user")))
        if event.type == E.STEP_RETRYING:
            return Text.assemble(
                ("↻ ", "yellow"),
                "step ",
                literal(key, "bold"),
                f" attempt {p.get('attempt')} failed (",
                literal(p.get("error")),
                f"); retrying in {p.get('delay_s', 0):.1f}s",
            )
        if event.type == E.STEP_FAILED:
            return Text.assemble(("✗ ", "red"), "step ", literal(key, "bold"), " failed: ", literal(p.get("error")))
        if event.type == E.STEP_REQUEUED:
            return Text.assemble(
                ("↻ ", "yellow"),
                "step ",
                literal(key, "bold"),
                f" requeued (attempt {p.get('attempt')} was interrupted)",
            )
        if event.type == E.RUN_RESUMED:
            return Text(f"run {self.run_id} resumed")
        if event.type == E.BREAKER_CHANGED:
            style = {"open": "red", "half_open": "yellow", "closed": "green"}.get(p.get("to"), "")
            return Text.assemble(
                ("⚡ ", style),
                "breaker of ",
                literal(p.get("agent"), "bold"),
                " ",
                (str(p.get("to")), style),
                " (",
                literal(p.get("reason")),
                ")",
            )
        if event.type == E.STEP_HELD:
            return Text.assemble(("⏳ ", "yellow"), "step ", literal(key, "bold"), " waits: ", literal(p.get("reason")))
        if event.type == E.STEP_ROUTED:
            return Text.assemble(
                ("↪ ", "cyan"),
                "step ",
                literal(key, "bold"),
                " routed from ",
                literal(p.get("from")),
                " to ",
                literal(p.get("to")),
                " (",
                literal(p.get("reason")),
                ")",
            )
        if event.type == E.RUN_FINISHED:
            why = p.get("reason")
            return Text.assemble(
                ("■ ", "bold"),
                f"run finished ({p.get('status')}) by ",
                literal(p.get("user")),
                *((": ", literal(why)) if why else ()),
            )
        if event.type == E.BUDGET_EXHAUSTED:
            flag = "--usd DOLLARS" if p.get("unit") == "usd" else "--set N"
            return Text.assemble(
                ("⏸ ", "yellow"), literal(p.get("reason")), f"; raise it: loopdeck budget {self.run_id} {flag}"
            )
        if event.type == E.BUDGET_CHANGED:
            usd = p.get("unit") == "usd"
            shown = budget_text(p.get("to"), usd)
            return Text.assemble(f"{'cost' if usd else 'token'} budget set to {shown} by ", literal(p.get("user")))
        if event.type == E.RUN_PLAN_PROPOSED and key:
            return self.plan_waits(key)
        if event.type in (E.RUN_PLAN_APPROVED, E.RUN_PLAN_REJECTED):
            verb, style = ("approved", "green") if event.type == E.RUN_PLAN_APPROVED else ("rejected", "red")
            return Text.assemble(
                ("✓ " if style == "green" else "✗ ", style), f"plan {verb} by ", literal(p.get("user"))
            )
        if event.type == E.REPLAN_REFUSED:
            return Text.assemble(
                ("✗ ", "red"), "replan proposed by step ", literal(key, "bold"), " refused: ", literal(p.get("error"))
            )
        if event.type == E.RUN_REPLANNED:
            return Text.assemble(
                "run replanned by ",
                literal(p.get("user")),
                f" ({p.get('mode')}): +{len(p.get('added', []))} / -{len(p.get('removed', []))} steps",
            )
        return None
