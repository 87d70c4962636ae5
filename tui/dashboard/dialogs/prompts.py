"""Small modal dialogs: confirm (y/n) and prompt (one line of text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(Text(self.question), id="confirm-title")
            yield Static(Text("y  yes    n / esc  no"), id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """Asks for one line; Enter submits (empty is allowed), Esc cancels (None).

    ``check`` returns what is wrong with a value (None: nothing): a bad value
    is refused in place, said under the line, and the dialog stays open.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="prompt-cancel")]

    def __init__(
        self, title: str, placeholder: str = "", value: str = "", check: Callable[[str], str | None] | None = None
    ) -> None:
        super().__init__()
        self.check = check
        self.title_text = title
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Static(Text(self.title_text), id="prompt-title")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static(id="prompt-error")
            yield Static(Text("enter  submit    esc  cancel"), id="prompt-keys")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        problem = self.check(event.value) if self.check is not None else None
        if problem:
            self.query_one("#prompt-error", Static).update(Text(f"{problem}; fix it or esc"))
            return
        self.dismiss(event.value)

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#prompt-error", Static).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)


def ask_cancel(app: Any, run_id: str, cancel: Callable[[str], object]) -> None:
    """Confirm canceling a run, then ask why (optional); ``cancel(reason)`` unless the operator backs out."""

    def reason(text: str | None) -> None:
        if text is not None:  # Esc: not canceled
            cancel(text.strip() or "canceled from the dashboard")

    def answer(yes: bool | None) -> None:
        if yes:
            app.push_screen(PromptScreen("Reason (optional, kept in the audit trail):", "why"), reason)

    app.push_screen(ConfirmScreen(f"Cancel run {run_id}? Running steps are stopped."), answer)
