"""The dashboard tells the operator what is going on: orphaned runs, holds, context, budgets, the runs list,
deep plans, the event log, the palette and read-only mode (pilot tests, checked against the store)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
from collections.abc import AsyncIterator

import pytest
from rich.text import Text
from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import OptionList

from core import Orchestrator, Plan, validate_plan
from tests.conftest import drive_until
from tests.e2e.conftest import Cli
from tests.tui.test_dashboard import SIZE, dialog_shown, ended_on_its_screen, gated_plan, on_top, screen_as_text, until
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.dialogs.events import EventsScreen
from tui.dashboard.dialogs.help import HelpScreen
from tui.dashboard.dialogs.prompts import ConfirmScreen, PromptScreen
from tui.dashboard.messages import DriveRun
from tui.dashboard.screens import run as run_screen
from tui.dashboard.screens.run import RunScreen
from tui.dashboard.screens.runs import RunsScreen
from tui.dashboard.viewmodel import RunView, StepView
from tui.dashboard.widgets.dag_tree import DagTree
from tui.dashboard.widgets.event_log import EventLog
from tui.dashboard.widgets.header_bar import HeaderBar, fit, header_parts

pytestmark = pytest.mark.usefixtures("quick_keys")  # (tests/tui/conftest.py)

SMALL = (80, 24)


def told(app, text: str) -> bool:
    return any(text in str(n.message) for n in app._notifications)


def two_gates(**policy):
    """Two gated steps after one: approving one while the other waits."""
    return validate_plan(
        {
            "goal": "two gates",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0, "seed": 1}},
            "policy": policy,
            "steps": [
                {"key": "prep"},
                {"key": "left", "approval": "required", "depends_on": ["prep"]},
                {"key": "right", "approval": "required", "depends_on": ["prep"]},
            ],
        }
    )


# -- a run nobody drives ----------------------------------------------------------------------------


async def test_a_run_whose_driver_was_killed_says_so_stops_its_timers_and_r_drives_it_here(tmp_path):
    cli = Cli(tmp_path)
    plan = cli.write_plan(
        {
            "goal": "orphan",
            "agents": {"slow": {"kind": "sim", "latency_ms": 1500, "seed": 1}},
            "steps": [{"key": "only", "agent": "slow"}],
        }
    )
    proc = cli.spawn("run", str(plan), "--headless")
    rows = cli.wait_until("SELECT run_id FROM steps WHERE status = 'running'", bool)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = rows[0][0]
    app = LoopdeckApp(f"sqlite+aiosqlite:///{cli.db}", run_id=run_id, user="una")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "⚠ driver gone" in screen_as_text(app))
        assert f"pid {proc.pid}" in app.screen.view.driver_gone and "has exited" in app.screen.view.driver_gone
        tree = app.screen.query_one(DagTree)
        first = str(tree.root.children[0].label)
        await pilot.pause(1.3)
        assert str(tree.root.children[0].label) == first  # nobody runs it: its timer does not tick
        assert "R Resume" in screen_as_text(app).splitlines()[-1]  # the footer offers it
        await pilot.press("escape")  # the runs list says it too, and R there drives it here
        await until(pilot, lambda: on_top(app, RunsScreen) and "running ⚠ driver gone" in screen_as_text(app))
        await pilot.press("R")
        await until(pilot, lambda: on_top(app, RunScreen))
        app.post_message(DriveRun(run_id))  # a second R before the first took the lease: still one driver
        await until(pilot, lambda: told(app, f"run {run_id} is driven by this dashboard already"))
        await until(pilot, lambda: app.screen.view.status == "succeeded", timeout=20)
        assert told(app, f"run {run_id} is driven by this dashboard now")
        assert app.screen.view.steps["only"].attempts == 2  # the interrupted attempt counted, one more run


async def test_a_run_whose_stored_plan_is_damaged_opens_with_its_steps(db_url):
    from sqlalchemy import text

    async with await Orchestrator.open(db_url, user="max") as orch:
        run_id = await orch.create_run(gated_plan())
        async with orch.store.engine.begin() as conn:  # (a hand-edited or damaged database)
            stmt = text("UPDATE run_plans SET plan_json = :plan WHERE run_id = :id")
            await conn.execute(stmt, {"plan": '{"policy": 3, "steps": [7, {"key": 1}]}', "id": run_id})
    app = LoopdeckApp(db_url, run_id=run_id, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        assert list(app.screen.view.steps) == ["draft", "publish"]
        await until(pilot, lambda: "publish" in screen_as_text(app))


async def test_a_damaged_plan_awaiting_review_is_said_once_with_what_to_do(db_url):
    from sqlalchemy import text

    async with await Orchestrator.open(db_url, user="max") as orch:
        run_id = await orch.create_run(gated_plan(plan_approval="required"))
        async with orch.store.engine.begin() as conn:  # (a hand-edited or damaged database)
            stmt = text("UPDATE run_plans SET plan_json = :plan WHERE run_id = :id")
            await conn.execute(stmt, {"plan": '{"steps": 5}', "id": run_id})
    app = LoopdeckApp(db_url, run_id=run_id, user="max")

    def said() -> list[str]:
        return [str(n.message) for n in app._notifications if "cannot review the plan" in str(n.message)]

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: said())
        await pilot.pause(1.5)  # (the steady refresh would have opened it again, and failed, every second)
        assert len(said()) == 1 and f"`loopdeck cancel {run_id}` ends the run" in said()[0]
        assert on_top(app, RunScreen)


async def test_the_runs_list_marks_orphaned_and_waiting_runs_and_filters_them(db_url):
    async with await Orchestrator.open(db_url, user="vic") as orch:
        orphan = await orch.create_run(gated_plan())  # created, never driven: no process holds it
        waiting = await orch.create_run(gated_plan())
        await drive_until(orch, waiting)
        app = LoopdeckApp(orchestrator=orch, user="vic")
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: on_top(app, RunsScreen) and len(app.screen._rows) == 2)
            text = screen_as_text(app)
            assert waiting in text and orphan in text  # the id is on screen at 80 columns
            assert "waiting_user: publish" in text and "⚠ no driver" in text
            await pilot.press("slash")
            await until(pilot, lambda: on_top(app, PromptScreen))
            await pilot.press(*"waiting", "enter")
            await until(pilot, lambda: list(app.screen._rows) == [waiting])
            assert orphan not in screen_as_text(app)


async def test_the_runs_list_cancels_the_highlighted_run_with_a_reason(db_url):
    async with await Orchestrator.open(db_url, user="wyn") as orch:
        run_id = await orch.create_run(gated_plan())
        app = LoopdeckApp(orchestrator=orch, user="wyn")
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: on_top(app, RunsScreen) and app.screen.highlighted is not None)
            await pilot.press("x")
            await until(pilot, lambda: on_top(app, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: on_top(app, PromptScreen))
            await pilot.press(*"wrong goal", "enter")
            await until(pilot, lambda: told(app, f"run {run_id} canceled"))
            run = await orch.store.get_run(run_id)
            assert run.status.value == "canceled" and "wrong goal" in (run.reason or "")


async def test_the_runs_list_opens_the_highlighted_run_at_its_approvals_and_esc_comes_back(db_url):
    async with await Orchestrator.open(db_url, user="xia") as orch:
        run_id = await orch.create_run(gated_plan())
        await drive_until(orch, run_id)
        app = LoopdeckApp(orchestrator=orch, user="xia")
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: on_top(app, RunsScreen) and app.screen.highlighted is not None)
            await pilot.press("A")
            await until(pilot, lambda: dialog_shown(app))
            await pilot.press("escape")  # defer
            await until(pilot, lambda: on_top(app, RunScreen))
            await pilot.press("escape")
            await until(pilot, lambda: on_top(app, RunsScreen))


# -- holds, context, approve all, budgets -------------------------------------------------------------


async def test_an_approved_step_held_by_another_gate_says_so_in_the_toast_and_its_row(db_url):
    app = LoopdeckApp(db_url, plan=two_gates(stop_on_approval_required=True), drive=True, user="yul")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_shown(app) and len(app.screen.queue) == 2)
        first, other = app.screen.queue
        await pilot.press("a")
        await until(pilot, lambda: told(app, f"{first} approved by yul; it starts once {other} is answered too"))
        await pilot.press("escape")  # defer the other
        await until(pilot, lambda: on_top(app, RunScreen))
        tree = app.screen.query_one(DagTree)
        await until(
            pilot, lambda: f"⏳ waits for {other} (stop_on_approval_required)" in str(tree.node_of(first).label)
        )


async def test_the_approval_dialog_shows_the_context_and_a_approves_the_whole_queue(db_url):
    app = LoopdeckApp(db_url, plan=two_gates(), drive=True, user="zed")
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: dialog_shown(app) and len(app.screen.queue) == 2)
        dialog = app.screen
        await pilot.press("c")  # what it depends on: prep's output
        await until(pilot, lambda: "prep · reasoning" in screen_as_text(app))
        assert "context: what it depends on" in screen_as_text(app)
        await pilot.press("A")
        await until(pilot, lambda: on_top(app, ConfirmScreen))
        await until(pilot, lambda: "Approve all 2 waiting: 2 steps?" in screen_as_text(app))
        await pilot.press("y")
        await until(pilot, lambda: app.final_status is not None and not dialog.is_attached)
        assert app.final_status.value == "succeeded"
        for key in ("left", "right"):
            row = await app.orch.store.get_step(app.run_id, key)
            assert row.approved_by == "zed" and row.status == "succeeded"


async def test_a_budget_below_what_was_used_asks_first_and_a_bad_value_is_refused_in_place(db_url):
    plan = validate_plan(
        {
            "goal": "spend",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [100, 50]}},
            "policy": {"token_budget": 100_000},
            "steps": [{"key": "draft"}, {"key": "publish", "approval": "required", "depends_on": ["draft"]}],
        }
    )
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="amy")
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("escape")
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view.tokens > 0)
        used = app.screen.view.tokens
        await pilot.press("b")
        await until(pilot, lambda: on_top(app, PromptScreen))
        prompt = app.screen
        prompt.query_one("#prompt-input").value = "lots"
        await pilot.press("enter")
        await until(pilot, lambda: "token budget" in str(prompt.query_one("#prompt-error").render()))
        assert app.screen is prompt
        prompt.query_one("#prompt-input").value = "1"
        await pilot.press("enter")
        await until(pilot, lambda: on_top(app, ConfirmScreen))
        said = screen_as_text(app)
        assert f"has used {used:,} tokens" in said and "the run fails" in said
        await pilot.press("n")  # not set
        await pilot.pause(0.3)
        assert (await app.orch.store.get_run(app.run_id)).token_budget == 100_000


# -- deep plans, the event log ------------------------------------------------------------------------


def chain(n: int):
    steps = [{"key": f"s{i:02d}", **({"depends_on": [f"s{i - 1:02d}"]} if i else {})} for i in range(n)]
    agents = {"sim": {"kind": "sim", "latency_ms": 30}}  # slow enough for the screen to see each one run
    return validate_plan({"goal": "chain", "agents": agents, "steps": steps})


async def test_a_60_step_chain_is_a_readable_column_and_f_follows_the_active_step(db_url):
    async with await Orchestrator.open(db_url, user="bo") as orch:
        run_id = await orch.create_run(chain(60))
        app = LoopdeckApp(run_id=run_id, orchestrator=orch, user="bo")
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            tree = app.screen.query_one(DagTree)
            assert len(tree.root.children) == 60  # one level: a straight chain does not indent
            await pilot.press("F")
            driving = asyncio.create_task(orch.drive(run_id))
            await until(pilot, lambda: tree.highlighted_key not in (None, "s00"), timeout=20)
            await driving
            await until(pilot, lambda: app.screen.view.status == "succeeded")


async def test_the_event_log_clips_long_lines_follows_with_end_and_l_opens_an_event_in_full(db_url):
    steps = [{"key": f"warm{i}"} for i in range(6)]
    steps.append({"key": "publish", "approval": "required", "depends_on": [s["key"] for s in steps]})
    plan = validate_plan({"goal": "log", "agents": {"sim": {"kind": "sim", "latency_ms": 0}}, "steps": steps})
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="cy")
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: dialog_shown(app))
        await pilot.press("escape")
        await until(pilot, lambda: on_top(app, RunScreen))
        log = app.screen.query_one(EventLog)
        assert log.max_scroll_x == 0 and not log.show_horizontal_scrollbar  # no sideways scrolling
        width = log.scrollable_content_region.width
        drawn = [log.render_line(y) for y in range(log.scrollable_content_region.height)]
        assert any(line.cell_length == width and line.text.endswith("…") for line in drawn)  # clipped, marked
        log.scroll_home(animate=False)
        await until(pilot, lambda: "not following (end follows)" in screen_as_text(app))
        assert app.screen.query_one(DagTree).has_focus
        await pilot.press("end")  # from the tree: the log follows again
        await until(pilot, lambda: log.following and "not following" not in screen_as_text(app))
        await pilot.press("l")
        await until(pilot, lambda: on_top(app, EventsScreen))
        options = app.screen.query_one(OptionList)
        assert options.highlighted == options.option_count - 1  # the newest
        await until(pilot, lambda: '"status": "waiting_user"' in screen_as_text(app))  # run_waiting, in full


async def test_new_events_are_shown_without_waiting_for_the_steady_refresh(db_url, monkeypatch):
    monkeypatch.setattr(run_screen, "REFRESH_S", 60.0)  # the tick alone would show nothing for a minute
    async with await Orchestrator.open(db_url, user="ed") as orch:
        run_id = await orch.create_run(two_gates())
    app = LoopdeckApp(db_url, run_id=run_id, user="ed")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        screen = app.screen
        log = screen.query_one(EventLog)
        shown = len(log.lines)
        async with await Orchestrator.open(db_url, user="ed") as other:  # another process drives it
            await drive_until(other, run_id)
        await until(pilot, lambda: screen.view.status == "waiting_user" and len(log.lines) > shown, timeout=5)
        assert any("waiting" in line.plain for line in log.lines[shown:])  # the events reached the screen


async def test_a_refresh_that_falls_due_while_the_screen_is_taken_down_does_nothing(db_url):
    """Seen in CI: the app exited while events streamed, and the refresh they asked for fired after the
    screen's widgets had gone (``NoMatches`` on the header)."""
    app = LoopdeckApp(db_url, plan=gated_plan(), user="ed")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        screen = app.screen
        await screen.query_one(HeaderBar).remove()  # taken down widget by widget
        screen._render_now()  # the refresh that was due
        await pilot.pause(3 * run_screen.REFRESH_S)  # and the steady tick's
        assert app._exception is None


