"""The command line under attack: malformed plans, hostile arguments, broken environments.

Whatever comes in, the answer is one line on stderr (no traceback, no
secret), the documented exit code, and nothing written that should not be.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_limits import JSONISH, alias_bomb, deep
from tests.e2e.conftest import ROOT, Cli

SIM = {"sim": {"kind": "sim", "latency_ms": 0}}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (asserting there is no traceback)."""
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def strict_json(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


# -- plans -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,text",
    [
        ("deep.json", '{"steps": ' + deep(100_000) + "}"),
        ("deep.yaml", "steps: " + deep(5_000, "x") + "\n"),
        ("bomb.yaml", alias_bomb(9)),
        ("surrogate.json", '{"goal": "\\ud800", "steps": [{"key": "a"}]}'),
        ("huge.json", '{"policy": {"token_budget": 1e29}, "steps": [{"key": "a"}]}'),
        ("nan.yaml", "agents: {s: {kind: sim, latency_ms: .nan}}\nsteps: [{key: a}]\n"),
    ],
    ids=lambda value: value if len(value) < 20 else "",
)
def test_a_malformed_plan_file_is_exit_2_in_one_located_message_and_writes_nothing(cli: Cli, name, text):
    path = cli.tmp / name
    path.write_text(text)
    started = time.monotonic()
    result = cli("run", str(path), "--headless")
    assert result.returncode == 2 and time.monotonic() - started < 30
    assert f"plan '{path}' is invalid" in result.stderr and "Traceback" not in result.stderr
    assert not cli.db.exists()  # validated before the database is touched


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=JSONISH, as_json=st.booleans())
def test_generated_malformed_plans_through_the_cli_exit_2_without_a_traceback(tmp_path_factory, data, as_json):
    """Hypothesis writes plan files; the CLI's own entry point reads them (in this process, for speed)."""
    from tui.cli import main

    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / ("plan.json" if as_json else "plan.yaml")
    try:
        path.write_text(json.dumps(data) if as_json else yaml.safe_dump(data), encoding="utf-8")
    except (UnicodeEncodeError, ValueError):
        path.write_bytes(json.dumps(data).encode("utf-8", "surrogatepass"))
    db = tmp / "fuzz.db"
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["run", str(path), "--headless", "--db", str(db)])
    if code == 0:  # a valid plan: it ran
        return
    assert code in (1, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if code == 2:  # a plan error: every problem listed under one heading, nothing written
        assert err.getvalue().startswith(f"loopdeck: plan '{path}' is invalid") and not db.exists()


# -- arguments ---------------------------------------------------------------------------------


def test_hostile_arguments_are_refused_with_exit_2(cli: Cli):
    path = cli.write_plan({"agents": SIM, "steps": [{"key": "a", "approval": "required"}, {"key": "b"}]})
    assert cli("run", str(path), "--headless", "--approve", "none").returncode == 1
    run_id = cli.query("SELECT id FROM runs")[0][0]
    cases = [
        (["approve", run_id, "a", "--input", deep(5_000)], "deeper than"),
        (["approve", run_id, "a", "--input", '{"v": NaN}'], "not a finite number"),
        (["budget", run_id, "--set", "1e26"], "whole number of tokens"),
        (["budget", run_id, "--set", str(10**26)], "0 to 1,000,000,000,000,000 tokens"),
        (["budget", run_id, "--usd", "nan"], "$0 to $1,000,000,000"),
        (["budget", run_id, "--usd", "five"], "takes dollars"),
        (["budget", run_id], "say which budget"),
        (["runs", "--limit", "0"], "must be 1 to 100,000"),
        (["runs", "--limit", "1e23"], "invalid number value"),
        (["runs", "--limit", str(10**23)], "must be 1 to 100,000"),
        (["export", run_id, "--out", str(cli.tmp / "missing" / "spans.json")], "does not exist"),
        (["export", run_id, "--out", str(cli.tmp)], "is a directory"),
        (["--db", "/proc/x.db", "run", str(path), "--headless"], "cannot open /proc/x.db"),
        (["--db", "mysql://u:hunter2@h/db", "runs"], "unsupported database URL scheme 'mysql'"),
    ]
    for argv, words in cases:
        result = cli(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr, result.stderr
        assert words in result.stderr, (argv, result.stderr)
        assert "hunter2" not in result.stderr


def test_show_and_run_print_strict_json_whatever_the_agent_returns(cli: Cli, tmp_path):
    (tmp_path / "nan_agent.py").write_text(
        "def work(input, context, step):\n    return {'v': float('nan'), 'w': [1e308 * 10]}\n"
    )
    agents = {"py": {"kind": "python", "call": "nan_agent:work"}}
    path = cli.write_plan({"agents": agents, "steps": [{"key": "a"}]})
    cli.env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = cli("run", str(path), "--headless", "--json")
    assert result.returncode == 0, result.stderr
    snap = strict_json(result.stdout)
    assert snap["steps"][0]["output"] == {"v": "NaN", "w": ["Infinity"]}
    strict_json(cli("show", snap["run"]["id"], "--json").stdout)


def test_read_only_commands_never_create_a_database(cli: Cli):
    missing = cli.tmp / "nowhere" / "loopdeck.db"
    for argv in (["runs"], ["show", "x"], ["agents"], ["export", "x"], ["workers"], ["approve", "x", "a"]):
        result = cli("--db", str(missing), *argv)
        assert result.returncode == 2 and one_line(result) == (
            f"loopdeck: no loopdeck database at {missing}; `loopdeck run`, `demo` or `submit` creates one "
            "(or point --db / LOOPDECK_DB at an existing one)"
        ), argv
    assert not missing.parent.exists()


def test_an_unreachable_postgresql_is_one_line_with_the_password_masked(cli: Cli):
    result = cli("--db", "postgresql://u:pw-s3cret@127.0.0.1:1/db", "runs")
    assert result.returncode == 2
    assert one_line(result) == "loopdeck: cannot connect to postgresql://u:***@127.0.0.1:1/db: connection refused"


def test_a_bad_environment_setting_names_the_variable_and_never_breaks_help(cli: Cli):
    cli.env["LOOPDECK_LEASE_S"] = "abc"
    assert cli("--help").returncode == 0 and cli("--version").returncode == 0
    result = cli("runs")
    assert result.returncode == 2 and "LOOPDECK_LEASE_S='abc' is not valid" in one_line(result)


# -- what the CLI says -------------------------------------------------------------------------


def test_ctrl_c_on_a_headless_run_names_the_run_to_resume(cli: Cli):
    path = cli.write_plan({"agents": {"slow": {"kind": "sim", "latency_ms": 5000}}, "steps": [{"key": "a"}]})
    proc = subprocess.Popen(
        cli.argv("run", str(path), "--headless"),
        env=cli.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cli.wait_until("SELECT COUNT(*) FROM steps WHERE status='running'", lambda r: r and r[0][0] == 1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    run_id = cli.query("SELECT id FROM runs")[0][0]
    assert proc.returncode == 130
    assert f"`loopdeck resume {run_id} --headless` continues it" in stderr and "RUN_ID" not in stderr


def test_an_answer_to_a_run_nobody_drives_says_how_it_continues(cli: Cli):
    path = cli.write_plan({"agents": SIM, "steps": [{"key": "a", "approval": "required"}]})
    proc = cli.spawn("run", str(path), "--headless")
    cli.wait_until("SELECT COUNT(*) FROM steps WHERE status='waiting_user'", lambda r: r and r[0][0] == 1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = cli.query("SELECT id FROM runs")[0][0]
    result = cli("approve", run_id, "a")
    assert result.returncode == 0
    assert f"no process drives run {run_id} now; `loopdeck resume {run_id}`" in result.stderr


def test_the_dashboard_without_a_terminal_refuses_instead_of_writing_escape_codes(cli: Cli):
    path = cli.write_plan({"agents": SIM, "steps": [{"key": "a"}]})
    for argv in (["run", str(path)], ["demo"], []):
        result = cli(*argv, timeout=30)
        assert result.returncode == 2 and "not a terminal" in one_line(result) and "\x1b[" not in result.stdout
    assert not cli.db.exists()


def in_a_terminal(cli: Cli, *args: str, timeout: float = 30) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin and stdout; return its exit code and everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        cli.argv(*args),
        env={**cli.env, "TERM": "xterm-256color"},
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    proc.kill()
    code = proc.wait()
    os.close(leader)
    return code, output.decode("utf-8", "replace")


def test_a_dashboard_that_cannot_open_its_database_says_so_in_one_line(cli: Cli):
    code, output = in_a_terminal(cli, "--db", "postgresql://u:pw-s3cret@127.0.0.1:1/db")
    assert code == 2, output
    assert output.strip() == "loopdeck: cannot connect to postgresql://u:***@127.0.0.1:1/db: connection refused"
    missing = cli.tmp / "nowhere" / "x.db"
    code, output = in_a_terminal(cli, "attach", "some-run", "--db", str(missing))
    assert code == 2 and f"no loopdeck database at {missing}" in output and "Traceback" not in output
    assert not missing.parent.exists()


def test_a_python_step_that_never_returns_does_not_keep_loopdeck_run_alive(cli: Cli, tmp_path):
    """`loopdeck run` exited only when the timed-out function returned: never, for this one."""
    (tmp_path / "stuck_cli_agent.py").write_text(
        "import threading\n\ndef work(input, context, step):\n    threading.Event().wait()\n"
    )
    cli.env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    agents = {"py": {"kind": "python", "call": "stuck_cli_agent:work"}}
    path = cli.write_plan({"agents": agents, "steps": [{"key": "a", "timeout_s": 0.5, "max_attempts": 1}]})
    started = time.monotonic()
    result = cli("run", str(path), "--headless", timeout=60)
    assert result.returncode == 1 and "timed out after 0.5s" in result.stderr
    assert time.monotonic() - started < 20


def test_a_headless_run_in_a_terminal_draws_its_live_progress_line_and_gives_the_cursor_back(cli: Cli):
    path = cli.write_plan({"agents": SIM, "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]})
    code, output = in_a_terminal(cli, "run", str(path), "--headless")
    assert code == 0, output
    assert "\x1b[?25l" in output and output.rstrip().endswith("tokens")  # the live line hid the cursor; the end
    assert "\x1b[?25h" in output  # and the cursor is shown again
    assert "Error" not in output and "Traceback" not in output
