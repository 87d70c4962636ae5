"""SVG snapshots of the dashboard (pytest-textual-snapshot) on a frozen clock.

Update after an intended change of the screen with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the report before committing.
"""

from __future__ import annotations

import copy

import pytest

from core import validate_plan
from core.demo import DEMO
from tui.app import LoopdeckApp
from tui.screens.approval import ApprovalScreen
from tui.screens.help import HelpScreen

SIZE = (150, 44)
FROZEN = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def instant_demo():
    """The demo plan with every agent answering at once, so runs are fast and repeatable."""
    data = copy.deepcopy(DEMO)
    for agent in data["agents"].values():
        agent["latency_ms"] = 0
    return validate_plan(data)


@pytest.fixture
def app(tmp_path):
    return LoopdeckApp(f"sqlite+aiosqlite:///{tmp_path / 'snap.db'}", plan=instant_demo(), drive=True, user="operator",
                       clock=lambda: FROZEN, run_ids=lambda now: "20260921-133320-snap01")


async def wait_until(pilot, predicate, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("the dashboard did not reach the expected state")


async def to_gate(pilot) -> None:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen))
    await pilot.pause(0.3)
    pilot.app.clear_notifications()


async def to_end(pilot) -> None:
    await to_gate(pilot)
    await pilot.press("a")
    await wait_until(pilot, lambda: pilot.app.final_status is not None)
    await wait_until(pilot, lambda: pilot.app.screen.view is not None and pilot.app.screen.view.finished)
    await pilot.pause(0.5)
    pilot.app.clear_notifications()
    await pilot.pause(0.1)


def test_main_screen(app, snap_compare):
    assert snap_compare(app, terminal_size=SIZE, run_before=to_end)


def test_approval_modal(app, snap_compare):
    assert snap_compare(app, terminal_size=SIZE, run_before=to_gate)


def test_help_screen(app, snap_compare):
    async def to_help(pilot) -> None:
        await to_end(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=to_help)


def test_timeline(app, snap_compare):
    async def to_timeline(pilot) -> None:
        from textual.widgets import TabbedContent

        await to_end(pilot)
        pilot.app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-timeline"
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_timeline)
