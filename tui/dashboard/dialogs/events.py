"""The recent events in full: the log's one-line events, one of them opened (`l` on the run screen).

The list is the view model's recent events (the last 500, newest at the
bottom, the newest highlighted); the highlighted event's whole payload shows
below as JSON, untrusted text shown literally. Every event stays in the store
(`loopdeck show --json`).
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from core import Event, iso
from tui.dashboard.widgets.event_log import event_line
from tui.dashboard.widgets.step_detail import as_json
from tui.text.literal import literal


class EventsScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,l", "close", "Close", id="events-close")]

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events

    def compose(self) -> ComposeResult:
        with Vertical(id="events-dialog"):
            yield Static(Text(f"recent events ({len(self.events)}) — ↑↓ choose · esc closes"), id="events-title")
            yield OptionList(*(Option(event_line(e), id=str(i)) for i, e in enumerate(self.events)), id="events-list")
            with VerticalScroll(id="events-full"):
                yield Static(id="events-payload")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        if self.events:
            options.highlighted = len(self.events) - 1
        else:
            self.query_one("#events-payload", Static).update(Text("no events yet", style="muted"))

    @on(OptionList.OptionHighlighted)
    def _show(self, message: OptionList.OptionHighlighted) -> None:
        event = self.events[int(message.option.id or 0)]
        head = Text.assemble((f"#{event.id} ", "bold"), (event.type, "bold"), f"  {iso(event.created_at)}")
        if event.step_key:
            head.append("  step ")
            head.append_text(literal(event.step_key, "key"))
        self.query_one("#events-payload", Static).update(Group(head, as_json(event.payload)))

    def action_close(self) -> None:
        self.dismiss(None)