# -- help, palette, read-only, the header and footer at 80x24 ---------------------------------------------


async def test_help_lists_the_navigation_keys(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), user="di")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen))
        await pilot.press("question_mark")
        await until(pilot, lambda: on_top(app, HelpScreen))
        app.screen.query_one(VerticalScroll).scroll_end(animate=False)
        wanted = ("tab  shift+tab", "moving around", "approve every gate")
        await until(pilot, lambda: all(words in screen_as_text(app) for words in wanted))


async def _palette_names(app, pilot) -> list[str]:
    from textual.command import CommandPalette

    await pilot.press("ctrl+p")
    await until(pilot, lambda: on_top(app, CommandPalette))
    await pilot.pause(0.5)
    names = [str(option.prompt).split("\n")[0] for option in app.screen.query_one(OptionList)._options]
    await pilot.press("escape")
    return names


async def test_the_palette_offers_only_what_the_screen_can_do(db_url):
    async with await Orchestrator.open(db_url, user="el") as orch:
        await orch.create_run(gated_plan())
        app = LoopdeckApp(orchestrator=orch, user="el", read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: on_top(app, RunsScreen) and app.screen.highlighted is not None)
            names = await _palette_names(app, pilot)
            assert "Filter" in names and "Freeze" not in names and "Events in full" not in names  # not the run's
            assert sum(1 for n in names if "Quit" in n) == 1
            await pilot.press("enter")
            await until(pilot, lambda: on_top(app, RunScreen))
            names = await _palette_names(app, pilot)
            assert "Freeze" in names and "Events in full" in names  # the reading actions
            assert not {"Budget", "Skip", "Retry", "Cancel", "Finish", "Thumbs up"} & set(names)  # read-only


