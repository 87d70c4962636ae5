"""The one-line header: run status, elapsed time, token gauge, slots, breakers, badges."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.dashboard.viewmodel import RunView, parse_iso
from tui.text.literal import literal
from tui.text.money import dollars

STATUS_STYLE = {
    "succeeded": "bold green",
    "failed": "bold red",
    "rejected": "bold red",
    "canceled": "bold yellow",
    "waiting_user": "bold yellow",
    "running": "bold cyan",
    "planning": "bold",
}
BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def gauge(used: int, budget: int | None, width: int = 10) -> Text:
    if not budget:
        return Text(f"{used:,} tokens")
    share = min(1.0, used / budget)
    filled = round(share * width)
    style = "red" if share >= 0.9 else "yellow" if share >= 0.7 else "green"
    return Text.assemble((("█" * filled), style), ("░" * (width - filled), "dim"), f" {used:,}/{budget:,} tokens")


def elapsed_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class HeaderBar(Static):
    _shown: Text | None = None

    def show_run(self, view: RunView, now: float, frozen: bool = False, read_only: bool = False) -> None:
        text = Text()
        text.append(f" {view.status.replace('_', ' ')} ", STATUS_STYLE.get(view.status, "bold"))
        text.append(f" {elapsed_text(view.elapsed(now))}  ")
        if view.parent:
            text.append_text(literal(f"↳ child of {view.parent}  ", "dim"))
        if view.profile:
            text.append_text(literal(f"◆ {view.profile}  ", "bold"))
        text.append_text(gauge(view.tokens, view.budget))
        if view.cost_usd or view.unpriced or view.cost_budget is not None:
            spent = None if view.unpriced and not view.cost_usd else view.cost_usd  # only unpriced spending: unknown
            text.append(f" · {dollars(spent, len(view.unpriced))}")
            if view.cost_budget is not None:
                text.append(f"/{dollars(view.cost_budget)}")
        running = view.count("running")
        text.append(f"  slots {running}/{view.max_concurrency or '?'}  ")
        text.append(f"{view.done}/{len(view.steps)} done  ")
        for agent, state in sorted(view.breakers.items()):
            text.append_text(literal(agent, BREAKER_STYLE.get(state, "")))
            text.append(f":{state.replace('_', '-')} ", BREAKER_STYLE.get(state, ""))
        calls = view.waiting_calls
        waiting = len(view.waiting) + len(calls)
        if waiting:
            text.append(f" ⏸ {waiting} awaiting approval (A) ", "bold reverse yellow")
            due = [view.steps[k].deadline for k in view.waiting if k in view.steps]
            due += [view.calls[c].deadline for c in calls]
            soonest = min((at for at in map(parse_iso, due) if at is not None), default=None)
            if soonest is not None:
                text.append(f" ⏱ {elapsed_text(soonest - now)} left ", "bold yellow")
        if frozen:
            text.append(" ❄ frozen (space) ", "bold reverse blue")
        if read_only:
            text.append(" read-only ", "reverse")
        if text != self._shown:  # ten ticks a second: an unchanged header is not redrawn (nor sent to a browser)
            self._shown = text
            self.update(text)
