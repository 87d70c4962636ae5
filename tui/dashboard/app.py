"""The loopdeck dashboard (Textual).

It opens on a run that this process drives (``loopdeck run``/``demo``) or on
one driven elsewhere (``loopdeck attach``); either way it reads events from
the store and acts through the orchestrator's API only. The app wires and
navigates: screens get their services as one ``DashboardContext`` and ask to
move (``messages.OpenRun``, ``ShowRuns``); they never import each other or the app.

    app.py (wiring, navigation)   context.py   messages.py   actions.py (the one registry of keys)
    viewmodel.py (events folded, with the engine's projection)   loopdeck.tcss
    screens/  runs, run (+ run_gates, run_actions), approval, plan_review, dialogs, help
    widgets/  header_bar, dag_tree, step_detail, event_log

Errors never end in a screen of traceback: workers run with
``exit_on_error=False`` and one handler per screen (``screens.base``) shows a
failed worker's error as a notification; an error outside a worker ends the
app with one line (``_fatal_error``), the traceback only with ``LOOPDECK_DEBUG=1``
and never with local variables (they would hold URLs and keys).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.worker import Worker

from core import LoopdeckError, Orchestrator, RunStatus, mask_urls
from tui.dashboard import palette
from tui.dashboard.actions import ActionSpec
from tui.dashboard.context import DashboardContext
from tui.dashboard.messages import DriveRun, OpenRun, ShowRuns
from tui.dashboard.screens.base import report_worker
from tui.dashboard.screens.run import RunScreen
from tui.dashboard.screens.runs import RunsScreen

if TYPE_CHECKING:
    from core import Plan  # (a dashboard that reviews no plan never loads pydantic's plan models)


class ActionCommands(Provider):
    """The command palette offers what the screen below it can do now: its registry, less what is disabled
    (read-only, or not applicable); dialogs offer none of it."""

    def _specs(self) -> list[ActionSpec]:
        screen = self.screen
        specs: tuple[ActionSpec, ...] = getattr(screen, "ACTIONS", ())
        return [s for s in specs if s.palette and screen.check_action(s.method, ()) is True]

    async def discover(self) -> Hits:
        for spec in self._specs():
            yield DiscoveryHit(spec.name, partial(self.screen.run_action, spec.action), help=spec.help)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for spec in self._specs():
            score = matcher.match(spec.name) or matcher.match(spec.help) / 2
            if score > 0:
                yield Hit(
                    score, matcher.highlight(spec.name), partial(self.screen.run_action, spec.action), help=spec.help
                )


class LoopdeckApp(App[int]):
    CSS_PATH = "loopdeck.tcss"
    TITLE = "loopdeck"
    COMMANDS = App.COMMANDS | {ActionCommands}

    def __init__(
        self,
        db: str | None = None,
        *,
        run_id: str | None = None,
        plan: Plan | None = None,
        proposed_by: str | None = None,
        planning_tokens: tuple[int, int] = (0, 0),
        drive: bool = False,
        read_only: bool = False,
        user: str | None = None,
        orchestrator: Orchestrator | None = None,
        clock: Callable[[], float] = time.time,
        run_ids: Callable[[float], str] | None = None,
        theme: str | None = None,
    ) -> None:
        super().__init__()
        if theme is not None:
            self.theme = theme  # checked by the CLI against `available_themes` first
        self.clock = clock  # what "now" is on screen (durations, elapsed); tests freeze it
        self._run_ids = run_ids
        self.db = db
        self.run_id = run_id
        self.plan = plan
        self.proposed_by = proposed_by  # who wrote the plan (the planner), shown in the plan review
        self.planning_tokens = planning_tokens  # what writing the plan cost: counted in the run's tokens
        self.drive = drive
        self.read_only = read_only
        self._user = user
        self._given = orchestrator
        self.orch: Orchestrator = orchestrator  # type: ignore[assignment]
        self.final_status: RunStatus | None = None
        self._driving: set[str] = set()  # runs this process drives (one driver each)

    @property
    def user(self) -> str:
        return self.orch.user

    async def on_mount(self) -> None:
        palette.install(self.console, self.get_css_variables(), replacing=False)
        self.theme_changed_signal.subscribe(self, self._restyle)
        try:
            if self.orch is None:
                self.orch = await Orchestrator.open(self.db, user=self._user, clock=self.clock, run_ids=self._run_ids)
            if self.plan is not None:
                self.run_id = await self.orch.create_run(
                    self.plan, proposed_by=self.proposed_by, hold=self.drive, planning_tokens=self.planning_tokens
                )
            if self.run_id is not None:
                self.run_id = await self.orch.resolve_run_id(self.run_id)
        except LoopdeckError as exc:
            self.exit(2, message=Text(mask_urls(f"loopdeck: {exc}")))
            return
        self.ctx = DashboardContext(self.orch, self.clock, self.read_only)
        if self.run_id is None:
            await self.push_screen(RunsScreen(self.ctx))
            return
        if self.drive:
            self.drive_here(self.run_id)
        await self.push_screen(RunScreen(self.ctx, self.run_id))

    def drive_here(self, run_id: str) -> None:
        self._driving.add(run_id)
        self.run_worker(self._drive(run_id), name="the run's driver", group="drive", exit_on_error=False)

    def on_drive_run(self, message: DriveRun) -> None:
        """``R``: drive a run nobody drives, here (as `loopdeck resume`); quitting leaves it resumable again."""
        if message.run_id in self._driving:  # a second R before the first took the lease: one driver
            self.notify(f"run {message.run_id} is driven by this dashboard already", markup=False)
            return
        self.drive_here(message.run_id)
        self.notify(f"run {message.run_id} is driven by this dashboard now", markup=False)

    def _restyle(self, theme: object) -> None:
        """Another theme: the semantic colours follow it, and what is on screen is drawn again."""
        palette.install(self.console, self.get_css_variables(), replacing=True)
        for screen in self.screen_stack:
            restyle = getattr(screen, "restyle", None)
            if restyle is not None:
                restyle()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker(self, event)

    def on_open_run(self, message: OpenRun) -> None:
        self.push_screen(RunScreen(self.ctx, message.run_id))

    def on_show_runs(self, message: ShowRuns) -> None:
        """Back: to the run below (a child run was opened from it), else to the runs list (the one below, or a
        new one when the app started on a run)."""
        below = self.screen_stack[-2] if len(self.screen_stack) > 2 else None
        if isinstance(below, RunScreen | RunsScreen):
            self.pop_screen()
        else:
            self.switch_screen(RunsScreen(self.ctx))

    def _handle_exception(self, error: Exception) -> None:
        self._unexpected = error  # for _fatal_error, which Textual calls without it
        super()._handle_exception(error)
        self._return_code = 3  # a bug, also when Textual renders the error itself (errors with __rich__)

    def _fatal_error(self) -> None:
        """An error outside any worker ends the app: one line, no locals (Textual's own dump shows them all).

        Overrides a private Textual method (textual is pinned exactly; tests/tui cover it).
        """
        error = getattr(self, "_unexpected", None) or sys.exc_info()[1]
        self._return_code = 3  # the CLI's exit code for a bug
        if os.environ.get("LOOPDECK_DEBUG", "").strip().lower() in ("1", "true", "yes", "on") and error is not None:
            self._exit_renderables.append(Text(mask_urls("".join(traceback.format_exception(error)))))
        what = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
        self._exit_renderables.append(
            Text(
                mask_urls(
                    f"loopdeck: unexpected error in the dashboard: {what}; "
                    "this is a bug (LOOPDECK_DEBUG=1 shows the traceback)"
                )
            )
        )
        self._close_messages_no_wait()

    async def _drive(self, run_id: str) -> None:
        try:
            status = await self.orch.drive(run_id)
            if run_id == self.run_id:  # the run this app was started on: its end is the command's exit code
                self.final_status = status
        except LoopdeckError as exc:
            self.notify(f"the run stopped: {exc}", severity="error", markup=False, timeout=30)
        finally:
            self._driving.discard(run_id)

    async def on_unmount(self) -> None:
        for worker in list(self.workers):
            worker.cancel()
            if worker.group == "drive":  # let the driver release the run's lease before the store closes
                with contextlib.suppress(Exception):
                    await worker.wait()
        if self._given is None and self.orch is not None:
            await self.orch.close()
