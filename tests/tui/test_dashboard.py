"""Pilot tests of the dashboard: every keypress is checked against the store afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
import inspect
import re
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.css.query import NoMatches
from textual.widgets import TabbedContent

from core import Orchestrator, validate_plan
from core.store import WriteBatch
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.approval import ApprovalScreen
from tui.dashboard.dialogs.help import HelpScreen
from tui.dashboard.dialogs.prompts import ConfirmScreen, PromptScreen
from tui.dashboard.screens import run as run_screen_module
from tui.dashboard.screens.run import RunScreen
from tui.dashboard.screens.runs import RunsScreen
from tui.dashboard.widgets.dag_tree import DagTree
from tui.dashboard.widgets.event_log import EventLog
from tui.text.literal import clean, literal

pytestmark = pytest.mark.usefixtures("quick_keys")  # (tests/tui/conftest.py)

SIZE = (140, 40)


def gated_plan(**policy):
    return validate_plan(
        {
            "goal": "pilot",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0, "seed": 1}},
            "policy": policy,
            "steps": [
                {"key": "draft"},
                {"key": "publish", "approval": "required", "depends_on": ["draft"], "input": {"to": "staging"}},
            ],
        }
    )


def _holds(predicate) -> bool:
    try:
        return bool(predicate())
    except (AttributeError, NoMatches):  # e.g. a modal is still on top of the screen the predicate looks at
        return False


async def until(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not _holds(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await pilot.pause(0.05)


def counted(monkeypatch, owner: type, name: str) -> list[float]:
    """When each call of ``owner.name`` (a method, plain or async) was made, from now on in this test."""
    real, calls = getattr(owner, name), []

    if inspect.iscoroutinefunction(real):

        async def wrapper(self, *args, **kwargs):
            calls.append(time.monotonic())
            return await real(self, *args, **kwargs)
    else:

        def wrapper(self, *args, **kwargs):
            calls.append(time.monotonic())
            return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def on_top(app, screen_type) -> bool:
    """A screen of this type is on top with its widgets in (pushed is not yet composed)."""
    return isinstance(app.screen, screen_type) and app.screen.is_mounted


def run_screen(app) -> RunScreen | None:
    """The run's screen, on top or under a dialog."""
    return next((screen for screen in app.screen_stack if isinstance(screen, RunScreen)), None)


def dialog_shown(app) -> bool:
    """The approval dialog is up and shows its first gate (its keys act from then on)."""
    return isinstance(app.screen, ApprovalScreen) and app.screen.shown


def ended_on_its_screen(app) -> bool:
    """The run ended, and its screen is on top and drawn (no dialog left over it)."""
    return app.final_status is not None and isinstance(app.screen, RunScreen) and app.screen.view is not None


async def highlight(pilot, tree, node) -> None:
    """Put the tree's cursor on ``node``: a node's line is known only once the tree has laid it out (a relabel
    after the run ended can lay it out again), so a key pressed at once may find the cursor elsewhere."""
    for _ in range(200):
        tree.move_cursor(node)
        if tree.cursor_node is node:
            return
        await pilot.pause(0.05)
    raise AssertionError(f"the cursor never reached {node.data}")


def screen_as_text(app) -> str:
    """The characters on screen, from the SVG screenshot."""
    svg = app.export_screenshot()
    return html.unescape("".join(re.findall(r">([^<]*)</text>", svg))).replace("\xa0", " ")


async def step_row(orch: Orchestrator, run_id: str, key: str):
    return await orch.store.get_step(run_id, key)


async def test_a_opens_by_itself_and_a_approves_as_the_named_user(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="alice")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None)
        row = await step_row(app.orch, app.run_id, "publish")
        assert row.approved_by == "alice" and row.status == "succeeded"
        # the end of the run is said plainly
        await until(
            pilot, lambda: any(f"run {app.run_id} ended succeeded" in str(n.message) for n in app._notifications)
        )


@pytest.mark.parametrize("frozen", [False, True])
async def test_a_gate_that_came_while_help_was_open_is_offered_as_help_closes_unless_frozen(
    db_url, monkeypatch, frozen
):
    monkeypatch.setattr(run_screen_module, "QUIET_REFRESH_S", 3600.0)  # no steady refresh: only the close can
    async with await Orchestrator.open(db_url, user="alice") as orch:
        run_id = await orch.create_run(gated_plan())  # (driven once help is open: its gate comes after)
        app = LoopdeckApp(db_url, run_id=run_id, user="alice")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            if frozen:
                await pilot.press("space")
            await pilot.press("question_mark")
            await until(pilot, lambda: on_top(app, HelpScreen))
            driving = asyncio.create_task(orch.drive(run_id))
            try:
                view = run_screen(app).view  # (the run waits: no more events come, so nothing else draws)
                await until(pilot, lambda: view.status == "waiting_user" and "publish" in view.waiting)
                await pilot.pause(1.0)  # (its events and the step detail drawn while help is on top; then quiet)
                assert on_top(app, HelpScreen)
                await pilot.press("escape")
                if frozen:  # nothing opens by itself on a frozen screen; unfrozen, it draws and opens at once
                    await pilot.pause(0.5)
                    assert on_top(app, RunScreen)
                    await pilot.press("space")
                await until(pilot, lambda: dialog_shown(app), timeout=5)
                assert app.screen.queue == ["publish"]
            finally:
                driving.cancel()
                await asyncio.gather(driving, return_exceptions=True)