async def test_read_only_can_reopen_a_view_only_dialog_and_is_not_invited_to_write(db_url):
    async with await Orchestrator.open(db_url, user="fi") as orch:
        run_id = await orch.create_run(gated_plan())
        await drive_until(orch, run_id)
        app = LoopdeckApp(run_id=run_id, orchestrator=orch, user="fi", read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: dialog_shown(app))
            await until(pilot, lambda: "read-only" in screen_as_text(app))  # (pushed, then drawn)
            await pilot.press("a")  # refused: nothing approved
            await pilot.press("escape")
            await until(pilot, lambda: on_top(app, RunScreen))
            assert "R drives" not in screen_as_text(app) and "b Budget" not in screen_as_text(app)
            await pilot.press("A")
            await until(pilot, lambda: dialog_shown(app))
            assert (await orch.store.get_step(run_id, "publish")).status.value == "waiting_user"


async def test_a_dialog_whose_gates_are_answered_before_it_shows_closes_quietly(db_url):
    async with await Orchestrator.open(db_url, user="hu") as orch:
        run_id = await orch.create_run(gated_plan())
        await drive_until(orch, run_id)
        app = LoopdeckApp(run_id=run_id, orchestrator=orch, user="hu")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: dialog_shown(app))
            await pilot.press("escape")  # deferred: the run screen is on top again
            await until(pilot, lambda: on_top(app, RunScreen))
            screen = app.screen
            late = screen._approval_screen(screen.view, ["publish"])
            app.push_screen(late)
            late.drop(["publish"])  # answered elsewhere before the dialog was mounted
            await until(pilot, lambda: app.screen is screen)
            await pilot.pause(0.2)
            assert app._exception is None and app.is_running


