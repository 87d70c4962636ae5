"""The CLI as users run it: exit codes, JSON contract, bad input, approvals from another terminal."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import Orchestrator, validate_plan
from tests.e2e.conftest import ROOT, Cli

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
SIM = {"sim": {"kind": "sim", "latency_ms": 5, "tokens": [10, 5]}}


def test_run_headless_json_prints_the_run_and_exits_0(cli):
    path = cli.write_plan({"goal": "g", "agents": SIM, "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]})
    result = cli("run", str(path), "--headless", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    run = data["run"]
    assert {"id", "goal", "status", "reason", "tokens", "token_budget", "created_at", "ended_at"} <= set(run)
    assert run["status"] == "succeeded" and run["tokens"] == {"prompt": 20, "completion": 10, "total": 30}
    assert ISO.match(run["created_at"]) and ISO.match(run["ended_at"])
    step = data["steps"][0]
    assert {
        "key",
        "title",
        "type",
        "agent",
        "status",
        "attempts",
        "output",
        "error",
        "tokens",
        "started_at",
        "ended_at",
    } <= set(step)
    event = data["events"][0]
    assert set(event) == {"id", "type", "step", "created_at", "payload"} and ISO.match(event["created_at"])
    assert "2/2 done" in result.stderr  # the progress display


def test_show_counts_the_events_show_json_lists(cli):
    """The table counts a run's events in the store (reading them all only to count them was most of its time)."""
    path = cli.write_plan({"agents": SIM, "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]})
    run_id = json.loads(cli("run", str(path), "--headless", "--json").stdout)["run"]["id"]
    assert cli("run", str(path), "--headless").returncode == 0  # another run's events are not counted
    events = json.loads(cli("show", run_id, "--json").stdout)["events"]
    shown = cli("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"{len(events)} events; tokens 30;" in shown.stdout and len(events) > 5


def test_a_failed_run_exits_1(cli):
    agents = {"bad": {"kind": "sim", "latency_ms": 0, "fail_rate": 1}}
    path = cli.write_plan({"agents": agents, "policy": {"max_step_attempts": 1}, "steps": [{"key": "a"}]})
    result = cli("run", str(path), "--headless")
    assert result.returncode == 1
    assert 'ended failed: step "a" failed: simulated failure' in result.stderr


def test_an_invalid_plan_exits_2_lists_every_problem_and_writes_nothing(cli):
    path = cli.write_plan(
        {
            "agents": SIM,
            "policy": {"max_concurrency": -1},
            "steps": [
                {"key": "a", "depends_on": ["c"]},
                {"key": "b", "depends_on": ["a"]},
                {"key": "c", "depends_on": ["b"]},
                {"key": "c"},
                {"key": "d", "agent": "simm"},
            ],
        }
    )
    result = cli("run", str(path), "--headless")
    assert result.returncode == 2
    assert "policy.max_concurrency" in result.stderr
    assert "dependency cycle: a -> c -> b -> a" in result.stderr
    assert 'duplicate key "c"' in result.stderr
    assert 'unknown agent "simm"; did you mean "sim"?' in result.stderr
    assert not cli.db.exists()


def test_bad_input_elsewhere_exits_2_with_a_clear_message(cli, tmp_path):
    assert cli("show", "no-such-run").returncode == 2
    result = cli("approve", "no-such-run", "x", "--input", "{oops")
    assert result.returncode == 2 and "--input is not valid JSON" in result.stderr
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 500)
    result = cli("runs", "--db", str(corrupt))
    assert result.returncode == 2 and "not a loopdeck database or is corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def test_runs_and_schema(cli):
    path = cli.write_plan({"goal": "listed", "agents": SIM, "steps": [{"key": "a"}]})
    assert cli("run", str(path), "--headless").returncode == 0
    runs = json.loads(cli("runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["goal"] == "listed" and runs[0]["status"] == "succeeded"
    assert {"id", "goal", "status", "created_at"} <= set(runs[0])
    elsewhere = cli.tmp / "other.db"
    missing = cli("--db", str(elsewhere), "runs", "--json")  # a read-only command never creates a database
    assert missing.returncode == 2 and f"no loopdeck database at {elsewhere}" in missing.stderr
    assert not elsewhere.exists()
    assert cli("run", str(path), "--headless", "--db", str(elsewhere)).returncode == 0
    assert len(json.loads(cli("--db", str(elsewhere), "runs", "--json").stdout)) == 1  # --db before the command
    assert len(json.loads(cli("runs", "--json", "--db", str(elsewhere)).stdout)) == 1  # ... or after it
    schema = json.loads(cli("schema").stdout)
    assert schema["title"] == "loopdeck plan"


def test_headless_run_waits_for_an_approval_from_another_terminal(cli):
    path = cli.write_plan(
        {
            "agents": SIM,
            "steps": [
                {"key": "draft"},
                {"key": "publish", "approval": "required", "depends_on": ["draft"], "input": {"to": "staging"}},
            ],
        }
    )
    proc = cli.spawn("run", str(path), "--headless")
    try:
        rows = cli.wait_until("SELECT run_id FROM steps WHERE key='publish' AND status='waiting_user'", bool)
        run_id = rows[0][0]
        result = cli(
            "approve", run_id, "publish", "--input", '{"to": "production"}', "--user", "alice", "--reason", "ship it"
        )
        assert result.returncode == 0, result.stderr
        assert "approved with edited input by alice" in result.stderr
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    snap = cli.show(run_id)
    publish = snap["steps"][1]
    assert publish["approved_by"] == "alice" and publish["input"] == {"to": "production"}
    again = cli("approve", run_id, "publish")
    assert again.returncode == 1
    assert "an ended run can no longer be approved" in again.stderr


def test_approve_all_and_none(cli):
    path = cli.write_plan({"agents": SIM, "steps": [{"key": "gate", "approval": "required"}]})
    assert cli("run", str(path), "--headless", "--approve", "all").returncode == 0
    result = cli("run", str(path), "--headless", "--approve", "none")
    assert result.returncode == 1 and "ended rejected" in result.stderr


def test_cancel_from_another_terminal(cli):
    agents = {"slow": {"kind": "sim", "latency_ms": 10000}}
    path = cli.write_plan({"agents": agents, "steps": [{"key": "long"}]})
    proc = cli.spawn("run", str(path), "--headless")
    try:
        run_id = cli.wait_until("SELECT run_id FROM steps WHERE status='running'", bool)[0][0]
        result = cli("cancel", run_id, "--reason", "enough")
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=30) == 1
    finally:
        proc.kill()
    snap = cli.show(run_id)
    assert snap["run"]["status"] == "canceled" and "enough" in snap["run"]["reason"]


def test_demo_runs_to_the_end_headless_and_says_it_auto_approves(cli):
    result = cli("demo", "--headless", "--speed", "5", timeout=90)
    assert result.returncode == 0, result.stderr
    assert "approved automatically" in result.stderr
    assert "20/20 done" in result.stderr


@pytest.mark.skipif(shutil.which("loopdeck") is None, reason="the console script is installed by `pip install -e .`")
def test_the_console_script_is_installed():
    result = subprocess.run(["loopdeck", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "approve" in result.stdout


LOADED = """
import sys
from tui.cli import main
try:
    code = main(sys.argv[1:])
finally:
    heavy = (
        "sqlalchemy.orm", "sqlalchemy.ext.asyncio", "aiosqlite", "pydantic", "pydantic_settings", "core.settings",
        "yaml", "core.model.plan", "core.engine.controller", "textual", "rich",
    )
    print("LOADED", sorted(name for name in heavy if name in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def unconfigured(tmp_path: Path) -> Cli:
    """A command line with no configuration file and nothing set that the settings would have to check."""
    cli = Cli(tmp_path)
    cli.env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    cli.env.pop("LOOPDECK_CONFIG", None)
    cli.env.pop("LOOPDECK_LEASE_S")  # (a value given is checked by the settings)
    return cli


def loading(cli: Cli, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command, which says on stderr which of the heavy modules it loaded (``LOADED``)."""
    return subprocess.run(
        [sys.executable, "-c", LOADED, *argv], env=cli.env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


async def test_reading_commands_load_neither_the_async_orm_nor_pydantic_nor_the_engine(tmp_path):
    cli = unconfigured(tmp_path)
    async with await Orchestrator.open(str(cli.db)) as orch:
        run_id = await orch.create_run(validate_plan({"steps": [{"key": "a"}]}))
    for argv in (["runs"], ["show", run_id], ["show", run_id, "--json"]):
        done = loading(cli, *argv)
        assert done.returncode == 0, done.stderr
        assert "LOADED ['rich']" in done.stderr  # each costs tens of milliseconds of every command's start


def test_a_dashboards_start_loads_no_settings_when_nothing_could_set_its_theme(tmp_path):
    """Each browser tab of `loopdeck serve` starts a dashboard process: the settings (~40 ms) load only when a
    configuration file or a variable could set the theme, and `attach` loads none of the driving commands."""
    cli = unconfigured(tmp_path)
    script = (
        "import sys\nfrom tui.cli.commands.dashboard import configured_theme\n"
        "print(configured_theme(), [m for m in ('pydantic_settings', 'tui.cli.commands.driving') if m in sys.modules])"
    )
    for theme, said in ((None, "None []"), ("nord", "nord ['pydantic_settings']")):
        env = {**cli.env, **({"LOOPDECK_THEME": theme} if theme else {})}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert done.stdout.strip() == said, done.stderr


OPENED = """
import asyncio, sys
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.screens.run import RunScreen
from tui.dashboard.screens.runs import RunsScreen

def shown(app, run_id):
    if run_id is None:
        return isinstance(app.screen, RunsScreen) and app.screen.query("DataTable").first().row_count
    return isinstance(app.screen, RunScreen) and "upstream" in str(app.screen.query_one("#detail-context").render())

async def main(db, run_id):
    app = LoopdeckApp(db, run_id=run_id, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        while not shown(app, run_id):
            await pilot.pause(0.05)
        await pilot.pause(0.3)
    heavy = ("pydantic", "yaml", "core.model.plan", "core.tools", "pydantic_settings")
    print(sorted(name for name in heavy if name in sys.modules))

asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
"""


async def test_the_dashboard_opens_without_pydantic_yaml_or_the_tools(tmp_path):
    """The runs list (plain `loopdeck`, and each browser tab of `loopdeck serve`) and a run with its first
    step's context: the plan's models load with the first plan reviewed, the tools with the first call shown."""
    cli = unconfigured(tmp_path)
    async with await Orchestrator.open(str(cli.db)) as orch:
        run_id = await orch.create_run(validate_plan({"steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]}))
        await orch.drive(run_id)
    for opened in ([], [run_id]):
        done = subprocess.run(
            [sys.executable, "-c", OPENED, str(cli.db), *opened],
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]"


async def test_help_and_plain_lines_load_no_rich_and_a_plain_line_is_shown_literally(tmp_path):
    """Rich loads with the first table or styled line (``tui.cli.output``); a plain line is written as is, so
    brackets in it are text, not Rich markup (the hint of `profiles` lost its ``[profiles.NAME]`` that way)."""
    cli = unconfigured(tmp_path)
    helped = loading(cli, "--help")
    assert helped.returncode == 0 and "LOADED []" in helped.stderr
    profiles = loading(cli, "profiles")
    assert profiles.returncode == 0 and "'rich'" not in profiles.stderr  # (it loads the settings: they matter)
    assert "no profiles: add [profiles.NAME] to the configuration file" in profiles.stderr
    async with await Orchestrator.open(str(cli.db)):
        pass
    hostile = loading(cli, "approve", "\x1b[31m[bold]nope", "gate")
    assert hostile.returncode == 2 and "LOADED []" in hostile.stderr
    assert "\x1b" not in hostile.stderr and "\\x1b[31m[bold]nope" in hostile.stderr  # (made visible, not markup)


async def test_approve_on_a_run_driven_in_another_terminal_loads_neither_pydantic_nor_the_engine(tmp_path):
    """The driver decides a gate's answer: the command only checks the step exists, queues it and waits."""
    cli = unconfigured(tmp_path)
    path = cli.write_plan({"steps": [{"key": "gate", "approval": "required"}, {"key": "next", "depends_on": ["gate"]}]})
    driver = cli.spawn("run", str(path), "--headless", "--approve", "ask")
    try:
        ((run_id,),) = cli.wait_until("SELECT run_id FROM steps WHERE key = 'gate' AND status = 'waiting_user'", bool)
        unknown = loading(cli, "approve", run_id, "nope")
        assert unknown.returncode == 2 and "has no step 'nope'" in unknown.stderr  # still bad input, said here
        done = loading(cli, "approve", run_id, "gate")
        assert done.returncode == 0, done.stderr
        assert "LOADED []" in done.stderr
        assert driver.wait(30) == 0
    finally:
        if driver.poll() is None:
            driver.kill()


async def test_show_of_a_big_run_prints_every_step_and_a_reader_that_stops_early_is_no_error(cli):
    """`loopdeck show RUN | head`: the steps are printed in aligned columns (tui/text/columns.py, fast for
    thousands of rows), and a pipe closed early ends the command quietly, as Rich's own printing does."""
    steps = [{"key": f"step_{i:04d}", **({"depends_on": [f"step_{i - 1:04d}"]} if i else {})} for i in range(3000)]
    async with await Orchestrator.open(str(cli.db)) as orch:
        run_id = await orch.create_run(validate_plan({"steps": steps}))
    shown = cli("show", run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("STEP"))  # (below the run's own lines)
    assert lines[top].split() == ["STEP", "STATUS", "AGENT", "TRY", "TOKENS", "COST", "ERROR"]
    rows = lines[top + 1 : top + 3001]
    assert [line.split()[0] for line in rows] == [step["key"] for step in steps]  # every one, in order
    assert len({line.index("pending") for line in rows}) == 1  # in one column
    proc = subprocess.Popen(cli.argv("show", run_id), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    while not proc.stdout.readline().startswith(b"STEP"):  # past what Rich prints: the rows, 3,000 lines,
        pass  # more than a pipe holds, are written at once
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1 and "unexpected error" not in stderr and "bug" not in stderr, stderr