async def test_a_gate_answered_in_the_dialog_is_not_offered_again_while_its_event_is_on_its_way(db_url):
    shown: list[list[str]] = []
    real = ApprovalScreen.on_mount

    def on_mount(self):
        shown.append(list(self.queue))
        real(self)

    steps = [{"key": "a"}, {"key": "b", "depends_on": ["a"], "approval": "required"}]
    steps.append({"key": "c", "depends_on": ["b"], "approval": "required"})
    app = LoopdeckApp(db_url, plan=validate_plan({"steps": steps}), drive=True, user="alice")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ApprovalScreen, "on_mount", on_mount)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: dialog_shown(app) and app.screen.queue == ["b"])
            await pilot.press("a")
            await until(pilot, lambda: dialog_shown(app) and app.screen.queue == ["c"])
            await pilot.press("a")
            await until(pilot, lambda: ended_on_its_screen(app))
            await pilot.pause(0.5)
    assert shown == [["b"], ["c"]] and app.final_status.value == "succeeded"


async def test_r_rejects_with_a_reason(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="bob")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("r")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"too risky", "enter")
        await until(pilot, lambda: app.final_status is not None)
        row = await step_row(app.orch, app.run_id, "publish")
        assert row.status == "rejected" and row.error == "rejected by bob: too risky"
        assert app.final_status.value == "rejected"


async def test_e_edits_the_input_refuses_invalid_json_in_place_then_approves_the_edit(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="carol")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        modal = app.screen
        await pilot.press("e")
        editor = modal.query_one("#approval-editor")
        await until(pilot, lambda: app.focused is editor)  # opened with the step's input in it
        editor.text = '{"to": "production",}'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "not valid JSON" in str(modal.query_one("#approval-error").render()))
        assert app.screen is modal  # refused in place, nothing sent
        assert (await step_row(app.orch, app.run_id, "publish")).status == "waiting_user"
        editor.text = '{"to": "production"}'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.final_status is not None)
        row = await step_row(app.orch, app.run_id, "publish")
        assert row.approved_by == "carol" and row.input == {"to": "production"}


async def test_escape_defers_and_capital_a_reopens_the_queue(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="dan")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.pause(0.2)  # the dialog is drawn and takes keys (a loaded machine is slow to get there)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ApprovalScreen))
        await pilot.pause(0.5)
        assert not isinstance(app.screen, ApprovalScreen)  # deferred: it does not pop up again by itself
        assert (await step_row(app.orch, app.run_id, "publish")).status == "waiting_user"
        await pilot.press("A")
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None)


async def test_plus_and_minus_give_feedback_on_the_highlighted_step(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="erin")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("a")
        await until(pilot, lambda: ended_on_its_screen(app))
        tree = app.screen.query_one(DagTree)
        await highlight(pilot, tree, tree.root.children[0])  # "draft"
        await pilot.press("plus")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"clear", "enter")
        await until(pilot, lambda: not isinstance(app.screen, PromptScreen))
        for _ in range(100):  # the answer is a worker: wait for its write, not a fixed time
            feedback = await app.orch.store.feedback_of(app.run_id)
            if feedback:
                break
            await pilot.pause(0.05)
        assert [(f.step_key, f.rating, f.comment, f.created_by) for f in feedback] == [("draft", "up", "clear", "erin")]
        await until(pilot, lambda: "👍" in str(tree.root.children[0].label))  # the tree shows the rating


async def test_x_cancels_after_confirmation_with_the_reason_typed(db_url):
    plan = validate_plan({"agents": {"slow": {"kind": "sim", "latency_ms": 20000}}, "steps": [{"key": "long"}]})
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="fay")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.run_id is not None and isinstance(app.screen, type(app.screen)))
        await pilot.pause(0.5)
        await pilot.press("x")
        await until(pilot, lambda: on_top(app, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: on_top(app, PromptScreen))  # like the CLI's --reason, optional
        await pilot.press(*"wrong goal", "enter")
        await until(pilot, lambda: app.final_status is not None)
        run = await app.orch.store.get_run(app.run_id)
        assert run.status == "canceled" and run.reason == "canceled by fay: wrong goal"
        await until(pilot, lambda: app.screen.view.finished)  # (the screen has seen it end)
        await pilot.press("x")  # an ended run: refused at once, no confirmation to say no to
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        said = f"run {app.run_id} is canceled; an ended run can no longer be canceled"
        assert any(said == str(n.message) for n in app._notifications)


async def test_skipping_a_step_its_state_does_not_allow_is_refused_before_any_confirmation(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="fay")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen.view.steps["draft"].status == "succeeded")
        assert app.screen.query_one(DagTree).highlighted_key == "draft"
        await pilot.press("s")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        said = 'step "draft" is succeeded; only a pending or waiting_user step can be skipped'
        assert any(said == str(n.message) for n in app._notifications)


