"""Headless progress on stderr: steps done/total, running, waiting for approval, tokens.

It folds the run's events into a small tally. On a terminal it redraws one
live line; elsewhere (CI, a log file) it prints a line when something notable
happens and a heartbeat line every few seconds, never a flood.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from core import PLAN_REVIEW_EVENTS, RUN_STATUS_EVENTS, STEP_STATUS_AFTER, Event, EventType

from tui.text.literal import literal

E = EventType
TERMINAL = {"succeeded", "failed", "skipped", "rejected"}


class Tally:
    """Step statuses and token totals of one run, kept current from its events."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.status: dict[str, str] = {s["key"]: s["status"] for s in snapshot["steps"]}
        self.tokens = snapshot["run"]["tokens"]["total"]
        self.budget = snapshot["run"]["token_budget"]
        self.run_status = snapshot["run"]["status"]

    def apply(self, event: Event) -> None:
        new = STEP_STATUS_AFTER.get(event.type)  # type: ignore[call-overload]
        if new and event.step_key in self.status:
            self.status[event.step_key] = new
        tokens = event.payload.get("tokens") if isinstance(event.payload, dict) else None
        if isinstance(tokens, dict):
            self.tokens += int(tokens.get("prompt", 0)) + int(tokens.get("completion", 0))
        if event.type in RUN_STATUS_EVENTS or event.type in PLAN_REVIEW_EVENTS:
            self.run_status = event.payload.get("status", self.run_status)
        elif event.type == E.BUDGET_CHANGED:
            self.budget = event.payload.get("to")
        elif event.type == E.RUN_REPLANNED:
            for key in event.payload.get("removed", []):
                self.status.pop(key, None)
            for key in event.payload.get("added", []):
                self.status.setdefault(key, "pending")

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.status.values() if s in statuses)

    def line(self) -> Text:
        done, total = self.count(*TERMINAL), len(self.status)
        budget = f"/{self.budget:,}" if self.budget is not None else ""
        text = Text()
        text.append(f"{self.run_status:<12}", style="bold")
        text.append(f" {done}/{total} done · {self.count('running')} running · "
                    f"{self.count('waiting_user')} waiting for approval · "
                    f"{self.count('failed')} failed · {self.tokens:,}{budget} tokens")
        return text


class Progress:
    """Shows a run's progress on ``console`` (stderr) while events stream in."""

    HEARTBEAT_S = 5.0

    def __init__(self, console: Console, run_id: str, snapshot: dict[str, Any], quiet: bool = False) -> None:
        self.console = console
        self.run_id = run_id
        self.tally = Tally(snapshot)
        self.quiet = quiet
        self._live: Live | None = None
        self._last_print = 0.0

    def __enter__(self) -> "Progress":
        if self.console.is_terminal and not self.quiet:
            self._live = Live(self.tally.line(), console=self.console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
        if not self.quiet:
            self.console.print(self.tally.line())

    def note(self, message: str | Text) -> None:
        """A line that stays (above the live line on a terminal)."""
        if not self.quiet:
            self.console.print(message)

    def on_event(self, event: Event) -> None:
        self.tally.apply(event)
        notable = self._describe(event)
        if notable is not None:
            self.note(notable)
        if self._live is not None:
            self._live.update(self.tally.line())
        elif not self.quiet and time.monotonic() - self._last_print >= self.HEARTBEAT_S:
            self._last_print = time.monotonic()
            self.console.print(self.tally.line())

    def plan_waits(self, by_step: str | None) -> Text:
        """The line telling the operator a plan waits for review, and how to answer it."""
        what = "the plan" if by_step is None else Text.assemble("a replan proposed by step ", literal(by_step, "bold"))
        return Text.assemble(("⏸ ", "yellow"), what, " waits for approval: ",
                             f"loopdeck approve-plan {self.run_id} [--reject] (see it: loopdeck show {self.run_id} --json)")

    def _describe(self, event: Event) -> Text | None:
        key = event.step_key or ""
        p = event.payload
        if event.type == E.STEP_WAITING:
            return Text.assemble(
                ("⏸ ", "yellow"), "step ", literal(key, "bold"), " waits for approval: ",
                f"loopdeck approve {self.run_id} ", literal(key), " [--reject]",
            )
        if event.type == E.STEP_APPROVED:
            return Text.assemble(("✓ ", "green"), "step ", literal(key, "bold"), " approved by ", literal(p.get("user")))
        if event.type == E.STEP_REJECTED:
            return Text.assemble(("✗ ", "red"), "step ", literal(key, "bold"), " rejected by ", literal(p.get("user")))
        if event.type == E.STEP_RETRYING:
            return Text.assemble(("↻ ", "yellow"), "step ", literal(key, "bold"), f" attempt {p.get('attempt')} failed (",
                                 literal(p.get("error")), f"); retrying in {p.get('delay_s', 0):.1f}s")
        if event.type == E.STEP_FAILED:
            return Text.assemble(("✗ ", "red"), "step ", literal(key, "bold"), " failed: ", literal(p.get("error")))
        if event.type == E.STEP_REQUEUED:
            return Text.assemble(("↻ ", "yellow"), "step ", literal(key, "bold"), f" requeued (attempt {p.get('attempt')} was interrupted)")
        if event.type == E.RUN_RESUMED:
            return Text(f"run {self.run_id} resumed")
        if event.type == E.BREAKER_CHANGED:
            style = {"open": "red", "half_open": "yellow", "closed": "green"}.get(p.get("to"), "")
            return Text.assemble(("⚡ ", style), "breaker of ", literal(p.get("agent"), "bold"), " ", (str(p.get("to")), style),
                                 " (", literal(p.get("reason")), ")")
        if event.type == E.STEP_HELD:
            return Text.assemble(("⏳ ", "yellow"), "step ", literal(key, "bold"), " waits: ", literal(p.get("reason")))
        if event.type == E.STEP_ROUTED:
            return Text.assemble(("↪ ", "cyan"), "step ", literal(key, "bold"), " routed from ", literal(p.get("from")),
                                 " to ", literal(p.get("to")), " (", literal(p.get("reason")), ")")
        if event.type == E.BUDGET_EXHAUSTED:
            return Text.assemble(("⏸ ", "yellow"), literal(p.get("reason")), f"; raise it: loopdeck budget {self.run_id} --set N")
        if event.type == E.BUDGET_CHANGED:
            return Text.assemble("token budget set to ", str(p.get("to")), " by ", literal(p.get("user")))
        if event.type == E.RUN_PLAN_PROPOSED and key:
            return self.plan_waits(key)
        if event.type in (E.RUN_PLAN_APPROVED, E.RUN_PLAN_REJECTED):
            verb, style = ("approved", "green") if event.type == E.RUN_PLAN_APPROVED else ("rejected", "red")
            return Text.assemble(("✓ " if style == "green" else "✗ ", style), f"plan {verb} by ", literal(p.get("user")))
        if event.type == E.REPLAN_REFUSED:
            return Text.assemble(("✗ ", "red"), "replan proposed by step ", literal(key, "bold"), " refused: ",
                                 literal(p.get("error")))
        if event.type == E.RUN_REPLANNED:
            return Text.assemble("run replanned by ", literal(p.get("user")), f" ({p.get('mode')}): +{len(p.get('added', []))}"
                                 f" / -{len(p.get('removed', []))} steps")
        return None
