"""The dashboard never ends in a screen of traceback: a failed worker is a notification, anything else one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from core import Orchestrator
from tests.conftest import plan
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.usefixtures("quick_keys")  # (tests/tui/conftest.py)


def test_an_error_outside_a_worker_ends_the_dashboard_with_one_line_and_no_locals(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from tui.dashboard.app import LoopdeckApp

        async def auto_pilot(pilot):
            await pilot.pause(0.5)
            def explode():
                secret = "postgresql://u:hunter2@h/db"  # a local that Textual's own dump would print
                raise RuntimeError(f"cannot reach {secret}")
            pilot.app.call_later(explode)
            await pilot.pause(2)

        app = LoopdeckApp(sys.argv[1])
        app.run(headless=True, auto_pilot=auto_pilot)
        sys.exit(app.return_code or 0)
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "300"},
    )
    assert result.returncode == 3
    assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "loopdeck: unexpected error in the dashboard: RuntimeError: cannot reach "
        "postgresql://u:***@h/db; this is a bug (LOOPDECK_DEBUG=1 shows the traceback)"
    )


async def test_a_failed_worker_is_a_notification_and_the_dashboard_stays(db_url):
    from tui.dashboard.app import LoopdeckApp

    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan([{"key": "a"}]))
        await orch.drive(run_id)
        app = LoopdeckApp(run_id=run_id, orchestrator=orch)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)

            async def fails() -> None:
                raise ValueError("a worker broke")

            app.run_worker(fails(), name="a test worker", exit_on_error=False)
            await pilot.pause(0.3)
            messages = [n.message for n in app._notifications]
            assert any("unexpected error in a test worker: ValueError: a worker broke" in m for m in messages)
            assert app.is_running


async def test_a_failed_screen_worker_is_reported_too(db_url, monkeypatch):
    """Worker.StateChanged does not bubble: a screen's worker error was neither shown nor fatal."""
    from tui.dashboard.app import LoopdeckApp
    from tui.dashboard.screens.run import RunScreen

    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan([{"key": "a"}, {"key": "b"}]))
        await orch.drive(run_id)
        app = LoopdeckApp(run_id=run_id, orchestrator=orch)
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(50):
                if isinstance(app.screen, RunScreen) and app.screen.view is not None:
                    break
                await pilot.pause(0.1)

            async def broken(*args, **kwargs):
                raise RuntimeError("the detail could not be read")

            monkeypatch.setattr(orch, "step_context", broken)
            await pilot.press("down")  # highlight another step: its detail is read in a worker
            said = "unexpected error in the step detail: RuntimeError: the detail could not be read"
            for _ in range(100):
                if any(said in n.message for n in app._notifications):
                    break
                await pilot.pause(0.05)
            assert any(said in n.message for n in app._notifications), [n.message for n in app._notifications]
            assert app.is_running
