"""The run screen: header, live DAG tree, step detail, event log, footer.

A worker folds events from the store (the source of truth, whoever drives the
run) into the view model; a 10 Hz timer renders only what changed. Every
operator action goes through the orchestrator's API and says how it went.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.worker import Worker
from textual.widgets import Footer, Static, TabbedContent, Tree

from core import Event, LoopdeckError, StoreError

from tui.dashboard.actions import RUN_ACTIONS, bindings
from tui.dashboard.viewmodel import RunView
from tui.dashboard.widgets.dag_tree import DagTree
from tui.dashboard.widgets.event_log import EventLog
from tui.dashboard.widgets.header_bar import HeaderBar
from tui.dashboard.widgets.step_detail import StepDetail
from tui.dashboard.screens.approval import ApprovalScreen
from tui.dashboard.screens.dialogs import ConfirmScreen, PromptScreen
from tui.dashboard.screens.help import HelpScreen
from tui.dashboard.screens.plan_review import PlanReviewScreen

if TYPE_CHECKING:
    from tui.dashboard.app import LoopdeckApp

REFRESH_S = 0.1
POLL_S = 0.1  # at most this long between reads of the store (PostgreSQL's NOTIFY wakes the feed sooner)
HISTORY_LINES = 200
DETAIL_REFRESH_S = 0.5  # a busy highlighted step re-reads its detail at most twice a second


class RunScreen(Screen[None]):
    BINDINGS = bindings(RUN_ACTIONS)

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.view: RunView | None = None
        self._pending_log: list[Event] = []
        self._detail_shown_at = 0.0  # monotonic time of the last throttled detail refresh
        self._detail_stale: str | None = None  # a highlighted step changed since its detail was shown
        self._deferred: set[str] = set()
        self._plan_deferred = False
        self._plan_review_opening = False
        self._announced_end = False
        self._feed_error: str | None = None
        self.frozen = False
        self.filter_text = ""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.deck.report_worker(event)  # Worker.StateChanged does not bubble: the app reports it

    @property
    def deck(self) -> "LoopdeckApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header-bar")
        with Horizontal(id="main"):
            yield DagTree(id="dag")
            yield StepDetail(id="detail")
        yield EventLog(id="event-log")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#dag").border_title = "steps"
        self.query_one("#event-log").border_title = "events"
        await self.reload()
        self.feed()
        self.set_interval(REFRESH_S, self.render_view)
        self.set_interval(1.0, self.refresh_timeline)

    async def reload(self) -> None:
        """Read the run afresh (at start, and when a replan changed its steps)."""
        snap = await self.deck.orch.snapshot(self.run_id)
        view = RunView.from_snapshot(snap)
        if self.view is None:
            self.query_one(EventLog).add(list(view.events), room=HISTORY_LINES)  # the history so far
        else:
            view.events = self.view.events
        self.view = view
        tree = self.query_one(DagTree)
        tree.build(view, self.deck.clock(), self.filter_text)
        tree.focus()
        tree.cursor_line = 0
        self.query_one(HeaderBar).show_run(view, self.deck.clock(), read_only=self.deck.read_only)
        first = tree.highlighted_key or next(iter(view.steps), None)
        if first:
            self.show_detail(first)

    @work(exclusive=True, group="feed", exit_on_error=False, name="the event feed")
    async def feed(self) -> None:
        """Fold new events from the store into the view model (never touches widgets)."""
        while True:
            view = self.view
            if view is None:
                await asyncio.sleep(POLL_S)
                continue
            try:
                events = await self.deck.orch.events_since(self.run_id, view.last_event_id, limit=5000)
                self._feed_error = None
            except Exception as exc:  # noqa: BLE001 - shown on screen; the feed keeps trying
                self._feed_error = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(1.0)
                continue
            for event in events:
                view.apply(event)
            self._pending_log.extend(events)
            if len(events) < 5000:  # caught up: wait for the next commit (NOTIFY on PostgreSQL) or a poll
                await self.deck.orch.wait_for_events(self.run_id, POLL_S)

    def render_view(self) -> None:
        """Refresh what changed since the last tick."""
        view = self.view
        if view is None:
            return
        if view.structure_changed:
            view.structure_changed = False
            self.run_worker(self.reload(), exclusive=True, group="reload", exit_on_error=False, name="reloading the run")
            return
        now = self.deck.clock()
        header = self.query_one(HeaderBar)
        if self.frozen:  # events keep folding into the view model; the screen holds still
            header.show_run(view, now, frozen=True, read_only=self.deck.read_only)
            return
        dirty = view.take_dirty()
        tree = self.query_one(DagTree)
        tree.refresh_steps(view, dirty | tree.running_keys(view), now)  # running ones tick their duration
        header.show_run(view, now, read_only=self.deck.read_only)
        if self._pending_log:
            self.query_one(EventLog).add(self._pending_log[-500:])
            self._pending_log = []
        highlighted = tree.highlighted_key
        if highlighted in dirty:
            self._detail_stale = highlighted  # refreshed now, or at the next tick allowed: never lost
        if self._detail_stale is not None and time.monotonic() - self._detail_shown_at >= DETAIL_REFRESH_S:
            key, self._detail_stale = self._detail_stale, None
            self._detail_shown_at = time.monotonic()
            if key == highlighted:
                self.show_detail(key)
        self._sync_approvals(view)
        if self._feed_error:
            self.notify(f"cannot read events: {self._feed_error}", severity="error", markup=False, timeout=3)
            self._feed_error = None
        if view.finished and not self._announced_end:
            self._announced_end = True
            severity = "information" if view.status == "succeeded" else "warning"
            reason = f": {view.reason}" if view.reason else ""
            self.notify(f"run {view.run_id} ended {view.status}{reason}", severity=severity, markup=False, timeout=10)

    def _sync_plan_review(self, view: RunView) -> None:
        """Open the plan review when the run awaits plan approval; close it once decided (here or elsewhere)."""
        review = next((s for s in self.app.screen_stack if isinstance(s, PlanReviewScreen)), None)
        awaiting = view.status == "awaiting_plan_approval"
        if review is not None and not awaiting:
            if self.app.screen is review:
                review.dismiss(None)
            return
        if not awaiting:
            self._plan_deferred = False
        elif review is None and not self._plan_deferred and self.app.screen is self and not self._plan_review_opening:
            self.open_plan_review()

    @work(group="plan-review", exit_on_error=False, name="the plan review")
    async def open_plan_review(self) -> None:
        self._plan_review_opening = True
        try:
            snap = await self.deck.orch.snapshot(self.run_id, events=False)
        except LoopdeckError as exc:
            self.notify(f"cannot read the plan: {exc}", severity="error", markup=False)
            return
        finally:
            self._plan_review_opening = False
        if snap["run"]["status"] != "awaiting_plan_approval":
            self.notify("no plan is waiting for approval", markup=False)
            return
        await self.app.push_screen(PlanReviewScreen(self, self.run_id, snap, self.deck.read_only, self._defer_plan))

    def _defer_plan(self) -> None:
        self._plan_deferred = True
        self.notify("plan review deferred; press P to reopen", markup=False)

    def action_open_plan_review(self) -> None:
        self._plan_deferred = False
        if not isinstance(self.app.screen, PlanReviewScreen):
            self.open_plan_review()

    @on(PlanReviewScreen.Decided)
    def _plan_decided(self, message: PlanReviewScreen.Decided) -> None:
        self.decide_plan(message)

    @work(group="actions", exit_on_error=False, name="an action")
    async def decide_plan(self, decision: PlanReviewScreen.Decided) -> None:
        orch, user = self.deck.orch, self.deck.user
        verb = "approved" if decision.approve else "rejected"
        edited = " (edited)" if decision.plan is not None or decision.steps is not None else ""
        done = await self._act(orch.approve_plan(self.run_id, approve=decision.approve, user=user, reason=decision.reason,
                                                 plan=decision.plan, steps=decision.steps),
                               f"plan {verb}{edited} by {user}")
        if done and isinstance(self.app.screen, PlanReviewScreen):
            self.app.screen.dismiss(None)

    def _sync_approvals(self, view: RunView) -> None:
        self._sync_plan_review(view)
        modal = self.app.screen if isinstance(self.app.screen, ApprovalScreen) else None
        if modal is not None:
            for key in list(modal.queue):
                if key not in view.waiting:
                    modal.advance(key)  # answered elsewhere
            new = [k for k in view.waiting if k not in modal.queue and k not in self._deferred]
            if new and modal.is_current:
                modal.add(new)
            return
        fresh = [k for k in view.waiting if k not in self._deferred]
        if fresh and self.app.screen is self:
            self.app.push_screen(ApprovalScreen(self, self.run_id, fresh, view.steps, self.deck.read_only, self.defer))

    # -- tree and detail --------------------------------------------------------------------

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        if event.node.data:
            self.show_detail(event.node.data)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-timeline":
            self.refresh_timeline()

    @work(exclusive=True, group="timeline", exit_on_error=False, name="the timeline")
    async def refresh_timeline(self) -> None:
        """Redraw the Timeline tab while it is the one shown (spans come from the store)."""
        from tui.dashboard.widgets.step_detail import timeline

        view = self.view
        if view is None or self.frozen or self.query_one("#detail-tabs", TabbedContent).active != "tab-timeline":
            return
        try:
            spans = await self.deck.orch.spans(self.run_id)
        except LoopdeckError as exc:
            self.notify(f"cannot read spans: {exc}", severity="error", markup=False)
            return
        running = [(s.key, s.attempts, s.started_at) for s in view.steps.values() if s.status == "running" and s.started_at]
        target = self.query_one("#detail-timeline", Static)
        # the tabs' width, less padding and a scrollbar's room: stable whether or not a scrollbar shows
        width = max(20, self.query_one("#detail-tabs", TabbedContent).size.width - 5)
        target.update(timeline(spans, running, view.created_at, self.deck.clock(), width))

    @work(exclusive=True, group="detail", exit_on_error=False, name="the step detail")
    async def show_detail(self, key: str) -> None:
        """Show a step's detail, reading its output and error from the store (only for what is visible)."""
        view = self.view
        step = view.steps.get(key) if view else None
        if view is None or step is None:
            return
        try:
            row = await self.deck.orch.step(self.run_id, key)
        except LoopdeckError as exc:
            self.notify(f"cannot read step {key}: {exc}", severity="error", markup=False)
            row = None
        context = None
        if row is not None:
            step.output, step.input, step.error = row.output, row.input, row.error
            try:
                context = await self.deck.orch.step_context(self.run_id, key)
            except LoopdeckError:
                context = None
        detail = self.query_one(StepDetail)
        detail.show_step(view, step)
        detail.show_context(context)
        detail.shown_key = key

    # -- actions -------------------------------------------------------------------------------

    async def _act(self, call: Awaitable[Any], success: str) -> bool:
        """Run one core API call and say how it went; the dashboard never crashes on an action."""
        try:
            await call
        except LoopdeckError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return False
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the operator keeps their screen
            self.notify(f"unexpected error: {type(exc).__name__}: {exc}", severity="error", markup=False)
            return False
        self.notify(success, markup=False)
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = next((s for s in RUN_ACTIONS if s.action.split("(")[0] == action), None)
        if spec is not None and spec.writes and self.deck.read_only:
            return False
        return True

    def action_runs(self) -> None:
        """Back to the runs list (opened on demand when the app started on this run)."""
        from tui.dashboard.screens.runs import RunsScreen

        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.switch_screen(RunsScreen())

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_freeze(self) -> None:
        self.frozen = not self.frozen
        self.notify("live updates frozen (space resumes)" if self.frozen else "live updates resumed", markup=False)
        if not self.frozen:
            self.render_view()

    def action_filter(self) -> None:
        def answer(value: str | None) -> None:
            if value is None or self.view is None:
                return
            self.filter_text = value.strip()
            tree = self.query_one(DagTree)
            tree.build(self.view, self.deck.clock(), self.filter_text)
            tree.border_title = f"steps · filter: {self.filter_text}" if self.filter_text else "steps"
            shown = len(tree.root.children)
            if self.filter_text:
                self.notify(f"{shown} step(s) match {self.filter_text!r}; / then enter on an empty line clears", markup=False)

        self.app.push_screen(PromptScreen("Filter steps by key, status or agent (empty: all):", "e.g. failed, writer, review",
                                          self.filter_text), answer)

    def action_skip_step(self) -> None:
        key = self.query_one(DagTree).highlighted_key
        if key is None:
            self.notify("highlight a step first", markup=False)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.skip_step(key)

        self.app.push_screen(ConfirmScreen(f"Skip step {key}? It will not run; steps that need it are skipped too."), answer)

    @work(group="actions", exit_on_error=False, name="an action")
    async def skip_step(self, key: str) -> None:
        await self._act(self.deck.orch.skip(self.run_id, key, user=self.deck.user, reason="skipped from the dashboard"),
                        f"{key} skipped")

    def action_retry_step(self) -> None:
        key = self.query_one(DagTree).highlighted_key
        if key is None:
            self.notify("highlight a step first", markup=False)
            return
        self.retry_step(key)

    @work(group="actions", exit_on_error=False, name="an action")
    async def retry_step(self, key: str) -> None:
        await self._act(self.deck.orch.retry(self.run_id, key, user=self.deck.user), f"{key} gets one more attempt")

    def action_follow_log(self) -> None:
        self.query_one(EventLog).follow()

    def action_open_approvals(self) -> None:
        view = self.view
        if view is None or not view.waiting:
            self.notify("no step is waiting for approval", markup=False)
            return
        self._deferred.clear()
        self.app.push_screen(ApprovalScreen(self, self.run_id, list(view.waiting), view.steps, self.deck.read_only,
                                            self.defer))

    def defer(self, keys: list[str]) -> None:
        """The operator closed the approval dialog: its gates stay open and it stays closed until `A`."""
        self._deferred.update(keys)
        self.notify(f"{len(keys)} approval(s) deferred; press A to reopen", markup=False)

    @on(ApprovalScreen.Answered)
    def _answered(self, message: ApprovalScreen.Answered) -> None:
        self.answer_gate(message.key, message.approve, message.reason, message.input)

    @work(group="actions", exit_on_error=False, name="an action")
    async def answer_gate(self, key: str, approve: bool, reason: str | None, input: Any) -> None:
        orch, user = self.deck.orch, self.deck.user
        if approve:
            extra = {} if input is ... else {"input": input}
            await self._act(orch.approve(self.run_id, key, user=user, reason=reason, **extra),
                            f"{key} approved by {user}" + (" with edited input" if extra else ""))
        else:
            await self._act(orch.reject(self.run_id, key, user=user, reason=reason), f"{key} rejected by {user}")
        if isinstance(self.app.screen, ApprovalScreen):
            self.app.screen.advance(key)

    async def action_feedback(self, rating: str) -> None:
        key = self.query_one(DagTree).highlighted_key
        if key is None:
            self.notify("highlight a step first", markup=False)
            return

        def send(comment: str | None) -> None:
            if comment is not None:
                self.send_feedback(key, rating, comment or None)

        thumb = "👍" if rating == "up" else "👎"
        self.app.push_screen(PromptScreen(f"{thumb} for {key} — comment (optional):", "what was good or bad"), send)

    @work(group="actions", exit_on_error=False, name="an action")
    async def send_feedback(self, key: str, rating: str, comment: str | None) -> None:
        await self._act(self.deck.orch.feedback(self.run_id, key, rating, comment=comment, user=self.deck.user),
                        f"{'👍' if rating == 'up' else '👎'} recorded for {key}")

    def action_cancel_run(self) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.cancel_run()

        self.app.push_screen(ConfirmScreen(f"Cancel run {self.run_id}? Running steps are stopped."), answer)

    @work(group="actions", exit_on_error=False, name="an action")
    async def cancel_run(self) -> None:
        await self._act(self.deck.orch.cancel(self.run_id, user=self.deck.user, reason="canceled from the dashboard"),
                        f"run {self.run_id} canceled")

    def action_raise_budget(self) -> None:
        current = self.view.budget if self.view else None

        def answer(value: str | None) -> None:
            if value is None:
                return
            raw = value.strip().replace(",", "").replace("_", "")
            if raw.lower() in ("", "none"):
                self.set_budget(None)
            elif raw.isdigit():
                self.set_budget(int(raw))
            else:
                self.notify(f"{value!r} is not a number of tokens (or 'none')", severity="error", markup=False)

        self.app.push_screen(PromptScreen("Token budget (a number, or 'none'):", "e.g. 100000",
                                          "" if current is None else str(current)), answer)

    @work(group="actions", exit_on_error=False, name="an action")
    async def set_budget(self, limit: int | None) -> None:
        await self._act(self.deck.orch.set_budget(self.run_id, limit, user=self.deck.user),
                        f"token budget set to {'no limit' if limit is None else f'{limit:,}'}")
