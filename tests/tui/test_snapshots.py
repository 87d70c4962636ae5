"""SVG snapshots of the dashboard (pytest-textual-snapshot) on a frozen clock.

Update after an intended change of the screen with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the report before committing.
"""

from __future__ import annotations

import copy

from core import validate_plan
from core.demo import DEMO
from tests.conftest import drive_until
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.approval import ApprovalScreen
from tui.dashboard.dialogs.help import HelpScreen

SIZE = (150, 44)
FROZEN = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def instant_demo():
    """The demo plan with every agent answering at once, so runs are fast and repeatable."""
    data = copy.deepcopy(DEMO)
    for agent in data["agents"].values():
        agent["latency_ms"] = 0
    # the archivist's delete is allowed here: whether it asked before or after the publish gate opened would
    # change the dialog's queue from run to run (test_tool_call_dialog shows that dialog)
    data["approval_rules"] = [{"tool": "delete_notes", "action": "allow"}]
    # and its calls are left out: their events interleaved with the other steps' at the end of the event log
    data["agents"]["archivist"]["tool_calls"] = []
    return validate_plan(data)


RUN_ID = "20260921-141320-snap01"


async def _prepare(db: str, finish: bool) -> None:
    """Drive the instant demo on a frozen clock to its approval gate, and on to the end if asked."""
    import asyncio

    from core import Orchestrator

    async with await Orchestrator.open(db, user="operator", clock=lambda: FROZEN, run_ids=lambda now: RUN_ID) as orch:
        run_id = await orch.create_run(instant_demo())
        drive = asyncio.create_task(orch.drive(run_id))
        async for event in orch.follow(run_id):
            if event.type == "run_waiting":
                break
        if finish:
            await orch.approve(run_id, "publish", user="operator")
            await drive
        else:
            drive.cancel()  # the driver goes away; the gate stays open in the store
            await asyncio.gather(drive, return_exceptions=True)


def attached(tmp_path, finish: bool) -> LoopdeckApp:
    """The dashboard attached to a prepared run: the same screen every time."""
    import asyncio

    db = f"sqlite+aiosqlite:///{tmp_path / 'snap.db'}"
    asyncio.run(_prepare(db, finish))
    return LoopdeckApp(db, run_id=RUN_ID, user="operator", clock=lambda: FROZEN)


async def wait_until(pilot, predicate, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("the dashboard did not reach the expected state")


async def settled(pilot) -> None:
    from tui.dashboard.widgets.step_detail import StepDetail

    await wait_until(pilot, lambda: getattr(pilot.app.screen, "view", None) is not None)
    await wait_until(pilot, lambda: pilot.app.screen.query_one(StepDetail).shown_key == "plan")
    await pilot.pause(0.3)
    pilot.app.clear_notifications()
    await pilot.pause(0.1)


def test_main_screen(tmp_path, snap_compare):
    assert snap_compare(attached(tmp_path, finish=True), terminal_size=SIZE, run_before=settled)


def test_approval_modal(tmp_path, snap_compare):
    async def to_gate(pilot) -> None:
        from tui.dashboard.widgets.step_detail import StepDetail

        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen))
        below = pilot.app.screen_stack[-2]  # the run screen: its detail pane loaded, or it varies under load
        await wait_until(pilot, lambda: below.query_one(StepDetail).shown_key == "plan")
        await pilot.pause(0.3)
        pilot.app.clear_notifications()

    assert snap_compare(attached(tmp_path, finish=False), terminal_size=SIZE, run_before=to_gate)


