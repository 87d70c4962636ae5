"""The one-line header: run status, elapsed time, token gauge, slots, breakers, badges."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.dashboard.palette import named, status_style
from tui.dashboard.viewmodel import RunView, parse_iso
from tui.text.literal import literal
from tui.text.money import dollars


def gauge(used: int, budget: int | None, width: int = 10) -> Text:
    if not budget:
        return Text(f"{used:,} tokens")
    share = min(1.0, used / budget)
    filled = round(share * width)
    style = "gauge.over" if share >= 0.9 else "gauge.high" if share >= 0.7 else "gauge.ok"
    return Text.assemble((("█" * filled), style), ("░" * (width - filled), "dim"), f" {used:,}/{budget:,} tokens")


def elapsed_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# how much a header part matters: when the line is too narrow, the least important go first (the last of equals)
VITAL, HIGH, USEFUL, EXTRA = 0, 1, 2, 3


def fit(parts: list[tuple[int, Text]], width: int) -> Text:
    """The parts in order, dropping the least important ones until the line fits ``width`` cells."""
    kept = list(parts)
    while kept and sum(part.cell_len for _, part in kept) > width:
        lowest = max(rank for rank, _ in kept)
        if lowest == VITAL:
            break
        drop = max(i for i, (rank, _) in enumerate(kept) if rank == lowest)
        del kept[drop]
    line = Text().join(part for _, part in kept)
    line.truncate(max(1, width), overflow="ellipsis")
    return line


def header_parts(
    view: RunView, now: float, frozen: bool, read_only: bool, in_full: bool = True
) -> list[tuple[int, Text]]:
    """The header's parts with their importance: status and what needs the operator first, detail last;
    ``in_full``: a gone driver said in full (who, where, since when), else in two words."""
    parts: list[tuple[int, Text]] = [(VITAL, Text(f" {view.status.replace('_', ' ')} ", status_style(view.status)))]
    if view.driver_gone and not view.finished:
        what = view.driver_gone if in_full else "driver gone" if view.driver_state == "gone" else "no driver"
        parts.append((VITAL, Text(f" ⚠ {what}{'' if read_only else ' (R drives it here)'} ", "badge.orphaned")))
    calls = view.waiting_calls
    waiting = len(view.waiting) + len(calls)
    if waiting:
        parts.append((VITAL, Text(f" ⏸ {waiting} awaiting approval (A) ", "badge.waiting")))
        due = [view.steps[k].deadline for k in view.waiting if k in view.steps]
        due += [view.calls[c].deadline for c in calls]
        soonest = min((at for at in map(parse_iso, due) if at is not None), default=None)
        if soonest is not None:
            parts.append((HIGH, Text(f" ⏱ {elapsed_text(soonest - now)} left ", "badge.deadline")))
    for agent, state in sorted(view.breakers.items()):
        if state != "closed":  # an open breaker matters; closed ones are detail
            parts.append(
                (
                    VITAL,
                    Text.assemble(" ", literal(agent), f":{state.replace('_', '-')} ", style=named("breaker", state)),
                )
            )
    if frozen:
        parts.append((VITAL, Text(" ❄ frozen (space) ", "badge.frozen")))
    if read_only:
        parts.append((HIGH, Text(" read-only ", "badge.read_only")))
    parts.append((HIGH, Text(f" {elapsed_text(view.elapsed(now))} ")))
    parts.append((HIGH, Text(f" {view.done}/{len(view.steps)} done ")))
    parts.append((USEFUL, Text.assemble(" ", gauge(view.tokens, view.budget), " ")))
    if view.cost_usd or view.unpriced or view.cost_budget is not None:
        spent = None if view.unpriced and not view.cost_usd else view.cost_usd  # only unpriced spending: unknown
        cost = f" {dollars(spent, len(view.unpriced))}"
        if view.cost_budget is not None:
            cost += f"/{dollars(view.cost_budget)}"
        parts.append((USEFUL, Text(cost + " ")))
    parts.append((USEFUL, Text(f" slots {view.count('running')}/{view.max_concurrency or '?'} ")))
    if view.profile:
        parts.append((EXTRA, literal(f" ◆ {view.profile} ", "bold")))
    if view.parent:
        parts.append((EXTRA, literal(f" ↳ child of {view.parent} ", "dim")))
    for agent, state in sorted(view.breakers.items()):
        if state == "closed":
            parts.append((EXTRA, Text.assemble(" ", literal(agent), ":closed ", style=named("breaker", state))))
    return parts


class HeaderBar(Static):
    """One line; on a narrow terminal the least important parts give way (the badges that need the operator stay)."""

    _shown: Text | None = None

    def show_run(self, view: RunView, now: float, frozen: bool = False, read_only: bool = False) -> None:
        width = (self.content_region.width or self.app.size.width) - 1
        parts = header_parts(view, now, frozen, read_only)
        if sum(part.cell_len for _, part in parts) > width:
            parts = header_parts(view, now, frozen, read_only, in_full=False)
        text = fit(parts, width)
        if text != self._shown:  # ten ticks a second: an unchanged header is not redrawn (nor sent to a browser)
            self._shown = text
            self.update(text)

    def restyle(self) -> None:
        """The theme changed: the next tick redraws."""
        self._shown = None