async def test_at_80x24_the_footer_keeps_help_and_quit(db_url):
    app = LoopdeckApp(db_url, plan=gated_plan(), user="gus")
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        footer = screen_as_text(app).splitlines()[-1]
        assert "? Help" in footer and "q Quit" in footer


def test_a_narrow_header_keeps_what_needs_the_operator_and_drops_detail_first():
    view = RunView(run_id="r", status="waiting_user", max_concurrency=4, profile="careful", parent="p (step s)")
    view.steps = {"a": StepView(key="a", agent="x", status="waiting_user"), "b": StepView(key="b", agent="y")}
    view.waiting = ["a"]
    view.breakers = {"x": "open", "y": "closed"}
    wide = fit(header_parts(view, 0.0, False, False), 200).plain
    assert "◆ careful" in wide and "y:closed" in wide and "slots 0/4" in wide
    narrow = fit(header_parts(view, 0.0, False, False), 60).plain
    assert "⏸ 1 awaiting approval (A)" in narrow and "x:open" in narrow  # what needs the operator stays
    assert "◆ careful" not in narrow and "y:closed" not in narrow  # detail goes first
    assert len(narrow) <= 60


def test_a_step_held_by_an_open_breaker_says_which_and_when_its_probe_is_due_in_its_row_and_headless():
    from rich.console import Console

    from core import Event
    from tui.cli.progress import Progress
    from tui.dashboard.widgets.dag_tree import label

    reason = 'breaker of "scraper" is open (3 consecutive failures); its probe is due at 14:03:10 UTC (in 25s)'
    held = Event(7, "r", "step_held", "fetch", {"by": "breaker", "agent": "scraper", "reason": reason}, 1.0)
    view = RunView(run_id="r", status="running")
    view.steps = {"fetch": StepView(key="fetch", agent="scraper")}
    view.apply(held)
    assert f"⏳ {reason}" in str(label(view, view.steps["fetch"], 2.0))
    snapshot = {"run": {"id": "r", "status": "running", "tokens": {"total": 0}, "token_budget": None}, "steps": []}
    progress = Progress(Console(file=io.StringIO()), "r", snapshot)
    assert f"step fetch waits: {reason}" in progress._describe(held).plain


