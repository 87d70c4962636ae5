"""Every key binding, from the same registry as the footer and the palette."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.dashboard.actions import RUN_ACTIONS

MODAL_KEYS = (
    ("a", "approve the step in the approval dialog"),
    ("r", "reject it (asks for an optional reason)"),
    ("e", "edit its input (a tool call's arguments) as JSON; ctrl+s approves with the edit"),
    ("w", "a tool call: run it, and allow its tool for the rest of the run"),
    ("esc", "defer: close the dialog, the gate stays open"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close", id="help-close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for spec in RUN_ACTIONS:
            table.add_row(spec.key_display or spec.key, spec.help)
        table.add_row("", "")
        for key, text in MODAL_KEYS:
            table.add_row(key, text)
        table.add_row("ctrl+p", "command palette: every action by name")
        with Vertical(id="help-dialog"):
            yield Static("loopdeck — keys", id="prompt-title")
            with VerticalScroll():
                yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