async def test_f_finishes_the_run_with_a_typed_answer_and_the_result_tab_shows_it(db_url):
    plan = validate_plan(
        {
            "agents": {"fast": {"kind": "sim", "latency_ms": 0}, "slow": {"kind": "sim", "latency_ms": 20000}},
            "steps": [{"key": "notes", "agent": "fast"}, {"key": "long", "agent": "slow"}],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="gus")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.run_id is not None and app.screen.view.steps["long"].status == "running")
        await pilot.press("f")
        await until(pilot, lambda: on_top(app, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"ship it", "enter")
        await until(pilot, lambda: app.final_status is not None)
        run = await app.orch.run(app.run_id)
        assert run.status == "succeeded" and run.reason == "finished by gus: finished from the dashboard"
        assert run.result is not None and run.result.answer == "ship it" and run.result.finished_by == "gus"
        await until(pilot, lambda: app.screen.view.result is not None)
        app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-result"
        said = "finished by gus: finished from the dashboard; 1 of 2 steps succeeded"
        await until(pilot, lambda: said in screen_as_text(app) and "ship it" in screen_as_text(app))
        await pilot.press("f")  # once ended, the key says so instead of asking
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)


async def test_read_only_disables_every_action(db_url):
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(gated_plan())
    app = LoopdeckApp(db_url, run_id=run_id, read_only=True, user="watcher")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        for key in ("x", "b", "plus"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is screen  # no dialog opened
        assert screen.check_action("cancel_run", ()) is False and screen.check_action("help", ()) is True
        await pilot.press("question_mark")
        await until(pilot, lambda: on_top(app, HelpScreen))


async def test_untrusted_text_is_shown_literally(db_url):
    nasty = "[bold red]boom[/] \x1b[2J\x1b]0;pwned\x07"
    plan = validate_plan(
        {
            "agents": {"bad": {"kind": "sim", "latency_ms": 0, "fail_rate": 1, "output": nasty}},
            "policy": {"max_step_attempts": 1},
            "steps": [{"key": "s", "title": nasty, "input": {"x": nasty}}],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="gus")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.final_status is not None)
        # the step's detail is read from the store after the run ends: wait for it rather than a fixed pause
        await until(pilot, lambda: "pwned" in screen_as_text(app))
        screen_text = screen_as_text(app)
        assert "[bold red]boom[/] \\x1b[2J\\x1b]0;pwned\\x07" in screen_text  # markup and escapes shown as text
        assert "\x1b" not in screen_text
    assert literal(nasty).plain == "[bold red]boom[/] \\x1b[2J\\x1b]0;pwned\\x07"
    assert clean("ok\ttab\nline") == "ok\ttab\nline"


async def test_attach_acts_on_a_run_driven_by_another_process_through_the_store(db_url):
    from core.cluster.lease import Identity

    driver = await Orchestrator.open(db_url, identity=Identity(host="worker-1"), poll_s=0.05)
    try:
        run_id = await driver.create_run(gated_plan())
        drive = asyncio.create_task(driver.drive(run_id))
        app = LoopdeckApp(db_url, run_id=run_id, user="remote-op")  # attach: this process does not drive
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: dialog_shown(app))
            await pilot.press("a")
            status = await asyncio.wait_for(drive, 10)
            await until(pilot, lambda: app.screen.view is not None and app.screen.view.finished)
        assert status.value == "succeeded"
        assert (await driver.store.get_step(run_id, "publish")).approved_by == "remote-op"
    finally:
        await driver.close()


def wide_plan():
    return validate_plan(
        {
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}, "slow": {"kind": "sim", "latency_ms": 20000}},
            "steps": [
                {"key": "long", "agent": "slow"},
                {"key": "later", "agent": "sim", "depends_on": ["long"]},
                {"key": "quick", "agent": "sim"},
            ],
        }
    )


def tree_keys(app) -> list[str]:
    tree = app.screen.query_one(DagTree)
    return [node.data for node in tree.root.children]


async def test_s_skips_the_highlighted_step_after_confirmation(db_url):
    app = LoopdeckApp(db_url, plan=wide_plan(), drive=True, user="hal")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.view is not None and app.screen.view.steps["quick"].status == "succeeded")
        tree = app.screen.query_one(DagTree)
        await highlight(pilot, tree, tree.node_of("later"))
        await pilot.press("s")
        await until(pilot, lambda: on_top(app, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: app.orch.controller(app.run_id).run.steps["later"].status.value == "skipped")
        row = await step_row(app.orch, app.run_id, "later")
        assert row.status == "skipped" and row.error == "skipped by hal: skipped from the dashboard"
        await until(pilot, lambda: app.screen.view.steps["later"].status == "skipped")
        await pilot.press("s")  # "later" is still highlighted: skipping it again is refused at once, with the reason
        said = 'step "later" is skipped; only a pending or waiting_user step can be skipped'
        await until(pilot, lambda: any(said == str(n.message) for n in app._notifications))
        assert not isinstance(app.screen, ConfirmScreen)
        assert (await step_row(app.orch, app.run_id, "later")).status == "skipped"


async def test_slash_filters_the_tree_and_space_freezes_updates(db_url):
    app = LoopdeckApp(db_url, plan=wide_plan(), drive=True, user="ivy")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.view is not None and app.screen.view.steps["quick"].status == "succeeded")
        await pilot.press("slash")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press(*"succeeded", "enter")
        await until(pilot, lambda: tree_keys(app) == ["quick"])
        await pilot.press("slash")
        await until(pilot, lambda: on_top(app, PromptScreen))
        app.screen.query_one("#prompt-input").value = ""
        await pilot.press("enter")
        await until(pilot, lambda: tree_keys(app) == ["long", "later", "quick"])  # (a chain: one level)
        run_screen = app.screen
        await pilot.press("space")
        await until(pilot, lambda: run_screen.frozen)
        label_before = str(run_screen.query_one(DagTree).root.children[0].label)
        await app.orch.cancel(app.run_id, user="ivy")  # events keep arriving while frozen
        await pilot.pause(0.5)
        assert str(run_screen.query_one(DagTree).root.children[0].label) == label_before  # the screen held still
        assert run_screen.view.status == "canceled"  # ... but nothing was lost
        await pilot.press("space")
        await until(pilot, lambda: "⊘" in str(run_screen.query_one(DagTree).root.children[0].label))