def test_tool_call_dialog(tmp_path, snap_compare):
    """The demo's archivist asks to delete notes: the dialog shows the call, its hints and its arguments."""
    import asyncio

    from core import Orchestrator

    data = copy.deepcopy(DEMO)
    data.update(
        default_agent="archivist",
        agents={"archivist": {**data["agents"]["archivist"], "latency_ms": 0}},
        steps=[{"key": "archive_notes", "title": "Archive research notes", "agent": "archivist"}],
    )
    db = f"sqlite+aiosqlite:///{tmp_path / 'snap.db'}"

    async def prepare() -> None:
        async with await Orchestrator.open(
            db, user="operator", clock=lambda: FROZEN, run_ids=lambda now: RUN_ID
        ) as orch:
            await drive_until(orch, await orch.create_run(validate_plan(data)), "tool_call_waiting")

    asyncio.run(prepare())

    async def to_dialog(pilot) -> None:
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen))
        await pilot.pause(0.3)
        pilot.app.clear_notifications()

    app = LoopdeckApp(db, run_id=RUN_ID, user="operator", clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=SIZE, run_before=to_dialog)


def test_help_screen(tmp_path, snap_compare):
    async def to_help(pilot) -> None:
        await settled(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    assert snap_compare(attached(tmp_path, finish=True), terminal_size=SIZE, run_before=to_help)


def test_timeline(tmp_path, snap_compare):
    async def to_timeline(pilot) -> None:
        from textual.widgets import TabbedContent

        await settled(pilot)
        pilot.app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-timeline"
        await wait_until(pilot, lambda: "0.0s" in str(pilot.app.screen.query_one("#detail-timeline").render()))
        await pilot.pause(0.2)

    assert snap_compare(attached(tmp_path, finish=True), terminal_size=SIZE, run_before=to_timeline)


def test_main_screen_at_80x24(tmp_path, snap_compare):
    """The smallest terminal: header badges first, the footer keeps ? and q, the tree and log clipped, not cut."""
    assert snap_compare(attached(tmp_path, finish=True), terminal_size=(80, 24), run_before=settled)


def test_main_screen_at_160x48(tmp_path, snap_compare):
    assert snap_compare(attached(tmp_path, finish=True), terminal_size=(160, 48), run_before=settled)


def test_approval_editor_at_80x24_shows_its_error_and_keys(tmp_path, snap_compare):
    """At 80x24 the JSON editor, its refusal of bad JSON and its ctrl+s line all fit."""

    async def bad_json(pilot) -> None:
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen) and pilot.app.screen.shown)
        await pilot.press("e")
        editor = pilot.app.screen.query_one("#approval-editor")
        editor.cursor_blink = False  # a blinking cursor would differ from one picture to the next
        editor.text = '{"channel": "blog",}'
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "not valid JSON" in str(pilot.app.screen.query_one("#approval-error").render()))
        pilot.app.clear_notifications()
        await pilot.pause(0.2)

    assert snap_compare(attached(tmp_path, finish=False), terminal_size=(80, 24), run_before=bad_json)


def test_light_theme(tmp_path, snap_compare):
    app = attached(tmp_path, finish=True)
    app.theme = "textual-light"
    assert snap_compare(app, terminal_size=SIZE, run_before=settled)


def test_runs_list_at_80x24(tmp_path, snap_compare):
    """Waiting for a step, never driven, ended: the id always on screen, what each waits for, who drives it."""
    import asyncio

    from core import Orchestrator

    db = f"sqlite+aiosqlite:///{tmp_path / 'snap.db'}"
    ids = iter(["20260921-141320-wait02", "20260921-141320-idle03"])

    async def prepare() -> None:
        await _prepare(db, finish=True)  # RUN_ID: succeeded
        async with await Orchestrator.open(
            db, user="operator", clock=lambda: FROZEN, run_ids=lambda now: next(ids)
        ) as orch:
            await drive_until(orch, await orch.create_run(instant_demo()))
            await orch.create_run(instant_demo())

    asyncio.run(prepare())

    async def listed(pilot) -> None:
        from tui.dashboard.screens.runs import RunsScreen

        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and len(pilot.app.screen._rows) == 3)
        await pilot.pause(0.3)

    app = LoopdeckApp(db, user="operator", clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=(80, 24), run_before=listed)
