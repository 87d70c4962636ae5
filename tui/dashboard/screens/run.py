"""The run screen: header, live DAG tree, step detail, event log, footer.

A worker folds events from the store (the source of truth, whoever drives the
run) into the view model; a 10 Hz timer renders only what changed. Its gates
(``run_gates``) and operator actions (``run_actions``) live beside it; every
action goes through the orchestrator's API and says how it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial

from textual import on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, Tree

from core import Event, LoopdeckError, StoreError
from tui.dashboard import heap
from tui.dashboard.actions import RUN_ACTIONS, bindings
from tui.dashboard.context import DashboardContext
from tui.dashboard.screens.base import LoopdeckScreen
from tui.dashboard.screens.run_actions import ActionsMixin
from tui.dashboard.screens.run_gates import GatesMixin
from tui.dashboard.viewmodel import RunView
from tui.dashboard.widgets.dag_tree import DagTree
from tui.dashboard.widgets.event_log import EventLog
from tui.dashboard.widgets.header_bar import HeaderBar
from tui.dashboard.widgets.step_detail import StepDetail, timeline

REFRESH_S = 0.1  # the steady refresh: running steps' timers tick
QUIET_REFRESH_S = 1.0  # ... and with no step running: only the run's clock and countdowns, in seconds
RENDER_GAP_S = 0.04  # new events are shown this soon after the last refresh at the earliest (≤ 25 a second)
POLL_S = 0.05  # at most this long between reads of the store while events come (a commit's wake is sooner)
IDLE_POLL_S = 0.5  # ... and once none has come for a while: the wait doubles up to this (see ``next_poll``)
HISTORY_LINES = 200
DETAIL_REFRESH_S = 0.5  # a busy highlighted step re-reads its detail at most twice a second
DRIVER_CHECK_S = 1.0  # how often the dashboard asks whether a process still drives the run
SETTLE_S = 2.0  # a closed run screen's tree is collected this long after it went (its workers' canceled
# sleeps hold it until they would have ended: up to CHILD_POLL_S; tui/dashboard/heap.py)


class RunScreen(GatesMixin, ActionsMixin, LoopdeckScreen):
    BINDINGS = bindings(RUN_ACTIONS)
    ACTIONS = RUN_ACTIONS

    def __init__(self, ctx: DashboardContext, run_id: str) -> None:
        super().__init__(ctx)
        self.run_id = run_id
        self.view: RunView | None = None
        self._pending_log: list[Event] = []
        self._detail_shown_at = 0.0  # monotonic time of the last throttled detail refresh
        self._detail_stale: str | None = None  # a highlighted step changed since its detail was shown
        self._deferred: set[str] = set()
        self._answered: set[str] = set()  # gates answered here that the view may still show waiting
        self.child_views: dict[str, RunView] = {}  # child runs with gates waiting (run_gates)
        self._plan_deferred = False
        self._plan_review_opening = False
        self._announced_end = False
        self._feed_error: str | None = None
        self.frozen = False
        self.follow_active = False  # F: the cursor follows the running steps
        self.filter_text = ""
        self._rendered_at = 0.0  # monotonic time of the last refresh
        self._render_due: Timer | None = None  # a refresh asked for by new events
        self._gone = False  # unmounted: nothing it builds any more is kept (tui/dashboard/heap.py)

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header-bar")
        with Horizontal(id="main"):
            yield DagTree(id="dag")
            yield StepDetail(id="detail")
        yield EventLog(id="event-log")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#dag").border_title = "steps"
        self.query_one(EventLog).border_title = "events"
        await self.reload()
        self.feed()
        self.watch_children()  # a sub_agent step (or a delegation added later) may start one
        self.set_interval(REFRESH_S, self._tick)
        self.set_interval(1.0, self.refresh_timeline)
        self.set_interval(DRIVER_CHECK_S, self.check_driver)

    @work(exclusive=True, group="driver", exit_on_error=False, name="the driver check")
    async def check_driver(self) -> None:
        """Whether a process still drives the run (a driver that died leaves its lease to expire)."""
        if self.view is None:
            return
        if self.view.finished:  # an ended run needs no driver (ended while nobody drove it: the badge goes)
            if self.view.set_driver(None):
                self._render_soon()
            return
        try:
            driver = await self.ctx.orch.driver(self.run_id)
        except LoopdeckError:
            return  # said by the feed, which reads the same store
        view = self.view  # the one shown now (a rebuild while it asked replaced it)
        if view is not None and view.set_driver(driver):
            self._render_soon()  # (the badge and R at once: with no step running the steady refresh is slow)
            if view.driver_gone:
                self.notify(view.driver_gone, severity="warning", markup=False, timeout=10)

    def restyle(self) -> None:
        """The theme changed: relabel the tree, redraw the header and the detail in its colours."""
        if self.view is None:
            return
        self.view.dirty.update(self.view.steps)
        self.query_one(HeaderBar).restyle()
        self._detail_stale = self.query_one(DagTree).highlighted_key
        self._render_soon()

    async def reload(self) -> None:
        """Read the run afresh (at start, and when a replan changed its steps)."""
        with heap.building(rebuilding=self.view is not None, kept=self._kept):
            await self._load_view()

    def _kept(self) -> bool:
        return not self._gone  # (a build its screen's going canceled keeps nothing)

    async def _load_view(self) -> None:
        view = RunView.from_snapshot(*await self.ctx.orch.snapshot_and_events(self.run_id))  # (it folds the events)
        if self.view is None:
            self.query_one(EventLog).add(list(view.events), room=HISTORY_LINES)  # the history so far
        else:
            self._carry_history(self.view, view)
        self.view = view
        tree = self.query_one(DagTree)
        tree.build(view, self.ctx.clock(), self.filter_text)
        tree.focus()
        tree.cursor_line = 0
        self.query_one(HeaderBar).show_run(view, self.ctx.clock(), read_only=self.ctx.read_only)
        first = tree.highlighted_key or next(iter(view.steps), None)
        if first:
            self.show_detail(first)
        self.query_one(StepDetail).show_result(view.status, view.result)

    def _carry_history(self, old: RunView, view: RunView) -> None:
        """A rebuilt view goes on with the old one's history: plus what its snapshot holds that the feed had
        not read yet (into the log too), or plus what the feed had read past the snapshot (folded in again,
        not logged twice, so the feed goes on from where it was)."""
        for event in [event for event in old.events if event.id > view.last_event_id]:
            view.apply(event)
        fresh = [event for event in view.events if event.id > old.last_event_id]
        view.events = old.events
        view.events.extend(fresh)
        self._pending_log.extend(fresh)

    def on_screen_resume(self) -> None:
        """What was over this screen closed (help, a prompt, a child run): a gate that came meanwhile is offered
        now, not at the next steady refresh (up to a second while no step runs)."""
        if self.view is not None and not self.frozen:  # (frozen: nothing opens by itself, as nothing draws)
            self._sync_approvals(self.view)

    def on_unmount(self) -> None:
        """What this screen built goes back to the collector; if a run screen stays, what it holds is frozen
        again once this one is gone (the screen below is resumed before this one is unmounted)."""
        self._gone = True
        heap.release()  # (an app that exits leaves nothing frozen)
        if any(isinstance(screen, RunScreen) and screen is not self for screen in self.app.screen_stack):
            self.app.set_timer(SETTLE_S, partial(_settle, self.app), name="collecting a closed run screen")

    @work(exclusive=True, group="feed", exit_on_error=False, name="the event feed")
    async def feed(self) -> None:
        """Fold new events from the store into the view model (never touches widgets)."""
        poll = POLL_S
        async with self.ctx.orch.events_coming(self.run_id) as coming:  # (one committed while it reads is kept)
            while True:
                if self.view is None:
                    await asyncio.sleep(POLL_S)
                    continue
                try:
                    events = await self.ctx.orch.events_since(self.run_id, self.view.last_event_id, limit=5000)
                    self._feed_error = None
                except Exception as exc:
                    self._feed_error = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(1.0)
                    continue
                events = [event for event in events if event.id > self.view.last_event_id]  # (a rebuilt view's
                for event in events:  # snapshot may hold some): into the view shown now; the feed keeps no
                    self.view.apply(event)  # view across its waits, so a replaced one goes
                self._pending_log.extend(events)
                if events:
                    self._render_soon()
                poll = next_poll(poll, bool(events))
                if len(events) < 5000:  # caught up: wait for the next commit (its wake) or a poll
                    await coming.wait(poll)

    def _render_soon(self) -> None:
        """New events: refresh as soon as ``RENDER_GAP_S`` since the last refresh allows, not at the next tick
        (the tick alone made the screen lag the stream by up to ``REFRESH_S`` more)."""
        if self._render_due is None and self.is_mounted:  # (before, the steady tick, set up at mount, waits)
            wait = max(0.001, self._rendered_at + RENDER_GAP_S - time.monotonic())  # (a timer takes no 0)
            self._render_due = self.set_timer(wait, self._render_now, name="new events")

    def _render_now(self) -> None:
        self._render_due = None
        self._render_timely()

    def _tick(self) -> None:
        """The steady refresh, ten times a second while a step runs (its duration ticks in tenths), once a
        second while none does: at ten it was half of an idle screen's CPU. New events do not wait for it
        (``_render_soon``)."""
        view, quiet = self.view, time.monotonic() - self._rendered_at < QUIET_REFRESH_S - REFRESH_S / 2
        if view is not None and quiet and self._detail_stale is None and not view.count("running"):
            return
        self._render_timely()

    def _render_timely(self) -> None:
        """A refresh a timer asked for (the steady tick, new events): one that falls due as the screen is
        taken down does nothing, its widgets having gone first."""
        with contextlib.suppress(NoMatches):
            self.render_view()

    def render_view(self) -> None:
        """Refresh what changed since the last refresh."""
        view = self.view
        if view is None:
            return
        self._rendered_at = time.monotonic()
        if view.structure_changed:
            view.structure_changed = False
            self.run_worker(
                self.reload(), exclusive=True, group="reload", exit_on_error=False, name="reloading the run"
            )
            return
        now = self.ctx.clock()
        header = self.query_one(HeaderBar)
        if self.frozen:  # events keep folding into the view model; the screen holds still
            header.show_run(view, now, frozen=True, read_only=self.ctx.read_only)
            return
        dirty = view.take_dirty()
        tree = self.query_one(DagTree)
        tree.refresh_steps(view, dirty | tree.running_keys(view), now)  # running ones tick their duration
        if self.follow_active:
            tree.follow(view)
        header.show_run(view, now, read_only=self.ctx.read_only)
        log = self.query_one(EventLog)
        if self._pending_log:
            log.add(self._pending_log[-500:])
            self._pending_log = []
        if log.border_title != log.title:
            log.border_title = log.title
        highlighted = tree.highlighted_key
        if highlighted in dirty:
            self._detail_stale = highlighted  # refreshed now, or at the next tick allowed: never lost
        if self._detail_stale is not None and time.monotonic() - self._detail_shown_at >= DETAIL_REFRESH_S:
            key, self._detail_stale = self._detail_stale, None
            self._detail_shown_at = time.monotonic()
            if key == highlighted:
                self.show_detail(key)
        self._sync_approvals(view)
        self.offer((bool(self._pending(view)), view.status, view.driver_gone is None))  # A, P and R come and go
        if self._feed_error:
            self.notify(f"cannot read events: {self._feed_error}", severity="error", markup=False, timeout=3)
            self._feed_error = None
        if view.finished and not self._announced_end:
            self._announced_end = True
            severity = "information" if view.status == "succeeded" else "warning"
            said = view.summary or view.reason
            self.notify(
                f"run {view.run_id} ended {view.status}" + (f": {said}" if said else "") + " (its Result tab)",
                severity=severity,
                markup=False,
                timeout=10,
            )
            if view.result is None:
                self.load_result()

    @work(exclusive=True, group="result", exit_on_error=False, name="the run's result")
    async def load_result(self) -> None:
        """The run ended while shown: read its result (the answer can be large: it is not in the events)."""
        try:
            result = await self.ctx.orch.result(self.run_id)
        except LoopdeckError as exc:
            self.notify(f"cannot read the run's result: {exc}", severity="error", markup=False)
            return
        if self.view is not None and result is not None:
            self.view.result = result.to_json()
            self.query_one(StepDetail).show_result(self.view.status, self.view.result)

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
        view = self.view
        if view is None or self.frozen or self.query_one("#detail-tabs", TabbedContent).active != "tab-timeline":
            return
        try:
            spans = await self.ctx.orch.spans(self.run_id)
        except LoopdeckError as exc:
            self.notify(f"cannot read spans: {exc}", severity="error", markup=False)
            return
        running = [
            (s.key, s.attempts, s.started_at) for s in view.steps.values() if s.status == "running" and s.started_at
        ]
        target = self.query_one("#detail-timeline", Static)
        # the tabs' width, less padding and a scrollbar's room: stable whether or not a scrollbar shows
        width = max(20, self.query_one("#detail-tabs", TabbedContent).size.width - 5)
        target.update(timeline(spans, running, view.created_at, self.ctx.clock(), width))

    @work(exclusive=True, group="detail", exit_on_error=False, name="the step detail")
    async def show_detail(self, key: str) -> None:
        """Show a step's detail, reading its output and error from the store (only for what is visible)."""
        view = self.view
        step = view.steps.get(key) if view else None
        if view is None or step is None:
            return
        try:
            row = await self.ctx.orch.step(self.run_id, key)
        except LoopdeckError as exc:
            self.notify(f"cannot read step {key}: {exc}", severity="error", markup=False)
            row = None
        context = None
        if row is not None:
            step.output, step.input, step.error = row.output, row.input, row.error
            try:
                context = await self.ctx.orch.step_context(self.run_id, key)
            except LoopdeckError:
                context = None
        detail = self.query_one(StepDetail)
        detail.show_step(view, step)
        detail.show_context(context)
        detail.shown_key = key


def _settle(app: App[object]) -> None:
    """A closed run screen is gone: collect it, and keep frozen what a run screen still shown holds (none
    left, as when the one below went too meanwhile: nothing to freeze)."""
    if any(isinstance(screen, RunScreen) for screen in app.screen_stack):
        heap.settle()


def next_poll(wait: float, found: bool) -> float:
    """How long the feed waits for a wake before it reads the store anyway: ``POLL_S`` while events come, and
    twice as long after each read that found none, up to ``IDLE_POLL_S``. A commit of this process, another
    one's on SQLite (``core/store/wakes.py``) or PostgreSQL's NOTIFY wakes it at once whatever the wait; the poll
    is only the net under a lost wake, and at 50 ms it was most of an idle dashboard's CPU (3.7 % of a core
    for a finished run's screen, 1.4 % with a 1 s poll; one process per browser tab of `loopdeck serve`).
    Where no wake can come (a platform without Unix sockets, an older loopdeck writing), the first event after
    a quiet spell shows up to 0.5 s late."""
    return POLL_S if found else min(wait * 2, IDLE_POLL_S)
