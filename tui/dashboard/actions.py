"""One registry of operator actions: it feeds the key bindings, the footer,
the help screen and the command palette, so they can never disagree.

Each full screen names its registry (``RUN_ACTIONS``, ``RUNS_ACTIONS``) as
its ``ACTIONS``; the palette offers only the top screen's, and never a write
in read-only mode (``LoopdeckScreen.check_action``).
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
    title: str = ""  # the command palette's name for it (default: the label)
    palette: bool = True  # offered in the command palette (Quit is offered once, by Textual)

    @property
    def name(self) -> str:
        return self.title or self.label

    @property
    def method(self) -> str:
        """The action's name without its arguments: what ``check_action`` is asked about."""
        return self.action.split("(")[0]


# help and quit come first on every screen (and as priority bindings, which the footer lists first): a narrow
# footer keeps them
HELP = ActionSpec(
    "help", "question_mark", "help", "Help", "List every key binding", writes=False, key_display="?", priority=True
)
QUIT = ActionSpec(
    "quit",
    "q",
    "app.quit",
    "Quit",
    "Quit the dashboard (a run driven here stays resumable)",
    writes=False,
    palette=False,  # Textual's palette offers its own Quit
    priority=True,
)

RUN_ACTIONS: tuple[ActionSpec, ...] = (
    HELP,
    QUIT,
    ActionSpec(
        "approvals",
        "A",
        "open_approvals",
        "Approvals",
        "Open the queue of steps waiting for approval (read-only: to look at it)",
        writes=False,  # the dialog itself refuses answers in read-only mode
        key_display="A",
    ),
    ActionSpec(
        "plan_review",
        "P",
        "open_plan_review",
        "Plan",
        "Review the plan (or replan) waiting for approval (read-only: to look at it)",
        writes=False,
        key_display="P",
    ),
    ActionSpec(
        "resume",
        "R",
        "resume_run",
        "Resume",
        "Drive this run here: no process drives it (as `loopdeck resume`)",
        key_display="R",
    ),
    ActionSpec(
        "feedback_up",
        "plus",
        "feedback('up')",
        "👍",
        "Thumbs up for the highlighted finished step",
        key_display="+",
        title="Thumbs up",
    ),
    ActionSpec(
        "feedback_down",
        "minus",
        "feedback('down')",
        "👎",
        "Thumbs down for the highlighted finished step",
        key_display="-",
        title="Thumbs down",
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
        "follow_active",
        "F",
        "follow_active",
        "Active",
        "Keep the cursor on the running (or waiting) step: a long plan scrolls with the run",
        writes=False,
        show=False,
        key_display="F",
        title="Follow the active steps",
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
    ActionSpec(
        "follow",
        "end",
        "follow_log",
        "Follow",
        "Follow the event log again (from anywhere: the tree's own end gives way)",
        writes=False,
        show=False,
        priority=True,
        title="Follow the log",
    ),
    ActionSpec(
        "events",
        "l",
        "open_events",
        "Log",
        "Open the recent events, each in full",
        writes=False,
        show=False,
        title="Events in full",
    ),
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
)

RUNS_ACTIONS: tuple[ActionSpec, ...] = (
    HELP,
    QUIT,
    ActionSpec("runs_open", "enter", "open_run", "Open", "Open the highlighted run", writes=False, show=False),
    ActionSpec(
        "runs_approvals",
        "A",
        "approve_run",
        "Approve",
        "Open the highlighted run at its approval dialog (its gates queue there)",
        writes=False,  # it only opens the run; answering is the dialog's, read-only there too
        key_display="A",
        title="Approve the run's gates",
    ),
    ActionSpec(
        "runs_resume",
        "R",
        "resume_run",
        "Resume",
        "Drive the highlighted run here: no process drives it (as `loopdeck resume`)",
        key_display="R",
    ),
    ActionSpec("runs_cancel", "x", "cancel_run", "Cancel", "Cancel the highlighted run (asks to confirm, then why)"),
    ActionSpec(
        "runs_filter",
        "slash",
        "filter",
        "Filter",
        "Show only runs whose status, goal or id holds a text (e.g. waiting, failed)",
        writes=False,
        key_display="/",
    ),
)

# keys of the widgets themselves: in the help screen and the README, not bindings of ours
NAVIGATION_KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓  pgup pgdn", "move in the tree or the runs list (home: the first step)"),
    ("enter", "open the highlighted run; on a sub-agent step, its child run; on another step, fold or unfold it"),
    ("tab  shift+tab", "move between the tree, the detail tabs and the event log"),
    ("← →", "switch the detail tab when the tabs are focused"),
    ("ctrl+p", "command palette: every action of the screen by name (and the theme)"),
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
