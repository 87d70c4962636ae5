"""Budgets, replans, feedback, agents and export from the command line."""

from __future__ import annotations

import json


def test_a_paused_run_continues_when_another_terminal_raises_its_budget(cli):
    agents = {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [60, 40]}}
    path = cli.write_plan(
        {
            "agents": agents,
            "policy": {"max_concurrency": 1, "token_budget": 150, "on_budget_exhausted": "pause"},
            "steps": [{"key": f"s{i}"} for i in range(3)],
        }
    )
    proc = cli.spawn("run", str(path), "--headless")
    try:
        run_id = cli.wait_until("SELECT id FROM runs WHERE status='waiting_user'", bool)[0][0]
        assert cli("budget", run_id, "--set", "lots").returncode == 2
        result = cli("budget", run_id, "--set", "1000")
        assert result.returncode == 0, result.stderr
        assert "token budget set to 1,000" in result.stderr
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert cli.show(run_id)["run"]["tokens"]["total"] == 300


def test_a_run_paused_on_its_cost_budget_continues_when_raised_in_dollars(cli):
    agents = {
        "sim": {
            "kind": "sim",
            "latency_ms": 0,
            "tokens": [600, 400],
            "price": {"input_per_mtok": 10, "output_per_mtok": 10},
        }
    }
    path = cli.write_plan(
        {
            "agents": agents,
            "policy": {"max_concurrency": 1, "cost_budget_usd": 0.025, "on_budget_exhausted": "pause"},
            "steps": [{"key": f"s{i}"} for i in range(3)],
        }
    )
    proc = cli.spawn("run", str(path), "--headless")
    try:
        run_id = cli.wait_until("SELECT id FROM runs WHERE status='waiting_user'", bool)[0][0]
        result = cli("budget", run_id, "--usd", "$1")
        assert result.returncode == 0, result.stderr
        assert "cost budget set to $1.00" in result.stderr
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    run = cli.show(run_id)["run"]
    assert run["cost_usd"] == 0.03 and run["cost_budget_usd"] == 1.0  # three steps of $0.01
    listed = cli("runs")
    assert "$0.03" in listed.stdout and "COST" in listed.stdout


def test_replan_from_the_command_line(cli):
    agents = {"sim": {"kind": "sim", "latency_ms": 0}}
    path = cli.write_plan({"agents": agents, "steps": [{"key": "gate", "approval": "required"}]})
    proc = cli.spawn("run", str(path), "--headless")
    try:
        run_id = cli.wait_until("SELECT run_id FROM steps WHERE status='waiting_user'", bool)[0][0]
        extra = cli.write_plan({"steps": [{"key": "after", "depends_on": ["gate"]}]}, name="more.yaml")
        bad = cli.write_plan([{"key": "x", "depends_on": ["nope"]}], name="bad.yaml")
        result = cli("replan", run_id, str(bad))
        assert result.returncode == 2 and 'replan.steps[0].depends_on[0]: unknown step "nope"' in result.stderr
        result = cli("replan", run_id, str(extra), "--reason", "one more")
        assert result.returncode == 0, result.stderr
        assert cli("approve", run_id, "gate").returncode == 0
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert [s["key"] for s in cli.show(run_id)["steps"]] == ["gate", "after"]


def test_feedback_agents_and_export(cli):
    agents = {"writer": {"kind": "sim", "latency_ms": 0, "tokens": [10, 5]}}
    path = cli.write_plan({"agents": agents, "steps": [{"key": "a"}, {"key": "b"}]})
    result = cli("run", str(path), "--headless", "--json")
    run_id = json.loads(result.stdout)["run"]["id"]
    assert cli("feedback", run_id, "a", "up", "--comment", "good", "--category", "style").returncode == 0
    assert cli("feedback", run_id, "b", "down").returncode == 0
    assert cli("feedback", run_id, "zz", "up").returncode == 2
    agents_out = json.loads(cli("agents", "--json").stdout)
    assert agents_out["writer"]["feedback"] == {"up": 1, "down": 1, "rate": 0.5}
    assert agents_out["writer"]["tokens"]["total"] == 30
    table = cli("agents").stdout
    assert "writer" in table and "50%" in table
    out = cli.tmp / "spans.json"
    result = cli("export", run_id, "--format", "otlp-json", "--out", str(out))
    assert result.returncode == 0 and "wrote 3 spans" in result.stderr
    data = json.loads(out.read_text())
    assert data["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["name"] == "invoke_agent writer"
    snap = cli.show(run_id)
    assert {"spans", "feedback", "agents"} <= set(snap)


def test_finish_from_another_terminal_ends_the_headless_run_with_the_operators_answer(cli):
    agents = {"fast": {"kind": "sim", "latency_ms": 0, "output": "notes"}, "slow": {"kind": "sim", "latency_ms": 30000}}
    path = cli.write_plan(
        {
            "agents": agents,
            "steps": [{"key": "notes", "agent": "fast"}, {"key": "long", "agent": "slow", "depends_on": ["notes"]}],
        }
    )
    answer = cli.tmp / "answer.md"
    answer.write_text("# The answer\n\nwritten by hand ✓\n")
    assert cli("finish", "no-such-run", "--answer-file", str(cli.tmp / "missing.md")).returncode == 2
    proc = cli.spawn("run", str(path), "--headless", "--json")
    try:
        run_id = cli.wait_until("SELECT run_id FROM steps WHERE key='long' AND status='running'", bool)[0][0]
        result = cli("finish", run_id, "--answer-file", str(answer), "--reason", "good enough", "--json")
        assert result.returncode == 0, result.stderr
        assert "finished (succeeded) by" in result.stderr
        assert json.loads(result.stdout)["answer"] == "# The answer\n\nwritten by hand ✓\n"
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        proc.kill()
    printed = json.loads(out)["run"]  # `run --headless --json` prints the run with its result
    assert printed["status"] == "succeeded"
    assert printed["result"]["answer"] == "# The answer\n\nwritten by hand ✓\n"
    assert printed["result"]["finish_reason"] == "good enough"
    shown = cli("show", run_id)
    assert "result: finished by" in shown.stdout and "written by hand" in shown.stdout
    again = cli("finish", run_id, "--answer", "late")
    assert again.returncode == 1 and "an ended run can no longer be finished" in again.stderr
