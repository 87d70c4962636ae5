"""Start the installed dashboard in Textual's headless mode on the demo run; fail unless it draws the run.

Run by .ci/run with the wheel's virtual environment, from outside the source
tree, so it imports what `pip install .` installed (a missing module, screen
or stylesheet in the wheel fails here).
"""

from __future__ import annotations

import asyncio
import sys

import core
import tui

if "site-packages" not in tui.__file__ or "site-packages" not in core.__file__:
    raise SystemExit(f"smoke test imported the source tree, not the installed package: {tui.__file__}")

from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.help import HelpScreen
from tui.dashboard.screens.run import RunScreen


async def main(db: str) -> None:
    async with await core.Orchestrator.open(db, create=False) as orch:
        run_id = (await orch.runs(1))[0]["id"]
        app = LoopdeckApp(run_id=run_id, orchestrator=orch)
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(200):
                if isinstance(app.screen, RunScreen) and app.screen.view is not None:
                    break
                await pilot.pause(0.05)
            else:
                raise SystemExit("the installed dashboard did not draw the run")
            await pilot.press("question_mark")
            await pilot.pause(0.2)
            if not isinstance(app.screen, HelpScreen):
                raise SystemExit("the help screen did not open")
            await pilot.press("escape", "q")
    print(f"dashboard ok: run {run_id} drawn from {tui.__file__}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