async def test_an_orphaned_run_canceled_on_its_screen_is_no_longer_said_to_need_a_driver(db_url):
    async with await Orchestrator.open(db_url, user="hu") as orch:
        run_id = await orch.create_run(gated_plan())  # never driven
        app = LoopdeckApp(run_id=run_id, orchestrator=orch, user="hu")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "⚠ no driver (R drives it here)" in screen_as_text(app))
            await pilot.press("x")
            await until(pilot, lambda: on_top(app, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: on_top(app, PromptScreen))
            await pilot.press("enter")
            await until(pilot, lambda: app.screen.view.status == "canceled")
            await until(pilot, lambda: "no driver" not in screen_as_text(app).splitlines()[0])
            await until(pilot, lambda: "R Resume" not in screen_as_text(app))  # the footer, at its next refresh


async def test_steps_that_changed_out_of_view_are_relabelled_when_they_scroll_into_view(db_url):
    steps = [{"key": f"w{i:03d}"} for i in range(80)]
    plan = validate_plan({"goal": "wide", "agents": {"sim": {"kind": "sim", "latency_ms": 0}}, "steps": steps})
    app = LoopdeckApp(db_url, plan=plan, drive=True, user="ida")
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: ended_on_its_screen(app))
        tree = app.screen.query_one(DagTree)
        last = tree.node_of("w079")
        assert "w079" not in tree.visible_keys()
        await pilot.pause(0.3)
        tree.scroll_end(animate=False)
        await until(pilot, lambda: "w079" in tree.visible_keys())
        await until(pilot, lambda: str(last.label).startswith("● w079"))  # drawn as it is now: succeeded


