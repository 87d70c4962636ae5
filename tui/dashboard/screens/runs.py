"""The runs list: newest first, refreshed every second; acts on the highlighted run.

Each row says what a run waits for (its gated steps, a tool call, the plan
review) and whether anything drives it; `/` filters by status, goal or id;
enter opens the run, `A` opens it at its approvals, `R` drives a run nobody
drives here, `x` cancels it. The goal column takes the width the others
leave, so the id (every CLI command needs it) is always on screen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static

from core import LoopdeckError
from tui.dashboard.actions import RUNS_ACTIONS, ActionSpec, bindings
from tui.dashboard.context import DashboardContext
from tui.dashboard.dialogs.help import HelpScreen
from tui.dashboard.dialogs.prompts import PromptScreen, ask_cancel
from tui.dashboard.messages import DriveRun, OpenRun
from tui.dashboard.palette import status_style
from tui.dashboard.screens.base import LoopdeckScreen
from tui.dashboard.widgets.header_bar import elapsed_text
from tui.text.literal import literal
from tui.text.runs import driver_words, waiting_words

# the goal takes what the others leave; ids are 22 characters (20260921-141320-snap01); tokens and age
# are shown when the goal keeps GOAL_ROOM cells with them
NEEDED = (("id", 22), ("progress", 9))
EXTRA = (("tokens", 14), ("age", 8))
GOAL_MIN, GOAL_ROOM = 10, 24


def _cells(columns: Any) -> int:
    return sum(width + 2 for _, width in columns)  # (each column's cell padding)


def columns_for(width: int) -> list[tuple[str, int]]:
    """The columns at a terminal width, in order: status, goal, id, progress (, tokens, age)."""
    status = 34 if width >= 140 else 24
    goal = width - 4 - _cells([("status", status), *NEEDED]) - 2
    extra = list(EXTRA) if goal - _cells(EXTRA) >= GOAL_ROOM else []
    goal = max(GOAL_MIN, goal - _cells(extra))
    return [("status", status), ("goal", goal), *NEEDED, *extra]


LIVE = ("planning", "awaiting_plan_approval", "running", "waiting_user")


def age_text(created_iso: str | None, now: float) -> str:
    if not created_iso:
        return ""
    return elapsed_text(now - datetime.fromisoformat(created_iso).timestamp())


def status_text(run: dict[str, Any], width: int) -> Text:
    """``waiting_user: publish`` or ``running ⚠ driver gone``: the status, and what the operator should know."""
    text = Text(run["status"], status_style(run["status"]))
    waiting, driver = waiting_words(run), driver_words(run)
    if waiting:
        text.append_text(literal(f": {waiting}", "note"))
    if driver:
        text.append(f" ⚠ {driver}", "status.orphaned")
    text.truncate(width, overflow="ellipsis")
    return text


class RunsScreen(LoopdeckScreen):
    BINDINGS = bindings(RUNS_ACTIONS)
    ACTIONS = RUNS_ACTIONS

    def __init__(self, ctx: DashboardContext) -> None:
        super().__init__(ctx)
        self._runs: dict[str, dict[str, Any]] = {}  # the last listing, by id
        self._rows: dict[str, tuple[Any, ...]] = {}  # what each shown row holds
        self.filter_text = ""
        self._columns_shown: list[tuple[str, int]] = []

    def compose(self) -> ComposeResult:
        yield Static(id="header-bar")
        table: DataTable[Any] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._title()
        self.load()
        self.set_interval(1.0, self.load)

    def on_resize(self, event: events.Resize) -> None:
        self._columns()

    def _columns(self) -> None:
        """(Re)build the columns when the width calls for others; the rows follow."""
        columns = columns_for(self.size.width or self.app.size.width)
        if columns == self._columns_shown:
            return
        self._columns_shown = columns
        table = self.query_one(DataTable)
        table.clear(columns=True)
        self._rows.clear()
        for name, w in columns:
            table.add_column(name, key=name, width=w)  # fixed widths: no re-measuring on updates
        self.show(list(self._runs.values()))

    def _title(self) -> None:
        shown = f" · filter: {self.filter_text}" if self.filter_text else ""
        title = f" runs — newest first{shown}{' · read-only' if self.ctx.read_only else ''}"
        self.query_one("#header-bar", Static).update(Text(title, style="bold"))

    def restyle(self) -> None:
        """The theme changed: every row drawn again in its colours."""
        self._columns_shown = []
        self._columns()

    @work(exclusive=True, group="runs", exit_on_error=False, name="the runs list")
    async def load(self) -> None:
        try:
            runs = await self.ctx.orch.runs(200)
        except LoopdeckError as exc:
            self.notify(f"cannot list runs: {exc}", severity="error", markup=False)
            return
        self._runs = {run["id"]: run for run in runs}
        self.show(runs)
        self._offer()  # the highlighted run may wait, or have lost its driver, since

    def _matches(self, run: dict[str, Any]) -> bool:
        needle = self.filter_text.lower()
        text = " ".join([run["status"], run["goal"] or "", run["id"], *run.get("waiting_for", [])]).lower()
        return not needle or needle in text

    def show(self, runs: list[dict[str, Any]]) -> None:
        """Diff rows by run id: add new runs, update changed cells, drop runs filtered out, leave the rest."""
        table = self.query_one(DataTable)
        if not table.columns:
            self._columns()
            return
        now = self.ctx.clock()
        shown = {run["id"] for run in runs if self._matches(run)}
        for run_id in [r for r in self._rows if r not in shown]:
            table.remove_row(run_id)
            del self._rows[run_id]
        for run in reversed(runs):  # oldest first, so new rows can go on top
            if run["id"] not in shown:
                continue
            row = self._row(run, now)
            old = self._rows.get(run["id"])
            if old is None:
                table.add_row(*row, key=run["id"])
            elif old != row:
                for (name, _), value, before in zip(self._columns_shown, row, old, strict=True):
                    if value != before:
                        table.update_cell(run["id"], name, value)
            self._rows[run["id"]] = row
        created = {run_id: run["created_at"] or "" for run_id, run in self._runs.items()}
        table.sort("id", key=lambda run_id: (created.get(run_id, ""), run_id), reverse=True)

    def _row(self, run: dict[str, Any], now: float) -> tuple[Any, ...]:
        budget = f"/{run['token_budget']:,}" if run["token_budget"] is not None else ""
        widths = dict(self._columns_shown)
        goal = literal(run["goal"] or "—")
        goal.truncate(widths["goal"], overflow="ellipsis")
        cells = {
            "status": status_text(run, widths["status"]),
            "goal": goal,
            "id": run["id"],
            "progress": f"{run['done']}/{run['steps']}",
            "tokens": f"{run['tokens']:,}{budget}",
            "age": age_text(run["created_at"], now),
        }
        return tuple(cells[name] for name, _ in self._columns_shown)

    # -- acting on the highlighted run --------------------------------------------------------------

    @property
    def highlighted(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self._runs.get(str(key.value))

    def can(self, spec: ActionSpec) -> bool | None:
        run = self.highlighted
        if spec.id == "runs_resume":
            return run is not None and driver_words(run) is not None
        if spec.id == "runs_approvals":
            return run is not None and bool(run.get("waiting_for"))
        if spec.id == "runs_cancel":
            return run is not None and run["status"] in LIVE
        return True

    @on(DataTable.RowHighlighted)
    def _moved(self) -> None:
        self._offer()  # A, R and x apply to some runs only

    def _offer(self) -> None:
        self.offer(tuple(self.can(spec) for spec in self.ACTIONS))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(OpenRun(str(event.row_key.value)))

    def action_open_run(self) -> None:
        run = self.highlighted
        if run is not None:
            self.post_message(OpenRun(run["id"]))

    def action_approve_run(self) -> None:
        """The run's screen opens its approval dialog by itself: every gate of the run (and its children) queues."""
        self.action_open_run()

    def action_resume_run(self) -> None:
        run = self.highlighted
        if run is not None:
            self.post_message(DriveRun(run["id"]))
            self.post_message(OpenRun(run["id"]))

    def action_cancel_run(self) -> None:
        run = self.highlighted
        if run is None:
            return
        if run["status"] not in LIVE:
            self.notify(f"run {run['id']} is {run['status']}; an ended run can no longer be canceled", markup=False)
            return
        ask_cancel(self.app, run["id"], lambda reason: self.cancel_run(run["id"], reason))

    @work(group="actions", exit_on_error=False, name="an action")
    async def cancel_run(self, run_id: str, reason: str) -> None:
        if await self._act(self.ctx.orch.cancel(run_id, user=self.ctx.user, reason=reason), f"run {run_id} canceled"):
            self.load()

    def action_filter(self) -> None:
        def answer(value: str | None) -> None:
            if value is None:
                return
            self.filter_text = value.strip()
            self._title()
            self.show(list(self._runs.values()))

        prompt = PromptScreen(
            "Show runs whose status, goal or id holds (empty: all):", "e.g. waiting", self.filter_text
        )
        self.app.push_screen(prompt, answer)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(RUNS_ACTIONS))
