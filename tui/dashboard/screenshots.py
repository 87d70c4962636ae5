"""Regenerate the SVG screenshots in ``screenshots/`` from real demo runs.

    python -m tui.dashboard.screenshots [OUT_DIR]

Drives the built-in demo plan in the real dashboard (at 160x48) on a
throw-away database and saves the screen at the moments worth showing: the
tool call and the publish gate (with its context), the live run with a tool
call in the detail pane, the timeline, help, the finished run, the plan
review; then the runs list (a waiting run, a run whose driver was killed with
SIGKILL, one never driven), the 80x24 layout and a light theme.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from textual.widgets import TabbedContent

from core import ApprovalRule, Orchestrator, demo_plan
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.approval import CALL, ApprovalScreen
from tui.dashboard.dialogs.help import HelpScreen
from tui.dashboard.dialogs.plan_review import PlanReviewScreen
from tui.dashboard.screens.run import RunScreen
from tui.dashboard.screens.runs import RunsScreen
from tui.dashboard.widgets.dag_tree import DagTree

SIZE = (160, 48)
SMALL = (80, 24)


class Shots:
    """Saves screens as SVG files, named."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.saved: list[Path] = []

    def save(self, app: LoopdeckApp, name: str) -> None:
        path = self.out / f"{name}.svg"
        app.clear_notifications()
        path.write_text(app.export_screenshot(title=f"loopdeck — {name}"), encoding="utf-8")
        self.saved.append(path)
        print(f"wrote {path}", file=sys.stderr)


async def wait_for(pilot: object, predicate: Callable[[], object], timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.1)):
        try:
            if predicate():
                return
        except AttributeError:  # a modal on top of the screen asked about
            pass
        await pilot.pause(0.1)  # type: ignore[attr-defined]
    raise TimeoutError("the demo did not reach the expected state")


def tab(app: LoopdeckApp, name: str) -> None:
    app.screen.query_one("#detail-tabs", TabbedContent).active = f"tab-{name}"


async def the_demo(shots: Shots, db: str) -> None:
    """One demo run in the dashboard, from its first tool call to its end."""
    app = LoopdeckApp(db, plan=demo_plan(), drive=True, user="operator")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.pause(0.3)
        if app.screen.current.startswith(CALL):  # the archivist's delete asks first
            shots.save(app, "tool_call")
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen) and app.screen.current == "publish")
        await pilot.press("c")  # the gate's context: what publish depends on
        await wait_for(pilot, lambda: "context" in str(app.screen.query_one("#approval-input").border_title))
        await pilot.pause(0.5)
        shots.save(app, "approval")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        tree = app.screen.query_one(DagTree)
        tree.move_cursor(tree.node_of("archive_notes"))
        tab(app, "calls")
        await pilot.pause(1.0)
        shots.save(app, "dashboard")
        tab(app, "timeline")
        await pilot.pause(1.5)
        shots.save(app, "timeline")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        shots.save(app, "help")
        await pilot.press("escape")
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.press("a")
        await wait_for(pilot, lambda: app.final_status is not None)
        await wait_for(pilot, lambda: app.screen.view.result is not None)  # the run's result, in its tab
        tab(app, "result")
        await pilot.pause(0.5)
        shots.save(app, "finished")


async def plan_review(shots: Shots, db: str) -> None:
    plan = demo_plan()
    plan = plan.model_copy(update={"policy": plan.policy.model_copy(update={"plan_approval": "required"})})
    app = LoopdeckApp(db, plan=plan, drive=True, user="operator")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PlanReviewScreen))
        await pilot.pause(0.3)
        shots.save(app, "plan_review")


async def waiting_run(db: str) -> str:
    """A demo run driven to its publish gate, then left (nobody drives it now)."""
    plan = demo_plan(speed=20)
    allow = [ApprovalRule(tool="delete_notes", action="allow")]  # the archivist's call would hold it first
    plan = plan.model_copy(update={"approval_rules": allow})
    async with await Orchestrator.open(db, user="operator") as orch:
        run_id = await orch.create_run(plan)
        driving = asyncio.create_task(orch.drive(run_id))
        async for event in orch.follow(run_id):
            if event.type == "run_waiting":
                break
        driving.cancel()
        await asyncio.gather(driving, return_exceptions=True)
        return run_id


def killed_driver(db: str) -> None:
    """A real `loopdeck demo --headless`, killed with SIGKILL a few seconds in: its run's driver is gone."""
    env = {**os.environ, "LOOPDECK_DB": db}
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "demo", "--headless"], env=env, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=4)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


async def elsewhere(shots: Shots, db: str, waiting: str, finished: str) -> None:
    """The runs list, the 80x24 layout and a light theme."""
    app = LoopdeckApp(db, user="operator")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen._rows) >= 4)
        await pilot.pause(0.5)
        shots.save(app, "runs")
    app = LoopdeckApp(db, run_id=waiting, user="operator")
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.pause(0.5)
        shots.save(app, "small")
    app = LoopdeckApp(db, run_id=finished, user="operator", theme="textual-light")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.view.result is not None)
        tab(app, "result")
        await pilot.pause(0.5)
        shots.save(app, "light")


async def capture(out: Path) -> list[Path]:
    shots = Shots(out)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "shots.db")
        await the_demo(shots, db)
        async with await Orchestrator.open(db) as orch:
            finished = (await orch.runs(1))[0]["id"]
        await plan_review(shots, db)
        waiting = await waiting_run(db)
        killed_driver(db)
        await elsewhere(shots, db, waiting, finished)
    return shots.saved


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "screenshots"
    asyncio.run(capture(out))


if __name__ == "__main__":
    main()