async def test_the_runs_list_opens_a_run_and_esc_returns(db_url):
    async with await Orchestrator.open(db_url) as orch:
        first = await orch.create_run(gated_plan())
        second = await orch.create_run(wide_plan())
    app = LoopdeckApp(db_url, user="jo")
    async with app.run_test(size=SIZE) as pilot:
        from tui.dashboard.screens.run import RunScreen

        await until(pilot, lambda: on_top(app, RunsScreen) and app.screen.query_one("DataTable").row_count == 2)
        table = app.screen.query_one("DataTable")
        assert [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(2)] == [
            second,
            first,
        ]  # newest first
        await pilot.press("enter")
        await until(pilot, lambda: on_top(app, RunScreen))
        assert app.screen.run_id == second
        await pilot.press("escape")
        await until(pilot, lambda: on_top(app, RunsScreen))


async def test_a_run_screen_keeps_what_it_built_out_of_full_collections_and_gives_it_back(db_url, monkeypatch):
    """(tui/dashboard/heap.py) No collection while a run's screen reads and builds (0.4 s of a 20,000-step
    run's opening); what it built is then frozen (the collector's full passes over a 20,000-step tree were
    90-150 ms keypresses that waited); a rebuild collects the previous tree's cycles; a screen that goes leaves
    nothing frozen."""

    class Cycle:
        pass

    collecting: list[bool] = []
    real_snapshot = Orchestrator.snapshot_and_events

    async def snapshot(self, run_id):
        collecting.append(gc.isenabled())
        return await real_snapshot(self, run_id)

    monkeypatch.setattr(Orchestrator, "snapshot_and_events", snapshot)
    gc.unfreeze()  # (whatever an earlier test in this process left)
    async with await Orchestrator.open(db_url) as orch:
        await orch.create_run(gated_plan())
    app = LoopdeckApp(db_url, user="jo")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: on_top(app, RunsScreen) and app.screen.query_one("DataTable").row_count == 1)
            assert gc.get_freeze_count() == 0
            await pilot.press("enter")
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            assert collecting == [False] and gc.isenabled()  # none while it read and built; back after
            assert gc.get_freeze_count() > 0  # what the screen built is frozen
            screen = app.screen
            cycle = Cycle()
            cycle.itself = cycle
            screen.view.held = cycle  # something the old tree holds, in a cycle, frozen with it
            gone = weakref.ref(cycle)
            del cycle
            gc.freeze()
            await screen.reload()  # a replan rebuilds the screen: the old tree is garbage
            assert gone() is None  # and collected, not left frozen
            assert gc.get_freeze_count() > 0
            await pilot.press("escape")
            await until(pilot, lambda: on_top(app, RunsScreen) and gc.get_freeze_count() == 0)  # nothing stays
    finally:
        gc.unfreeze()


@contextlib.asynccontextmanager
async def closed_over_another(db_url) -> AsyncIterator[tuple[LoopdeckApp, Any]]:
    """A run screen opened over another (as a child run is over its parent's) and closed again: the app and
    its pilot, back on the run below; nothing is left frozen after."""
    from tui.dashboard.messages import OpenRun

    gc.unfreeze()
    async with await Orchestrator.open(db_url) as orch:
        below, above = await orch.create_run(gated_plan()), await orch.create_run(wide_plan())
    app = LoopdeckApp(db_url, run_id=below, user="jo")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            app.post_message(OpenRun(above))
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.run_id == above and app.screen.view)
            await pilot.press("escape")  # back to the run below
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.run_id == below)
            yield app, pilot
    finally:
        gc.unfreeze()


async def test_a_run_screen_closed_over_another_is_collected_and_the_one_below_stays_frozen(db_url, monkeypatch):
    from tui.dashboard import heap
    from tui.dashboard.screens import run as run_screen

    settled: list[int] = []
    real_settle = heap.settle

    def settle():
        real_settle()
        settled.append(gc.get_freeze_count())

    monkeypatch.setattr(heap, "settle", settle)
    monkeypatch.setattr(run_screen, "SETTLE_S", 0.1)
    async with closed_over_another(db_url) as (_app, pilot):
        await until(pilot, lambda: settled)
        assert settled[0] > 0 and gc.get_freeze_count() > 0  # collected, and the screen below stays frozen


async def test_events_committed_while_a_run_screen_rebuilds_reach_its_history_and_its_log(db_url):
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(gated_plan())
    app = LoopdeckApp(db_url, run_id=run_id, user="jo")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        screen = app.screen
        for worker in list(app.workers):
            if worker.node is screen and worker.group == "feed":
                worker.cancel()  # the feed does not read them first
        await pilot.pause()
        async with await Orchestrator.open(db_url) as other:
            note = WriteBatch()
            note.event(run_id, "note", None, {"said": "meanwhile"}, time.time())
            (committed,) = await other.store.write(note)
        await screen.reload()  # (a replan: the screen reads the run afresh)
        assert committed in [event.id for event in screen.view.events]  # the events dialog's history
        assert committed in [event.id for event in screen._pending_log]  # the log, at the next refresh


