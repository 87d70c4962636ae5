"""The base of the dashboard's full screens: their context, and their workers' failures reported."""

from __future__ import annotations

from textual.app import App
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from core import mask_urls
from tui.dashboard.context import DashboardContext


def report_worker(app: App[object], event: Worker.StateChanged) -> None:
    """The one place a failed worker is reported: a notification, and the dashboard stays up."""
    if event.state == WorkerState.ERROR and event.worker.error is not None:
        error = event.worker.error
        app.notify(
            mask_urls(
                f"unexpected error in {event.worker.name or 'a background task'}: {type(error).__name__}: {error}"
            ),
            severity="error",
            markup=False,
            timeout=30,
        )


class LoopdeckScreen(Screen[None]):
    def __init__(self, ctx: DashboardContext) -> None:
        super().__init__()
        self.ctx = ctx

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker(self.app, event)  # Worker.StateChanged does not bubble: each screen reports its own
