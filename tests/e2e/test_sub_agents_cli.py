"""A sub_agent step's child run, from the command line: nested in `runs`, and kill -9 then resume both."""

from __future__ import annotations

import json
import os
import signal
import time


def parent_plan(cli):
    return cli.write_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}, "slow": {"kind": "sim", "latency_ms": 1500}},
            "default_agent": "sim",
            "steps": [
                {"key": "prep"},
                {
                    "key": "research",
                    "type": "sub_agent",
                    "depends_on": ["prep"],
                    "steps": [{"key": "dig", "agent": "slow"}, {"key": "sum", "depends_on": ["dig"]}],
                },
                {"key": "write", "depends_on": ["research"]},
            ],
        }
    )


def signal_while_the_child_runs(cli, sig: int) -> int:
    """Run the parent headless, send ``sig`` once its child's slow step runs; the driver's exit code."""
    proc = cli.spawn("run", str(parent_plan(cli)), "--headless")
    try:
        cli.wait_until(
            "SELECT s.status FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.parent_run_id IS NOT NULL AND s.key = 'dig'",
            lambda rows: rows and rows[0][0] == "running",
        )
        os.kill(proc.pid, sig)
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_9_while_the_child_runs_then_resume_finishes_both_with_one_child(cli):
    signal_while_the_child_runs(cli, signal.SIGKILL)
    (parent,) = cli.query("SELECT id FROM runs WHERE parent_run_id IS NULL")[0]
    resumed = cli("resume", parent, "--headless", "--json")
    assert resumed.returncode == 0, resumed.stderr
    run = json.loads(resumed.stdout)
    assert run["run"]["status"] == "succeeded"
    (child,) = run["run"]["children"]  # the same child, gone on with: not a second one
    assert child["status"] == "succeeded" and child["step"] == "research"
    listed = json.loads(cli("runs", "--json").stdout)
    assert {r["id"]: r["parent"] for r in listed} == {parent: None, child["id"]: parent}
    table = cli("runs").stdout.splitlines()
    assert table[1].startswith(parent) and table[2].startswith(f"└ {child['id']}")  # nested under its parent


def gated_child_plan(cli):
    return cli.write_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "steps": [
                {
                    "key": "research",
                    "type": "sub_agent",
                    "steps": [{"key": "dig"}, {"key": "publish", "depends_on": ["dig"], "approval": "required"}],
                },
            ],
        }
    )


def test_a_headless_run_answers_its_childs_gates_as_approve_says(cli):
    result = cli("run", str(gated_child_plan(cli)), "--headless", "--approve", "all", "--json")
    assert result.returncode == 0, result.stderr
    (child,) = json.loads(result.stdout)["run"]["children"]
    assert f'↳ child run {child["id"]} of step "research"' in result.stderr
    assert "publish approved by" in result.stderr


def test_a_childs_gate_is_said_with_the_command_that_answers_it_from_another_terminal(cli):
    proc = cli.spawn("run", str(gated_child_plan(cli)), "--headless", "--approve", "ask")
    try:
        rows = cli.wait_until(
            "SELECT s.run_id FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.parent_run_id IS NOT NULL AND s.key = 'publish' AND s.status = 'waiting_user'",
            bool,
        )
        child = rows[0][0]
        answered = cli("approve", child, "publish", "--user", "ann")
        assert answered.returncode == 0, answered.stderr
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = next(cli.tmp.glob("spawn-*.log")).read_text()
    assert f"loopdeck approve {child} publish" in log  # the exact line, said on the parent's stderr


def test_ctrl_c_while_the_child_runs_leaves_it_for_the_resume_not_canceled(cli):
    assert signal_while_the_child_runs(cli, signal.SIGINT) == 130
    ((child, status),) = cli.query("SELECT id, status FROM runs WHERE parent_run_id IS NOT NULL")
    assert status == "running"  # the driver stopped, not the step: nothing canceled
    (parent,) = cli.query("SELECT id FROM runs WHERE parent_run_id IS NULL")[0]
    resumed = cli("resume", parent, "--headless", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert [c["id"] for c in json.loads(resumed.stdout)["run"]["children"]] == [child]


def test_a_resumed_run_does_not_tell_again_the_children_that_ended_before_it(cli):
    """Each child's gate is said once: at the resume, a child that had ended is not told (nor answered) again."""
    plan = cli.write_plan(
        {
            "goal": "parent",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "steps": [
                {"key": "first", "type": "sub_agent", "steps": [{"key": "gate1", "approval": "required"}]},
                {
                    "key": "second",
                    "type": "sub_agent",
                    "depends_on": ["first"],
                    "steps": [{"key": "gate2", "approval": "required"}],
                },
            ],
        }
    )
    waiting = (
        "SELECT s.run_id FROM steps s JOIN runs r ON r.id = s.run_id "
        "WHERE r.parent_run_id IS NOT NULL AND s.key = ? AND s.status = 'waiting_user'"
    )
    proc = cli.spawn("run", str(plan), "--headless", "--approve", "ask")
    try:
        ((first,),) = cli.wait_until(waiting, bool, 30, "gate1")
        assert cli("approve", first, "gate1").returncode == 0
        cli.wait_until(waiting, bool, 30, "gate2")
        os.kill(proc.pid, signal.SIGINT)  # ctrl-c while the second child waits: the resume goes on with it
        assert proc.wait(20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    (parent,) = cli.query("SELECT id FROM runs WHERE parent_run_id IS NULL")[0]
    ((second,),) = cli.query(waiting, "gate2")
    resumed = cli.spawn("resume", parent, "--headless", "--approve", "ask")
    try:
        time.sleep(1.5)  # the resume looks for children more than once meanwhile (every 0.5 s)
        assert cli("approve", second, "gate2").returncode == 0
        assert resumed.wait(30) == 0
    finally:
        if resumed.poll() is None:
            resumed.kill()
    said = sorted(cli.tmp.glob("spawn-*.log"))[-1].read_text()  # the resume's stderr
    assert f"loopdeck approve {second} gate2" in said  # the child it goes on with is told
    assert first not in said, said  # the one that ended before the resume is not told again