async def test_a_rebuild_from_a_snapshot_older_than_what_the_feed_read_logs_nothing_twice(db_url, monkeypatch):
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(gated_plan())
        stale = await orch.snapshot_and_events(run_id)  # read before the events below: as if as they committed
    app = LoopdeckApp(db_url, run_id=run_id, user="jo")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        screen = app.screen
        async with await Orchestrator.open(db_url) as other:
            note = WriteBatch()
            note.event(run_id, "note", None, {"said": "meanwhile"}, time.time())
            (committed,) = await other.store.write(note)
        await until(pilot, lambda: screen.view.last_event_id == committed)  # the feed read it (and logged it)

        async def snapshot(self, rid):
            return stale

        monkeypatch.setattr(Orchestrator, "snapshot_and_events", snapshot)
        logged = len(screen._pending_log)
        await screen.reload()
        ids = [event.id for event in screen.view.events]
        assert screen.view.last_event_id == committed and ids.count(committed) == 1  # kept once, not lost
        assert len(screen._pending_log) == logged  # and not logged again
        await pilot.pause(0.2)  # (the feed goes on from there: nothing read again)
        assert [event.id for event in screen.view.events].count(committed) == 1


async def test_nothing_stays_frozen_when_a_child_screen_and_then_its_parent_close(db_url, monkeypatch):
    from tui.dashboard.screens import run as run_screen

    monkeypatch.setattr(run_screen, "SETTLE_S", 0.3)
    async with closed_over_another(db_url) as (app, pilot):
        await pilot.press("escape")  # and the parent too, before the child's collection is due
        await until(pilot, lambda: on_top(app, RunsScreen))
        await pilot.pause(0.6)
        assert gc.get_freeze_count() == 0  # the runs list holds no run's tree frozen


async def test_a_rebuild_that_the_screen_going_cancels_leaves_nothing_frozen(db_url, monkeypatch):
    gc.unfreeze()
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(gated_plan())
    app = LoopdeckApp(db_url, run_id=run_id, user="jo")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            screen = app.screen
            real_snapshot = Orchestrator.snapshot_and_events

            async def slow_snapshot(self, rid):
                await asyncio.sleep(0.5)
                return await real_snapshot(self, rid)

            monkeypatch.setattr(Orchestrator, "snapshot_and_events", slow_snapshot)
            screen.run_worker(screen.reload(), group="reload", name="reloading the run")  # (a replan)
            await pilot.pause(0.1)
            await pilot.press("escape")  # the screen goes while the rebuild reads the store
            await until(pilot, lambda: on_top(app, RunsScreen))
            await pilot.pause(0.6)
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_the_timeline_tab_draws_a_row_per_attempt_and_per_model_and_tool_call_in_it(db_url):
    from textual.widgets import TabbedContent

    from tests.fixtures.tools import SKILLS

    reader = {"kind": "sim", "latency_ms": 0, "tools": ["read_file"]}
    plan = validate_plan(
        {
            "skills": SKILLS,
            "agents": {
                "sim": {"kind": "sim", "latency_ms": 0, "fail_times": 1},
                "reader": {**reader, "tool_calls": [{"tool": "read_file", "arguments": {"path": "x"}}]},
            },
            "default_agent": "sim",
            "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}, {"key": "c", "agent": "reader"}],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="kim")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ended_on_its_screen(app))
        app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-timeline"
        await until(pilot, lambda: "a #1" in screen_as_text(app), timeout=5)
        text = screen_as_text(app)
        missing = [label for label in ("a #1", "a #2", "b #1", "b #2", "c #1") if label not in text]
        assert not missing, text[text.find("Timeline") :][:1500]
        rows = text[text.find("c #1") :]
        assert rows.find("└ chat 1") < rows.find("└ read_file") < rows.find("└ chat 2"), rows[:600]


async def test_t_retries_a_failed_step(db_url, tmp_path, monkeypatch):
    (tmp_path / "flaky_once.py").write_text(
        "seen = []\n"
        "def work(input, context, step):\n"
        "    seen.append(1)\n"
        "    if len(seen) == 1:\n"
        "        raise RuntimeError('down')\n"
        "    return 'ok'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = validate_plan(
        {
            "agents": {"py": {"kind": "python", "call": "flaky_once:work"}, "sim": {"kind": "sim", "latency_ms": 0}},
            "policy": {"stop_on_approval_required": False},
            "steps": [
                {"key": "flaky", "agent": "py", "max_attempts": 1},
                {"key": "gate", "agent": "sim", "approval": "required"},
            ],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="lee")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen.view.steps["flaky"].status == "failed")
        tree = app.screen.query_one(DagTree)
        await highlight(pilot, tree, tree.root.children[0])
        await pilot.press("t")
        await until(pilot, lambda: app.screen.view.steps["flaky"].status == "succeeded")
        row = await step_row(app.orch, app.run_id, "flaky")
        assert row.status == "succeeded" and row.attempts == 2


async def test_b_sets_the_budget_and_minus_gives_a_thumbs_down(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("escape")
        await pilot.press("b")
        await until(pilot, lambda: on_top(app, PromptScreen))
        app.screen.query_one("#prompt-input").value = "12,345"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.view is not None and app.screen.view.budget == 12345)
        assert (await app.orch.store.get_run(app.run_id)).token_budget == 12345
        await pilot.press("b")
        await until(pilot, lambda: on_top(app, PromptScreen))
        app.screen.query_one("#prompt-input").value = "$2.50"  # a dollar sign sets the cost budget
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.view is not None and app.screen.view.cost_budget == 2.5)
        assert (await app.orch.store.get_run(app.run_id)).cost_budget_usd == 2.5
        await until(pilot, lambda: "/$2.50" in screen_as_text(app))  # the header, at its next tick
        tree = app.screen.query_one(DagTree)
        await highlight(pilot, tree, tree.root.children[0])  # draft, finished
        await pilot.press("minus")
        await until(pilot, lambda: on_top(app, PromptScreen))
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, PromptScreen))
        for _ in range(100):  # the answer is a worker: wait for its write, not a fixed time
            if feedback := await app.orch.store.feedback_of(app.run_id):
                break
            await pilot.pause(0.05)
        assert [(f.step_key, f.rating) for f in feedback] == [("draft", "down")]


