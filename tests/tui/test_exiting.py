"""A command's end without the interpreter's teardown (tui/cli/exiting.py), in real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.e2e.conftest import ROOT, Cli

SCRIPT = """
import atexit, sys, threading, time
from tui.cli.exiting import exit_now

class TornDown:
    def __del__(self):
        sys.stderr.write("torn down\\n")

kept = TornDown()  # freed only by the interpreter's teardown
atexit.register(lambda: sys.stderr.write("handlers ran\\n"))
sys.stdout.write("answer " * 2000)  # (a pipe buffers it: only a flush writes it)
if {thread}:
    threading.Thread(target=lambda: (time.sleep(0.2), sys.stderr.write("thread done\\n"))).start()
{ending}(3)
"""


def ended(ending: str, thread: bool = False) -> subprocess.CompletedProcess[str]:
    return python(textwrap.dedent(SCRIPT).format(ending=ending, thread=thread))


def python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )


def test_a_command_ends_with_its_code_its_handlers_run_and_its_output_flushed_but_no_teardown():
    normal, fast = ended("sys.exit"), ended("exit_now")
    assert "torn down" in normal.stderr  # (the teardown this test looks for does happen on a normal exit)
    assert fast.returncode == normal.returncode == 3
    assert fast.stdout == normal.stdout == "answer " * 2000
    assert "handlers ran" in fast.stderr
    assert "torn down" not in fast.stderr


def test_a_thread_still_running_is_waited_for_as_a_normal_exit_waits():
    result = ended("exit_now", thread=True)
    assert result.returncode == 3
    assert "thread done" in result.stderr and "torn down" not in result.stderr


def test_the_loopdeck_commands_whole_output_reaches_a_pipe(tmp_path):
    cli = Cli(tmp_path)
    steps = [{"key": f"s{i}", "input": "x" * 1000} for i in range(50)]  # (some 100 kB of JSON to show)
    plan = cli.write_plan({"agents": {"default": {"kind": "sim", "latency_ms": 0}}, "steps": steps})
    assert cli("run", str(plan), "--headless").returncode == 0
    runs = cli("runs", "--json")
    shown = cli("show", json.loads(runs.stdout)[0]["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout) > 100_000 and json.loads(shown.stdout)["run"]["status"] == "succeeded"


def test_argparse_exits_end_without_the_teardown_too():
    ending = "sys.argv = ['loopdeck', '--bogus']\nfrom tui.cli import entry\nentry"
    result = python(textwrap.dedent(SCRIPT).format(ending=ending, thread=False).replace("entry(3)", "entry()"))
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr
    assert "handlers ran" in result.stderr and "torn down" not in result.stderr


def test_a_command_started_with_stderr_closed_still_exits_with_its_code(tmp_path):
    """`loopdeck approve … 2>&-`: nowhere to say why, but the exit code still says it (2: bad input)."""
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "approve", "nope", "a"],
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(2),  # (the child starts without a stderr)
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "LOOPDECK_DB": str(tmp_path / "none.db")},
    )
    assert done.returncode == 2
