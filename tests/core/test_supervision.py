"""Never a hang: deep plans end at once, and a background task that dies fails the run, loudly.

Each of these once left ``drive`` waiting forever: a recursion per skipped
step raised RecursionError inside a task; an error in a side task or a timer
callback became "Task exception was never retrieved" and nothing more.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from core import Orchestrator, RunStatus, validate_plan
from core.engine import controller as controller_module
from core.engine import transitions
from core.store import Store
from tests.conftest import plan

CHAIN = 20_000


def chain_plan(n: int):
    return validate_plan(
        {
            "agents": {"bad": {"kind": "sim", "latency_ms": 0, "fail_rate": 1.0}},
            "policy": {"max_step_attempts": 1},
            "steps": [{"key": "s0"}] + [{"key": f"s{i}", "depends_on": [f"s{i - 1}"]} for i in range(1, n)],
        }
    )


async def test_a_20000_step_chain_that_fails_at_its_first_step_ends_at_once_and_opens_in_the_dashboard(orch):
    run_id = await orch.create_run(chain_plan(CHAIN))
    started = time.monotonic()
    assert await asyncio.wait_for(orch.drive(run_id), 60) == RunStatus.FAILED
    elapsed = time.monotonic() - started
    snap = await orch.snapshot(run_id, events=False)
    assert snap["run"]["reason"].startswith('step "s0" failed')
    assert sum(s["status"] == "skipped" for s in snap["steps"]) == CHAIN - 1
    assert elapsed < 30

    from tui.dashboard.app import LoopdeckApp
    from tui.dashboard.screens.run import RunScreen

    app = LoopdeckApp(run_id=run_id, orchestrator=orch)
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 60
        while not (isinstance(app.screen, RunScreen) and app.screen.view is not None) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        tree = app.screen.query_one("#dag")
        await pilot.pause(0.3)
        assert tree.last_line == CHAIN - 1  # every step on its own line, none nested off the screen
        tree.action_scroll_end()  # (the tree's own end: the `end` key follows the event log)
        await pilot.pause(0.2)
        assert tree.cursor_node is not None and tree.cursor_node.data == f"s{CHAIN - 1}"


@pytest.fixture
async def unretrieved():
    """Task exceptions nobody retrieved, as asyncio would report them."""
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context.get("message", "")))
    yield seen
    gc.collect()
    loop.set_exception_handler(previous)


async def test_an_error_in_an_attempts_bookkeeping_fails_the_run_with_that_error(orch, monkeypatch, unretrieved):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom in the backoff")

    monkeypatch.setattr(transitions, "backoff_delay", broken)
    run_id = await orch.create_run(
        plan([{"key": "a", "agent": "flaky"}], agents={"flaky": {"kind": "sim", "latency_ms": 0, "fail_times": 1}})
    )
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["reason"] == (
        'internal error in the attempt of step "a": ZeroDivisionError: boom in the backoff'
    )
    assert snap["steps"][0]["status"] == "skipped"
    gc.collect()
    await asyncio.sleep(0)
    assert not [m for m in unretrieved if "never retrieved" in m]


async def test_a_dead_commands_inbox_fails_the_run_instead_of_leaving_it_deaf(orch, monkeypatch, unretrieved):
    async def broken(self, run_id):
        raise RuntimeError("the inbox broke")

    monkeypatch.setattr(Store, "queued_commands", broken)
    run_id = await orch.create_run(plan([{"key": "a", "approval": "required"}]))
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["reason"] == "internal error in the commands inbox: RuntimeError: the inbox broke"
    assert not [m for m in unretrieved if "never retrieved" in m]


async def test_a_timer_callback_that_fails_fails_the_run(orch, monkeypatch, unretrieved):
    def broken(self, key):
        raise KeyError(f"lost {key}")

    monkeypatch.setattr(controller_module.RunController, "_timer_fired", broken)
    agents = {"flaky": {"kind": "sim", "latency_ms": 0, "fail_times": 1}}
    run_id = await orch.create_run(plan([{"key": "a", "agent": "flaky"}], agents=agents))
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.FAILED
    reason = (await orch.snapshot(run_id))["run"]["reason"]
    assert reason == """internal error in the retry timer of step "a": KeyError: 'lost a'"""
    assert not [m for m in unretrieved if "never retrieved" in m]


def test_an_unexpected_error_in_a_command_is_one_line_and_exit_3(monkeypatch, capsys, tmp_path, caplog):
    from tui.cli import main

    async def broken(self, limit=100):
        raise ZeroDivisionError("division by zero at postgresql://u:hunter2@h/db")

    monkeypatch.setattr(Orchestrator, "runs", broken)
    db = tmp_path / "x.db"
    assert main(["--db", str(db), "submit", "--json", str(_plan_file(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["--db", str(db), "runs"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "hunter2" not in err
    assert "unexpected error: ZeroDivisionError: division by zero at postgresql://u:***@h/db" in err
    monkeypatch.setenv("LOOPDECK_DEBUG", "1")
    assert main(["--db", str(db), "runs"]) == 3
    debug = capsys.readouterr().err
    assert "Traceback" in debug and "hunter2" not in debug


def _plan_file(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("steps: [{key: a}]\n")
    return path


async def test_usage_an_agent_cannot_have_spent_fails_its_attempt_instead_of_the_database(orch, tmp_path, monkeypatch):
    """A python agent reporting 10**30 tokens crashed the writer (SQLite INTEGER) on every resume."""
    (tmp_path / "greedy.py").write_text(
        "def huge(input, context, step):\n    return 'ok', (10**30, 1)\n\n"
        "def negative(input, context, step):\n    return 'ok', {'prompt_tokens': -50}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agents = {
        "huge": {"kind": "python", "call": "greedy:huge"},
        "negative": {"kind": "python", "call": "greedy:negative"},
    }
    run_id = await orch.create_run(
        plan([{"key": "a", "agent": "huge"}, {"key": "b", "agent": "negative"}], agents=agents, token_budget=1000)
    )
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    errors = {s["key"]: s["error"] for s in snap["steps"]}
    assert "it reported prompt_tokens 1000000000000000000000000000000, not a whole number" in errors["a"]
    assert "it reported prompt_tokens -50, not a whole number" in errors["b"]
    assert snap["run"]["tokens"]["total"] == 0  # nothing counted, nothing subtracted from the budget


def test_an_engine_error_in_a_headless_run_is_one_line_without_a_traceback(tmp_path):
    """The engine logged the error with its traceback; Python's last-resort handler printed it."""
    import subprocess
    import sys

    from tests.e2e.conftest import ROOT

    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("agents: {flaky: {kind: sim, latency_ms: 0, fail_times: 1}}\nsteps: [{key: a}]\n")
    script = (
        "import sys; import core.engine.transitions as c\n"
        "def boom(*a, **k): raise ZeroDivisionError('boom in the backoff')\n"
        "c.backoff_delay = boom\n"
        "from tui.cli import main\n"
        f"sys.exit(main(['--db', {str(tmp_path / 'x.db')!r}, 'run', {str(plan_file)!r}, '--headless']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "loopdeck: error: run " in result.stderr and "ZeroDivisionError: boom in the backoff" in result.stderr


async def test_a_live_cancel_whose_end_the_store_refuses_raises_instead_of_saying_it_was_done(orch):
    """The cancel's write is refused (the step changed underneath, as another process would change it): the
    operator is told, never shown the run as canceled, and the driver stops on the error."""
    from sqlalchemy import update

    from core.errors import LoopdeckError
    from core.store import schema
    from tests.core.helpers import wait_event

    slow = validate_plan({"agents": {"slow": {"kind": "sim", "latency_ms": 30000}}, "steps": [{"key": "long"}]})
    run_id = await orch.create_run(slow)
    driving = asyncio.ensure_future(orch.drive(run_id))
    await wait_event(orch, run_id, "step_started", "long")
    async with orch.store.engine.begin() as conn:  # another writer moves the step on
        await conn.execute(
            update(schema.steps).where(schema.steps.c.run_id == run_id).values(attempts=schema.steps.c.attempts + 1)
        )
    with pytest.raises(LoopdeckError, match="changed"):
        await orch.cancel(run_id, user="ann")
    with pytest.raises(LoopdeckError):
        await asyncio.wait_for(driving, 15)
    assert (await orch.run(run_id, plan=False)).status == RunStatus.RUNNING  # nothing was recorded as canceled