async def test_a_database_error_is_shown_and_the_dashboard_keeps_running(db_url):
    from core import StoreError

    app = LoopdeckApp(db_url, plan=gated_plan(), drive=True, user="ned")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ApprovalScreen))
        run_screen = app.screen
        real = app.orch.store.events_since
        failures = []

        async def broken(*args, **kwargs):
            if len(failures) < 2:
                failures.append(1)
                raise StoreError("database error: disk I/O error")
            return await real(*args, **kwargs)

        app.orch.store.events_since = broken
        await until(pilot, lambda: len(failures) == 2)
        await until(pilot, lambda: any("disk I/O error" in str(n.message) for n in app._notifications))
        await pilot.press("A")
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None)
        await until(pilot, lambda: run_screen.view.finished)  # the feed recovered and saw the end


async def test_the_command_palette_offers_every_action(db_url):
    from tui.dashboard.actions import RUN_ACTIONS

    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(gated_plan())
    app = LoopdeckApp(db_url, run_id=run_id, user="ola")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: on_top(app, CommandPalette))
        await pilot.press(*"budget")
        await until(pilot, lambda: "Set the run's token budget" in screen_as_text(app))
        assert {spec.id for spec in RUN_ACTIONS} >= {
            "approvals",
            "feedback_up",
            "feedback_down",
            "skip",
            "retry",
            "cancel",
            "finish",
            "budget",
            "filter",
            "freeze",
            "help",
            "quit",
        }


async def test_the_context_tab_shows_what_the_step_received_and_q_quits(db_url):
    from textual.widgets import TabbedContent

    plan = validate_plan(
        {
            "agents": {"sim": {"kind": "sim", "latency_ms": 0, "output": "upstream says hi"}},
            "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="pat")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ended_on_its_screen(app))
        tree = app.screen.query_one(DagTree)
        tree.move_cursor(tree.node_of("b"))
        app.screen.query_one("#detail-tabs", TabbedContent).active = "tab-context"
        await until(pilot, lambda: "upstream says hi" in screen_as_text(app))
        await pilot.press("q")
        await pilot.pause(0.3)
    assert app.return_code == 0 or app.return_code is None


async def test_collapsed_branches_cursor_and_scroll_hold_still_while_updates_stream_in(db_url):
    steps = [{"key": "root"}] + [{"key": f"c{i:02d}", "depends_on": ["root"]} for i in range(30)]
    steps += [{"key": f"other{i:02d}"} for i in range(30)]
    plan = validate_plan(
        {"agents": {"sim": {"kind": "sim", "latency_ms": [20, 60]}}, "policy": {"max_concurrency": 3}, "steps": steps}
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="quin")
    async with app.run_test(size=(140, 30)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "view", None) is not None)
        screen = app.screen
        tree = screen.query_one(DagTree)
        await until(pilot, lambda: len(tree.root.children) == 31)
        root_node = tree.root.children[0]
        root_node.collapse()
        await pilot.pause(0.2)
        tree.move_cursor(tree.root.children[10])  # "other09"
        tree.scroll_to(y=3, animate=False)
        await pilot.pause(0.2)
        line, scroll = tree.cursor_line, tree.scroll_y
        before = screen.view.last_event_id
        await until(pilot, lambda: screen.view.last_event_id > before + 40, timeout=20)  # a stream of updates
        await pilot.pause(0.3)
        assert not root_node.is_expanded
        assert tree.cursor_line == line and tree.cursor_node.data == "other09"
        assert tree.scroll_y == scroll
        await until(pilot, lambda: app.final_status is not None, timeout=30)


async def test_a_gate_with_a_deadline_shows_its_time_left_in_the_dialog_and_the_header(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(approval_timeout_s=600), drive=True, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await until(pilot, lambda: "times out in" in screen_as_text(app))
        text = screen_as_text(app)
        assert re.search(r"times out in (10:00|09:5\d) \(at \d\d:\d\d:\d\d UTC\)", text), text
        assert re.search(r"⏱ 09:5\d left", text), text


async def test_the_header_names_the_runs_harness_profile(db_url):
    profile = {"name": "careful", "from": "plan", "policy": {"max_concurrency": 1}, "kept_from_plan": {}, "agents": {}}
    async with await Orchestrator.open(db_url, user="max") as orch:
        run_id = await orch.create_run(gated_plan(), profile=profile)
        app = LoopdeckApp(run_id=run_id, orchestrator=orch, user="max")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "◆ careful" in screen_as_text(app))


async def test_enter_on_a_sub_agent_step_opens_its_child_run_and_esc_comes_back(db_url):
    from tui.dashboard.screens.run import RunScreen

    plan = validate_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "steps": [
                {"key": "prep"},
                {"key": "research", "type": "sub_agent", "depends_on": ["prep"], "steps": [{"key": "dig"}]},
            ],
        }
    )
    async with await Orchestrator.open(db_url, user="max") as orch:
        parent = await orch.create_run(plan)
        await orch.drive(parent)
        (child,) = await orch.children(parent)
        app = LoopdeckApp(run_id=parent, orchestrator=orch, user="max")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            tree = app.screen.query_one(DagTree)
            assert tree.highlighted_key == "prep"
            await pilot.press("enter")  # the tree's own enter (it folds prep's dependents), no navigation
            await pilot.pause(0.2)
            assert app.screen.run_id == parent
            await pilot.press("enter", "down")
            await until(pilot, lambda: tree.highlighted_key == "research")
            await pilot.press("enter")
            await until(pilot, lambda: app.screen.run_id == child["id"])
            await until(pilot, lambda: f"↳ child of {parent} (step research)" in screen_as_text(app))
            await pilot.press("escape")
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.run_id == parent)


