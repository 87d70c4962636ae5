"""Regenerate the SVG screenshots in ``screenshots/`` from a real demo run.

    python -m tui.dashboard.screenshots [OUT_DIR]

Drives the built-in demo plan in the real dashboard (at 160x48) on a
throw-away database and saves the screen at the moments worth showing.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from textual.widgets import TabbedContent

from core import demo_plan
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.approval import CALL, ApprovalScreen
from tui.dashboard.dialogs.help import HelpScreen
from tui.dashboard.dialogs.plan_review import PlanReviewScreen

SIZE = (160, 48)


async def capture(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []

    def save(app: LoopdeckApp, name: str) -> None:
        path = out / f"{name}.svg"
        path.write_text(app.export_screenshot(title=f"loopdeck — {name}"), encoding="utf-8")
        saved.append(path)
        print(f"wrote {path}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        app = LoopdeckApp(str(Path(tmp) / "shots.db"), plan=demo_plan(), drive=True, user="operator")
        async with app.run_test(size=SIZE) as pilot:

            async def wait_for(predicate, timeout: float = 60) -> None:
                for _ in range(int(timeout / 0.1)):
                    if predicate():
                        return
                    await pilot.pause(0.1)
                raise TimeoutError("the demo did not reach the expected state")

            await pilot.pause(6)
            save(app, "dashboard")
            await wait_for(lambda: isinstance(app.screen, ApprovalScreen))
            await pilot.pause(0.3)
            if app.screen.current.startswith(CALL):  # the archivist's delete asks first
                save(app, "tool_call")
                await pilot.press("a")
                await wait_for(
                    lambda: isinstance(app.screen, ApprovalScreen) and not app.screen.current.startswith(CALL)
                )
                await pilot.pause(0.3)
            save(app, "approval")
            await pilot.press("escape")
            await pilot.press("question_mark")
            await wait_for(lambda: isinstance(app.screen, HelpScreen))
            save(app, "help")
            await pilot.press("escape")
            await pilot.press("A")
            await wait_for(lambda: isinstance(app.screen, ApprovalScreen))
            await pilot.press("a")
            await wait_for(lambda: app.final_status is not None)
            await wait_for(lambda: app.screen.view.result is not None)  # the run's result, in its tab
            app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-result"
            await pilot.pause(0.5)
            save(app, "finished")
        plan = demo_plan()
        plan = plan.model_copy(update={"policy": plan.policy.model_copy(update={"plan_approval": "required"})})
        app = LoopdeckApp(str(Path(tmp) / "shots.db"), plan=plan, drive=True, user="operator")
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(100):
                if isinstance(app.screen, PlanReviewScreen):
                    break
                await pilot.pause(0.1)
            await pilot.pause(0.3)
            save(app, "plan_review")
    return saved


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "screenshots"
    asyncio.run(capture(out))


if __name__ == "__main__":
    main()
