"""Every key of a screen, from the same registry as the footer and the palette, and the widgets' own keys."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.dashboard.actions import NAVIGATION_KEYS, ActionSpec

MODAL_KEYS = (
    ("a", "approve the step in the approval dialog"),
    ("A", "approve every gate in the dialog's queue (asks to confirm)"),
    ("r", "reject it (asks for an optional reason)"),
    ("e", "edit its input (a tool call's arguments) as JSON; ctrl+s approves with the edit"),
    ("c", "show what it depends on (the outputs it gets as context) instead of its input"),
    ("w", "a tool call: run it, and allow its tool for the rest of the run"),
    ("esc", "defer: close the dialog, the gate stays open"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close", id="help-close")]

    def __init__(self, actions: tuple[ActionSpec, ...], dialog_keys: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self.actions = actions
        self.dialog_keys = dialog_keys

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="key", no_wrap=True)
        table.add_column()
        for spec in self.actions:
            table.add_row(spec.key_display or spec.key, spec.help)
        for title, keys in (("in the approval dialog", self.dialog_keys), ("moving around", NAVIGATION_KEYS)):
            if keys:
                table.add_row("", "")
                table.add_row("", title, style="bold")
                for key, text in keys:
                    table.add_row(key, text)
        with Vertical(id="help-dialog"):
            yield Static("loopdeck — keys (esc closes)", id="prompt-title")
            with VerticalScroll():
                yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