async def test_a_child_runs_gate_queues_in_the_parents_approval_dialog_and_is_answered_there(db_url):
    plan = gated_child_plan()
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        child = app.screen.current.split("/")[0]
        assert app.screen.current == f"{child}/publish"
        await until(pilot, lambda: f"Approve step publish of child run {child}?" in screen_as_text(app))
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None, timeout=15)
        assert app.final_status.value == "succeeded"
        row = await step_row(app.orch, child, "publish")
        assert row.status.value == "succeeded" and row.approved_by == "max"


async def test_a_child_runs_tool_call_queues_in_the_parents_dialog_and_runs_when_approved(db_url):
    plan = cleaning_plan([{"key": "tidy", "type": "sub_agent", "steps": [{"key": "clean", "agent": "cleaner"}]}])
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        child = app.screen.current.removeprefix("call:").split("/")[0]
        assert app.screen.current == f"call:{child}/clean.1.1.0"
        shown = f"Run tool delete_file of child run {child}?"
        await until(pilot, lambda: shown in (text := screen_as_text(app)) and "on cleaner" in text)
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None, timeout=15)
        assert app.final_status.value == "succeeded"
        (call,) = await app.orch.tool_calls(child)
        assert call.status.value == "succeeded" and call.decided_by == "max"


async def test_a_childs_gate_that_opens_while_the_dialog_is_open_joins_the_queue_and_is_answered(db_url):
    """The parent's tool call waits first; the child's gate joins the open dialog's queue later."""
    plan = cleaning_plan(
        [
            {"key": "clean", "agent": "cleaner"},
            {
                "key": "research",
                "type": "sub_agent",
                "steps": [
                    {"key": "dig", "agent": "slow"},
                    {"key": "publish", "agent": "sim", "depends_on": ["dig"], "approval": "required"},
                ],
                "agents": {"slow": {"kind": "sim", "latency_ms": 800}, "sim": {"kind": "sim", "latency_ms": 0}},
            },
        ]
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        assert app.screen.current == "call:clean.1.1.0"
        await until(pilot, lambda: len(app.screen.queue) == 2, timeout=15)  # the child's gate joined
        await pilot.press("a")  # the call
        await until(pilot, lambda: app.screen.current.endswith("/publish"))
        await pilot.press("a")  # the child's step: shown and answered from the same dialog
        await until(pilot, lambda: app.final_status is not None, timeout=15)
        assert app.final_status.value == "succeeded"


async def test_a_replanned_run_is_read_once_when_its_screen_opens_not_at_every_refresh(db_url, monkeypatch):
    """A snapshot replays the run's events, its replans too: the view built from it once took that for a
    replan still to read, and the screen read the whole run again at every refresh, forever."""
    from tests.core.helpers import start, wait_event

    async with await Orchestrator.open(db_url, user="max") as orch:
        gated = validate_plan({"steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"], "approval": "required"}]})
        run_id, task = await start(orch, gated)
        await wait_event(orch, run_id, "step_waiting", "b")
        await orch.replan(run_id, [{"key": "c", "depends_on": ["b"]}], mode="append", user="max")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    reloads: list[str] = []
    real_reload = RunScreen.reload

    async def reload(self):
        reloads.append(self.run_id)
        await real_reload(self)

    monkeypatch.setattr(RunScreen, "reload", reload)
    app = LoopdeckApp(db_url, run_id=run_id, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: run_screen(app) is not None and run_screen(app).view is not None)
        screen = run_screen(app)  # (its gate's dialog opens over it at once)
        await pilot.pause(1.0)  # ten refreshes and more
        assert reloads == [run_id] and "c" in screen.view.steps


