"""The runs list: newest first, refreshed every second; Enter opens a run."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from core import LoopdeckError
from tui.dashboard.context import DashboardContext
from tui.dashboard.messages import OpenRun
from tui.dashboard.screens.base import LoopdeckScreen
from tui.dashboard.widgets.header_bar import STATUS_STYLE, elapsed_text
from tui.text.literal import literal

COLUMNS = (("status", 13), ("goal", 60), ("progress", 10), ("tokens", 22), ("age", 9), ("id", 24))


def age_text(created_iso: str | None, now: float) -> str:
    if not created_iso:
        return ""
    from datetime import datetime

    return elapsed_text(now - datetime.fromisoformat(created_iso).timestamp())


class RunsScreen(LoopdeckScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_run", "Open", id="runs-open", tooltip="Open the highlighted run"),
        Binding("q", "app.quit", "Quit", id="runs-quit", tooltip="Quit the dashboard"),
    ]

    def __init__(self, ctx: DashboardContext) -> None:
        super().__init__(ctx)
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._created: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(Text(" runs — newest first · enter opens one", style="bold"), id="header-bar")
        table: DataTable[Any] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name, width in COLUMNS:
            table.add_column(name, key=name, width=width)  # fixed widths: no re-measuring on updates
        table.focus()
        self.load()
        self.set_interval(1.0, self.load)

    @work(exclusive=True, group="runs", exit_on_error=False, name="the runs list")
    async def load(self) -> None:
        try:
            runs = await self.ctx.orch.runs(200)
        except LoopdeckError as exc:
            self.notify(f"cannot list runs: {exc}", severity="error", markup=False)
            return
        self.show(runs)

    def show(self, runs: list[dict[str, Any]]) -> None:
        """Diff rows by run id: add new runs, update changed cells, leave the rest alone."""
        table = self.query_one(DataTable)
        now = self.ctx.clock()
        for run in reversed(runs):  # oldest first, so new rows can go on top
            budget = f"/{run['token_budget']:,}" if run["token_budget"] is not None else ""
            row = (
                Text(run["status"], style=STATUS_STYLE.get(run["status"], "")),
                literal(run["goal"] or "—"),
                f"{run['done']}/{run['steps']}",
                f"{run['tokens']:,}{budget}",
                age_text(run["created_at"], now),
                run["id"],
            )
            old = self._rows.get(run["id"])
            if old is None:
                table.add_row(*row, key=run["id"])
                table.move_cursor(row=0) if table.row_count == 1 else None
            elif old != row:
                for (name, _), value, before in zip(COLUMNS, row, old, strict=True):
                    if value != before:
                        table.update_cell(run["id"], name, value)
            self._rows[run["id"]] = row
            self._created[run["id"]] = run["created_at"] or ""
        table.sort("id", key=lambda run_id: (self._created.get(run_id, ""), run_id), reverse=True)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.open(str(event.row_key.value))

    def action_open_run(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.open(str(key.value))

    def open(self, run_id: str) -> None:
        self.post_message(OpenRun(run_id))
