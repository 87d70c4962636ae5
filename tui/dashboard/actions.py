"""One registry of operator actions: it feeds the key bindings, the footer,
the help screen and the command palette, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ActionSpec:
    id: str
    key: str
    action: str  # the Textual action string, e.g. "feedback('up')"
    label: str  # short, for the footer
    help: str  # one sentence, for the help screen, tooltip and palette
    writes: bool = True  # disabled in --read-only
    show: bool = True  # shown in the footer
    key_display: str | None = None
    priority: bool = False  # wins over the focused widget's own binding (the tree's space)


RUN_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "approvals", "A", "open_approvals", "Approvals", "Open the queue of steps waiting for approval", key_display="A"
    ),
    ActionSpec(
        "plan_review",
        "P",
        "open_plan_review",
        "Plan",
        "Review the plan (or replan) waiting for approval",
        key_display="P",
    ),
    ActionSpec(
        "feedback_up", "plus", "feedback('up')", "👍", "Thumbs up for the highlighted finished step", key_display="+"
    ),
    ActionSpec(
        "feedback_down",
        "minus",
        "feedback('down')",
        "👎",
        "Thumbs down for the highlighted finished step",
        key_display="-",
    ),
    ActionSpec("budget", "b", "raise_budget", "Budget", "Set the run's token budget (a paused run continues)"),
    ActionSpec("skip", "s", "skip_step", "Skip", "Skip the highlighted step (pending or waiting): it will not run"),
    ActionSpec("retry", "t", "retry_step", "Retry", "Give the highlighted failed step one more attempt"),
    ActionSpec(
        "filter",
        "slash",
        "filter",
        "Filter",
        "Show only steps whose key, status or agent matches",
        writes=False,
        key_display="/",
    ),
    ActionSpec(
        "freeze",
        "space",
        "freeze",
        "Freeze",
        "Freeze or resume live updates (nothing is lost meanwhile)",
        writes=False,
        key_display="space",
        priority=True,
    ),
    ActionSpec("cancel", "x", "cancel_run", "Cancel", "Cancel the run (asks to confirm, then for a reason)"),
    ActionSpec(
        "finish", "f", "finish_run", "Finish", "End the run now with a final answer (asks to confirm, then for it)"
    ),
    ActionSpec("follow", "end", "follow_log", "Follow", "Follow the event log again", writes=False, show=False),
    ActionSpec(
        "open_child",
        "enter",
        "open_child",
        "Open",
        "Open the highlighted sub-agent step's child run (esc comes back)",
        writes=False,
        show=False,
        priority=True,
    ),
    ActionSpec(
        "runs",
        "escape",
        "runs",
        "Back",
        "Back to the run this one was opened from, or the runs list",
        writes=False,
        key_display="esc",
    ),
    ActionSpec("help", "question_mark", "help", "Help", "List every key binding", writes=False, key_display="?"),
    ActionSpec("quit", "q", "app.quit", "Quit", "Quit the dashboard (a run driven here stays resumable)", writes=False),
)


def bindings(specs: tuple[ActionSpec, ...]) -> list[Binding]:
    return [
        Binding(
            spec.key,
            spec.action,
            spec.label,
            show=spec.show,
            key_display=spec.key_display,
            priority=spec.priority,
            tooltip=spec.help,
            id=spec.id,
        )
        for spec in specs
    ]