def branching(n: int):
    """Branches (so nodes fold), joins, and two agents (labels of several widths)."""
    steps = [{"key": "root"}]
    for i in range(n):
        steps.append({"key": f"b{i:02d}", "depends_on": ["root"], "agent": "wide" if i % 3 else "sim"})
        steps.append({"key": f"c{i:02d}", "depends_on": [f"b{i:02d}", "root"]})
    agents = {"sim": {"kind": "sim", "latency_ms": 0}, "wide": {"kind": "sim", "latency_ms": 0}}
    return validate_plan({"goal": "branching", "agents": agents, "default_agent": "sim", "steps": steps})


@contextlib.asynccontextmanager
async def shown_tree(db_url: str, plan: Plan) -> AsyncIterator[tuple[LoopdeckApp, Pilot[object], DagTree]]:
    """A new run of ``plan`` on its screen (80×24): the app, its pilot and the run's tree."""
    async with await Orchestrator.open(db_url, user="bo") as orch:
        run_id = await orch.create_run(plan)
        app = LoopdeckApp(run_id=run_id, orchestrator=orch, user="bo")
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
            yield app, pilot, app.screen.query_one(DagTree)


async def test_a_focus_change_or_a_resize_redraws_the_tree_without_building_its_lines_again(db_url):
    """Textual's Tree builds every line again at each focus change and resize (a 20,000-step tree: 40–100 ms
    each); DagTree redraws its lines with the new style or size and keeps them."""
    async with shown_tree(db_url, branching(12)) as (app, pilot, tree):
        await pilot.pause()
        lines = list(tree._tree_lines)
        builds: list[int] = []
        build = tree._build
        tree._build = lambda: (builds.append(1), build())[-1]  # type: ignore[method-assign]
        y = tree.cursor_line - tree.scroll_offset.y
        focused = tree.render_line(y)
        app.screen.set_focus(None)  # the cursor's line loses its focused style
        await pilot.pause()
        assert not tree.has_focus and tree.render_line(y) != focused
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        unfocused = tree.render_line(y)
        assert unfocused.cell_length == tree.size.width > focused.cell_length  # drawn at the new width
        app.theme = "gruvbox" if app.theme != "gruvbox" else "nord"  # other colours, both dark: the same state
        await pilot.pause()
        assert tree.render_line(y) != unfocused
        assert builds == [] and tree._tree_lines == lines  # the same lines, never built again
        tree.node_of("root").collapse()  # a fold still builds them again
        await pilot.pause()
        assert builds and len(tree._tree_lines) < len(lines)


