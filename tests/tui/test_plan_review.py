"""The plan review screen and live streamed output, driven by keypresses; the store is checked after each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core import validate_plan
from tests.chat_server import ChatServer
from tests.tui.test_dashboard import SIZE, on_top, screen_as_text, until
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.plan_review import PlanReviewScreen
from tui.dashboard.dialogs.prompts import PromptScreen
from tui.dashboard.widgets.dag_tree import DagTree
from tui.dashboard.widgets.step_detail import StepDetail

pytestmark = pytest.mark.usefixtures("quick_keys")  # (tests/tui/conftest.py)


def reviewed_plan():
    return validate_plan(
        {
            "goal": "review me",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "policy": {"plan_approval": "required"},
            "steps": [{"key": "gather", "title": "Gather sources"}, {"key": "write", "depends_on": ["gather"]}],
        }
    )


async def test_the_review_opens_by_itself_and_a_approves_the_plan(db_url):
    app = LoopdeckApp(db_url, plan=reviewed_plan(), drive=True, user="alice", planning_tokens=(30, 12))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, PlanReviewScreen))
        assert app.screen_stack[-2].view.tokens == 42  # what the planner spent shows in the run's tokens
        await until(pilot, lambda: "Review the plan of run" in screen_as_text(app))  # drawn, not just pushed
        text = screen_as_text(app)
        assert "gather" in text and "after gather" in text
        assert (await app.orch.store.get_run(app.run_id)).status == "awaiting_plan_approval"
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None)
        assert app.final_status.value == "succeeded"
        events = [e.type for e in await app.orch.store.events_since(app.run_id, 0)]
        assert "run_plan_approved" in events
        assert not isinstance(app.screen, PlanReviewScreen)


async def test_r_rejects_the_plan_and_the_run_ends_rejected(db_url):
    app = LoopdeckApp(db_url, plan=reviewed_plan(), drive=True, user="bob")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, PlanReviewScreen))
        await pilot.press("r")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"wrong goal", "enter")
        await until(pilot, lambda: app.final_status is not None)
        run = await app.orch.store.get_run(app.run_id)
        assert run.status == "rejected" and run.reason == "plan rejected by bob: wrong goal"


def editor_script(tmp_path: Path, body: str) -> str:
    """A real editor process: a script that rewrites the file it is given."""
    script = tmp_path / "edit.py"
    script.write_text("import sys, pathlib\n" + body)
    return f"{sys.executable} {script}"


async def test_e_edits_in_the_editor_refuses_an_invalid_save_then_approves_the_valid_one(db_url, tmp_path, monkeypatch):
    counter = tmp_path / "count"
    counter.write_text("0")
    # first save: a dependency on a step that does not exist; second save: a valid extra step
    monkeypatch.setenv(
        "EDITOR",
        editor_script(
            tmp_path,
            f"""
p = pathlib.Path(sys.argv[1]); text = p.read_text(); n = int(pathlib.Path({str(counter)!r}).read_text())
pathlib.Path({str(counter)!r}).write_text(str(n + 1))
if n == 0:
    p.write_text(text + "- key: extra\\n  depends_on: [nowhere]\\n")
else:
    assert text.startswith("# problem: "), text  # the problems are on top of the file for the fix
    p.write_text(text.replace("nowhere", "write"))
""",
        ),
    )
    monkeypatch.delenv("VISUAL", raising=False)
    app = LoopdeckApp(db_url, plan=reviewed_plan(), drive=True, user="carol")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, PlanReviewScreen))
        await pilot.press("e")
        await until(pilot, lambda: 'unknown step "nowhere"' in screen_as_text(app))
        assert not app.screen.edited
        await pilot.press("e")
        await until(pilot, lambda: app.screen.edited)
        await until(pilot, lambda: "(edited)" in screen_as_text(app) and "extra" in screen_as_text(app))
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None)
        steps = await app.orch.store.get_steps(app.run_id)
        assert [s.key for s in steps] == ["gather", "write", "extra"]
        assert all(s.status == "succeeded" for s in steps)


async def test_the_output_tab_fills_in_while_an_llm_agent_streams(db_url):
    server = ChatServer().start()
    try:
        server.stream([f"line {i}\n" for i in range(40)], chunk_delay_s=0.05)
        plan = validate_plan(
            {
                "agents": {"llm": {"kind": "llm", "base_url": server.url, "model": "m", "stream": True}},
                "steps": [{"key": "essay"}],
            }
        )
        app = LoopdeckApp(db_url, plan=plan, drive=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.screen.query_one(DagTree).highlighted_key == "essay")
            await until(pilot, lambda: "streaming… line 0" in str(app.screen.query_one("#detail-output").render()))
            assert app.final_status is None  # still running: this is live output, not the result
            await until(pilot, lambda: app.final_status is not None)
            await until(
                pilot, lambda: "line 39" in str(app.screen.query_one(StepDetail).query_one("#detail-output").render())
            )
    finally:
        server.stop()


async def test_a_replan_an_agent_proposes_is_reviewed_in_the_same_screen(db_url):
    plan = validate_plan(
        {
            "agents": {
                "py": {"kind": "python", "call": "tests.fixtures.agents:propose_more"},
                "sim": {"kind": "sim", "latency_ms": 0},
            },
            "policy": {"plan_approval": "required"},
            "steps": [
                {
                    "key": "think",
                    "agent": "py",
                    "input": {"steps": [{"key": "extra", "agent": "sim", "depends_on": ["think"]}]},
                }
            ],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="dana")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, PlanReviewScreen))
        await pilot.press("a")  # the initial plan
        await until(pilot, lambda: on_top(app, PlanReviewScreen) and app.screen.proposal is not None)
        await until(pilot, lambda: "Step think proposes a replan (append)" in screen_as_text(app))
        assert "extra" in screen_as_text(app)
        await pilot.press("r")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"not now", "enter")
        await until(pilot, lambda: app.final_status is not None)
        assert app.final_status.value == "succeeded"
        assert [s.key for s in await app.orch.store.get_steps(app.run_id)] == ["think"]
        events = [e.type for e in await app.orch.store.events_since(app.run_id, 0)]
        assert events.count("run_plan_approved") == 1 and events.count("run_plan_rejected") == 1
