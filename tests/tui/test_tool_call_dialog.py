"""The approval dialog for tool calls (pilot tests): queued by id, edited as JSON, checked against the schema."""

from __future__ import annotations

import json

import pytest

from core import validate_plan
from tests.fixtures.tools import INVOKED, SKILLS
from tests.tui.test_dashboard import SIZE, dialog_shown, on_top, until
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.approval import CALL, ApprovalScreen
from tui.dashboard.dialogs.prompts import PromptScreen

pytestmark = pytest.mark.usefixtures("quick_keys")  # (tests/tui/conftest.py)


def calling_plan(*script: dict, steps: list[str] = ("clean",)):
    agent = {"kind": "sim", "latency_ms": 0, "tools": ["delete_file", "send"], "tool_calls": list(script)}
    return validate_plan(
        {"skills": SKILLS, "agents": {"bot": agent}, "steps": [{"key": k, "agent": "bot"} for k in steps]}
    )


async def test_edited_arguments_the_schema_refuses_stay_in_the_dialog_then_the_edit_runs(db_url):
    INVOKED.clear()
    app = LoopdeckApp(db_url, plan=calling_plan({"tool": "send", "arguments": {"message": {"to": "ops"}}}), drive=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        modal = app.screen
        assert modal.current == CALL + "clean.1.1.0"
        await pilot.pause(0.2)
        await pilot.press("e")  # a form from the tool's schema: message (an object: JSON), copies (a number)
        await until(pilot, lambda: bool(modal.query("#approval-form #field-1")))
        message, copies = modal.query_one("#approval-form #field-0"), modal.query_one("#approval-form #field-1")
        assert json.loads(message.text) == {"to": "ops"} and copies.value == "1"
        message.text = '{"to": "ops", "priority": "urgent"}'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "is not one of" in str(modal.query_one("#approval-error").render()))
        assert app.screen is modal and INVOKED == []  # refused in place: nothing ran
        copies.value = "two"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "'two' is not a whole number" in str(modal.query_one("#approval-error").render()))
        message.text = '{"to": "ops", "priority": "high"}'
        copies.value = "2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.final_status is not None)
    assert INVOKED == [{"tool": "send", "to": "ops", "priority": "high", "copies": 2}]


async def test_two_waiting_calls_queue_and_each_answer_names_its_own(db_url):
    INVOKED.clear()
    plan = calling_plan({"tool": "delete_file", "arguments": {"path": "p"}}, steps=["left", "right"])
    app = LoopdeckApp(db_url, plan=plan, drive=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app) and len(app.screen.queue) == 2)
        modal = app.screen
        first = modal.current
        await pilot.pause(0.2)
        await pilot.press("r")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"not this one", "enter")
        await until(pilot, lambda: modal.current != first)
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None)
        calls = {c.id: c for c in await app.orch.tool_calls(app.run_id)}
    refused, approved = calls[first.removeprefix(CALL)], next(c for k, c in calls.items() if CALL + k != first)
    assert (refused.status.value, refused.reason) == ("rejected", "not this one")
    assert approved.status.value == "succeeded" and len(INVOKED) == 1


async def test_w_runs_the_call_and_allows_its_tool_for_the_rest_of_the_run(db_url):
    INVOKED.clear()
    plan = calling_plan(
        {"tool": "delete_file", "arguments": {"path": "a"}}, {"tool": "delete_file", "arguments": {"path": "b"}}
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="wendy")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.pause(0.2)
        await pilot.press("w")
        await until(pilot, lambda: app.final_status is not None)
        calls = {c.id: c for c in await app.orch.tool_calls(app.run_id)}
    assert calls["clean.1.1.0"].decided_by == "wendy" and calls["clean.1.2.0"].decided_by is None  # not asked again
    assert [i["path"] for i in INVOKED] == ["a", "b"]


async def test_the_form_edits_text_and_a_switch_the_tool_gets_the_edit_and_the_calls_tab_shows_it(db_url):
    from textual.widgets import Input, Switch, TabbedContent

    from tests.tui.test_dashboard import screen_as_text

    INVOKED.clear()
    plan = calling_plan({"tool": "delete_file", "arguments": {"path": "a.txt"}})
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="carol")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        modal = app.screen
        await pilot.pause(0.2)
        await pilot.press("e")
        await until(pilot, lambda: bool(modal.query("#approval-form #field-1")))
        path, force = modal.query_one("#field-0", Input), modal.query_one("#field-1", Switch)
        assert path.value == "a.txt" and force.value is False
        path.value = "b.txt"
        force.value = True
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.final_status is not None and not isinstance(app.screen, ApprovalScreen))
        app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-calls"  # the call, as it went
        await until(pilot, lambda: "by carol" in screen_as_text(app))
        shown = screen_as_text(app)
    assert INVOKED == [{"tool": "delete_file", "path": "b.txt", "force": True}]
    assert "clean.1.1.0" in shown and "succeeded" in shown and "b.txt" in shown
    assert "default for a destructive tool" in shown


async def test_a_gated_steps_input_is_edited_in_a_form_from_its_input_schema(db_url):
    from textual.widgets import Select

    from tests.tui.test_dashboard import step_row

    schema = {"type": "object", "properties": {"to": {"enum": ["staging", "production"]}}, "required": ["to"]}
    plan = validate_plan(
        {"steps": [{"key": "publish", "approval": "required", "input": {"to": "staging"}, "input_schema": schema}]}
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="carol")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        modal = app.screen
        await pilot.pause(0.2)
        await pilot.press("e")
        await until(pilot, lambda: bool(modal.query("#approval-form #field-0")))
        choice = modal.query_one("#field-0", Select)
        assert choice.value == "staging"
        choice.value = "production"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.final_status is not None)
        row = await step_row(app.orch, app.run_id, "publish")
    assert row.input == {"to": "production"} and row.approved_by == "carol"