async def test_the_tree_measures_its_lines_as_textual_would_and_still_refolds_after_a_build(db_url):
    """DagTree's quick label width and single-line labels (tree-building speed) change nothing Textual shows."""
    from textual.widgets import Tree

    async with shown_tree(db_url, branching(12)) as (_app, pilot, tree):
        root = tree.node_of("root")
        branch = tree.node_of("b01")
        branch.collapse()  # a folded branch shows another icon, of its own width
        nodes = [root, branch, tree.node_of("b00"), tree.node_of("c05"), *root.children]
        assert {tree.get_label_width(n) for n in nodes} != {nodes[0].label.cell_len}  # (widths vary)
        assert [tree.get_label_width(n) for n in nodes] == [Tree.get_label_width(tree, n) for n in nodes]
        assert tree.process_label(Text("one\ntwo")).plain == "one"  # a label of lines: its first, as Textual
        lines = len(tree._tree_lines)
        root.collapse()  # after a build, folding invalidates the tree's lines again
        await pilot.pause()
        assert len(tree._tree_lines) < lines


class _Rows(list):
    """A long list that counts how many of its items were read."""

    def __init__(self, n: int) -> None:
        super().__init__([0])  # (not empty: its items come from __iter__)
        self.n, self.read = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.read += 1
            yield {"i": i, "name": f"row {i}"}


def test_a_huge_value_is_drawn_cut_with_a_note_and_encoded_only_as_far_as_it_is_drawn():
    from tui.dashboard.widgets.step_detail import CUT_NOTE, SHOWN_CHARS, as_json, shown

    rows = _Rows(200_000)
    text = as_json({"rows": rows}).plain
    assert text.endswith(CUT_NOTE.format(SHOWN_CHARS)) and len(text) <= SHOWN_CHARS + len(CUT_NOTE) + 10
    assert text.startswith('{\n  "rows": [\n    {\n      "i": 0,') and rows.read < 2_000  # (not 200,000)
    assert as_json({"small": [1, 2]}).plain == '{\n  "small": [\n    1,\n    2\n  ]\n}'  # whole, no note
    long = "x" * (SHOWN_CHARS + 5) + "END"
    assert shown(long).plain.endswith(CUT_NOTE.format(SHOWN_CHARS)) and "END" not in shown(long).plain
    assert shown(long, tail=True).plain.endswith("xxEND")  # a stream shows its newest text
    assert shown("\x1b[31m[b]red[/b]").plain == "\\x1b[31m[b]red[/b]"  # (still literal: no escape, no markup)


async def test_a_step_with_a_megabytes_output_shows_it_cut_in_its_output_tab(db_url, tmp_path, monkeypatch):
    (tmp_path / "bigagent.py").write_text(
        "def big(input, context, step):\n    return {'rows': [{'i': i} for i in range(200_000)]}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    p = validate_plan({"agents": {"py": {"kind": "python", "call": "bigagent:big"}}, "steps": [{"key": "big"}]})
    async with await Orchestrator.open(db_url, user="max") as orch:
        run_id = await orch.create_run(p)
        await orch.drive(run_id)
    app = LoopdeckApp(db_url, run_id=run_id, user="max")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_top(app, RunScreen) and app.screen.view is not None)
        app.screen.show_detail("big")
        await until(pilot, lambda: "cut at 20,000 characters" in str(app.screen.query_one("#detail-output").render()))