async def test_a_child_runs_view_is_kept_and_fed_its_new_events_and_read_whole_after_a_replan(db_url):
    """The parent's screen looks at its child runs each second: it reads a child whole once, then only its
    events since (a whole snapshot each second cost a big child a third of a second a second)."""
    from types import SimpleNamespace

    from tests.core.helpers import start, wait_event
    from tui.dashboard.screens.run_gates import GatesMixin

    async with await Orchestrator.open(db_url, user="max") as orch:
        gated = validate_plan({"steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"], "approval": "required"}]})
        child, task = await start(orch, gated)  # (any run: a child run is one)
        await wait_event(orch, child, "step_waiting", "b")
        screen = SimpleNamespace(ctx=SimpleNamespace(orch=orch), child_views={})
        seen = screen.child_views[child] = await GatesMixin._child_view(screen, child)
        assert seen.steps["b"].status == "waiting_user"
        await orch.replan(child, [{"key": "c", "depends_on": ["b"]}], mode="append", user="max")
        assert await GatesMixin._child_view(screen, child) is seen and "c" in seen.steps  # fed its events
        assert seen.structure_changed
        again = screen.child_views[child] = await GatesMixin._child_view(screen, child)
        assert again is not seen and again.steps["c"].depends_on == ["b"]  # read whole: the new step's plan
        await orch.approve(child, "b", user="max")
        await asyncio.wait_for(task, 10)
        assert await GatesMixin._child_view(screen, child) is again
        assert again.steps["c"].status == "succeeded" and not again.waiting


async def test_a_child_run_opened_over_its_parent_keeps_its_own_dialog(db_url):
    """The parent's screen, below, must not reach into the child's approval dialog (it once emptied it)."""
    from tui.dashboard.screens.run import RunScreen

    plan = gated_child_plan()
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        child = app.screen.current.split("/")[0]
        await pilot.press("escape")  # deferred in the parent
        await until(pilot, lambda: on_top(app, RunScreen))
        await pilot.press("enter")  # research: its child run
        await until(pilot, lambda: dialog_shown(app) and app.screen.current == "publish")
        await pilot.pause(1.5)  # the parent's ticks and child polls run meanwhile
        assert isinstance(app.screen, ApprovalScreen) and app.screen.queue == ["publish"]
        assert app.screen.run_id == child
        await pilot.press("a")
        await until(pilot, lambda: app.final_status is not None, timeout=15)
        assert app.final_status.value == "succeeded"


def cleaning_plan(steps: list) -> object:
    """Steps on a zero-latency sim, and a "cleaner" agent whose one tool call (delete_file) asks an operator."""
    from tests.fixtures.tools import SKILLS

    return validate_plan(
        {
            "goal": "parent",
            "skills": SKILLS,
            "agents": {
                "sim": {"kind": "sim", "latency_ms": 0},
                "cleaner": {
                    "kind": "sim",
                    "latency_ms": 0,
                    "tools": ["delete_file"],
                    "tool_calls": [{"tool": "delete_file", "arguments": {"path": "old.txt"}}],
                },
            },
            "default_agent": "sim",
            "steps": steps,
        }
    )


def gated_child_plan() -> object:
    """One sub_agent step whose child run holds a gate ("publish")."""
    return validate_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "steps": [
                {
                    "key": "research",
                    "type": "sub_agent",
                    "steps": [{"key": "dig"}, {"key": "publish", "depends_on": ["dig"], "approval": "required"}],
                }
            ],
        }
    )


async def test_an_idle_run_screen_reads_and_redraws_less_often_and_still_shows_a_new_event(db_url, monkeypatch):
    """The feed's poll, the net under a lost wake, backs off from 50 ms to 0.5 s while nothing comes
    (``next_poll``), and with no step running the steady refresh is once a second, not ten times: both were
    most of an idle dashboard's CPU, one process per browser tab."""
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(validate_plan({"steps": [{"key": "a"}]}))
        await orch.drive(run_id)
    reads = counted(monkeypatch, Orchestrator, "events_since")
    renders = counted(monkeypatch, RunScreen, "render_view")
    app = LoopdeckApp(db_url, run_id=run_id, user="jo")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        screen = app.screen
        await pilot.pause(1.0)
        start, drawn = len(reads), len(renders)
        await pilot.pause(1.5)
        assert len(reads) - start <= 5  # (at 50 ms: some 30)
        assert len(renders) - drawn <= 3  # (ten a second: some 15)
        async with await Orchestrator.open(db_url) as other:  # (no wake: another process's commit would send one)
            note = WriteBatch()
            note.event(run_id, "note", None, {"said": "later"}, time.time())
            (committed,) = await other.store.write(note)
        log = screen.query_one(EventLog)
        await until(pilot, lambda: screen.view.last_event_id == committed and "later" in log.lines[-1].plain)


async def test_the_runs_list_draws_its_keys_again_only_when_which_apply_changes(db_url, monkeypatch):
    """Its reload each second recomposed the footer every time, nine tenths of an idle runs list's CPU; now only
    a change of what the highlighted run allows (here: it is canceled, so `x` no longer applies) redraws it."""
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(gated_plan())
    refreshed = counted(monkeypatch, RunsScreen, "refresh_bindings")
    app = LoopdeckApp(db_url, user="jo")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunsScreen) and app.screen.highlighted is not None)
        await pilot.pause(1.2)
        before = len(refreshed)
        await pilot.pause(2.5)  # (two or three reloads)
        assert len(refreshed) == before
        async with await Orchestrator.open(db_url) as other:
            await other.cancel(run_id, user="ops")
        await until(pilot, lambda: len(refreshed) > before)
        assert app.screen.check_action("cancel_run", ()) is False
