"""The base of the dashboard's full screens: their context, and their workers' failures reported."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from core import LoopdeckError, mask_urls
from tui.dashboard.actions import ActionSpec
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
    """A full screen: its context, its actions (the palette offers those), none that writes in read-only mode."""

    ACTIONS: tuple[ActionSpec, ...] = ()

    def __init__(self, ctx: DashboardContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._offered: object = None  # what decided the footer's keys when they were last drawn

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = next((s for s in self.ACTIONS if s.method == action), None)
        if spec is None:
            return True
        if spec.writes and self.ctx.read_only:
            return False
        return self.can(spec)

    async def _act(self, call: Awaitable[Any], success: str) -> bool:
        """Run one core API call and say how it went; the dashboard never crashes on an action."""
        try:
            await call
        except LoopdeckError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return False
        except Exception as exc:
            self.notify(f"unexpected error: {type(exc).__name__}: {exc}", severity="error", markup=False)
            return False
        self.notify(success, markup=False)
        return True

    def can(self, spec: ActionSpec) -> bool | None:
        """Whether the action applies now (False: hidden; None: shown disabled); screens refine it."""
        return True

    def offer(self, what: object) -> None:
        """The footer's keys drawn again only when ``what``, which decides which of them apply, changed: a
        refresh recomposes the footer, and redrawing it at every reload was nine tenths of an idle runs
        list's CPU."""
        if what != self._offered:
            self._offered = what
            self.refresh_bindings()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker(self.app, event)  # Worker.StateChanged does not bubble: each screen reports its own
