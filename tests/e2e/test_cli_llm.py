"""Planning, plan approval, skills and llm agents from the command line (the chat server runs on loopback)."""

from __future__ import annotations

import json

import yaml

from tests.chat_server import ChatServer

KEY = "sk-e2e-0123456789-TOPSECRET"


def agents_file(cli, server: ChatServer, **policy) -> str:
    path = cli.write_plan(
        {
            "agents": {
                "planner": {"kind": "llm", "base_url": server.url, "model": "plan-model", "api_key_env": "E2E_KEY"},
                "writer": {"kind": "sim", "latency_ms": 0},
            },
            "policy": {"plan_approval": "required", **policy},
        },
        name="agents.yaml",
    )
    cli.env["E2E_KEY"] = KEY
    return str(path)


PLAN = {
    "goal": "post",
    "steps": [{"key": "draft", "agent": "writer"}, {"key": "edit", "agent": "writer", "depends_on": ["draft"]}],
}


def test_plan_writes_a_readable_plan_file_after_a_repair(cli, server):
    agents = agents_file(cli, server)
    server.answer(json.dumps({"goal": "post", "steps": [{"key": "draft", "agent": "ghost"}]}))
    server.answer(json.dumps(PLAN))
    out = cli.tmp / "proposed.yaml"
    result = cli("plan", "write a blog post", "--agent", "planner", "--agents", agents, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "sending them back" in result.stderr and "2 steps after 1 repair(s)" in result.stderr
    data = yaml.safe_load(out.read_text())
    assert [s["key"] for s in data["steps"]] == ["draft", "edit"] and "planner" in data["agents"]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert cli("run", str(out), "--headless", "--approve", "all").returncode == 0  # the file runs as written
    assert KEY not in out.read_text() and KEY not in result.stderr + result.stdout


def test_plan_reports_an_unusable_agents_file_and_a_refusing_server(cli, server):
    missing = cli("plan", "g", "--agent", "planner", "--agents", str(cli.tmp / "none.yaml"))
    assert missing.returncode == 2 and "agents file not found" in missing.stderr
    agents = agents_file(cli, server)
    wrong = cli("plan", "g", "--agent", "writer", "--agents", agents)
    assert wrong.returncode == 2 and 'agent "writer" is not an llm agent' in wrong.stderr
    server.reply(401, echo_auth=True)
    refused = cli("plan", "g", "--agent", "planner", "--agents", agents)
    assert refused.returncode == 1 and "answered 401" in refused.stderr
    assert KEY not in refused.stderr and "[redacted]" in refused.stderr


def test_run_goal_waits_for_approve_plan_from_another_terminal(cli, server):
    agents = agents_file(cli, server)
    server.answer(json.dumps(PLAN))
    proc = cli.spawn("run", "--goal", "write a blog post", "--planner", "planner", "--agents", agents, "--headless")
    try:
        run_id = cli.wait_until("SELECT id FROM runs WHERE status='awaiting_plan_approval'", bool)[0][0]
        shown = cli.show(run_id)
        assert [s["key"] for s in shown["plan"]["steps"]] == ["draft", "edit"]
        assert cli("approve", run_id, "draft").returncode == 1  # not before the plan is decided
        result = cli("approve-plan", run_id, "--reason", "looks right")
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    shown = cli.show(run_id)
    events = [e["type"] for e in shown["events"]]
    assert events.index("run_plan_approved") < events.index("run_started")
    assert shown["run"]["tokens"] == {"prompt": 11, "completion": 7, "total": 18}  # the planner's answer counts


def test_approve_plan_reject_ends_the_run_rejected(cli, server):
    agents = agents_file(cli, server)
    server.answer(json.dumps(PLAN))
    proc = cli.spawn("run", "--goal", "g", "--planner", "planner", "--agents", agents, "--headless")
    try:
        run_id = cli.wait_until("SELECT id FROM runs WHERE status='awaiting_plan_approval'", bool)[0][0]
        assert cli("approve-plan", run_id, "--reject", "--reason", "no").returncode == 0
        assert proc.wait(timeout=30) == 1
    finally:
        proc.kill()
    assert cli.show(run_id)["run"]["status"] == "rejected"
    again = cli("approve-plan", run_id)
    assert again.returncode == 1 and "an ended run can no longer be given a plan decision" in again.stderr


def test_the_key_never_reaches_the_database_or_any_output(cli, server):
    cli.env["E2E_KEY"] = KEY
    server.reply(500, echo_auth=True)
    server.reply(400, echo_auth=True)
    path = cli.write_plan(
        {
            "agents": {"llm": {"kind": "llm", "base_url": server.url, "model": "m", "api_key_env": "E2E_KEY"}},
            "policy": {"backoff": {"base_s": 0.01, "jitter": False}},
            "steps": [{"key": "a"}],
        }
    )
    result = cli("run", str(path), "--headless", "--json")
    assert result.returncode == 1
    run_id = json.loads(result.stdout)["run"]["id"]
    outputs = [result.stdout, result.stderr]
    for args in (("show", run_id), ("show", run_id, "--json"), ("runs",), ("agents", "--json"), ("export", run_id)):
        done = cli(*args)
        outputs += [done.stdout, done.stderr]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent...
    for text in outputs:
        assert KEY not in text  # ...and never shown
    for path in cli.tmp.glob("e2e.db*"):
        assert KEY.encode() not in path.read_bytes(), path


def test_skills_lists_plan_and_installed_skills(cli, tmp_path):
    dist = tmp_path / "site" / "acme_skills-2.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-skills\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[loopdeck.skills]\nwords = tests.fixtures.agents:word_count\n")
    cli.env["PYTHONPATH"] = f"{cli.env['PYTHONPATH']}:{dist.parent}"
    plan = cli.write_plan(
        {
            "skills": {"shout": "tests.fixtures.agents:shout"},
            "steps": [
                {"key": "w", "type": "skill", "skill": "words", "input": {"text": "a b c"}},
                {"key": "s", "type": "skill", "skill": "shout", "input": {"text": "hi"}},
            ],
        }
    )
    listed = json.loads(cli("skills", "--plan", str(plan), "--json").stdout)
    assert listed["words"] == {"target": "tests.fixtures.agents:word_count", "origin": "package acme-skills 2.0"}
    assert listed["shout"]["origin"] == "plan"
    table = cli("skills").stdout
    assert "words" in table and "package acme-skills 2.0" in table
    result = cli("run", str(plan), "--headless", "--json")
    assert result.returncode == 0, result.stderr
    outputs = {s["key"]: s["output"] for s in json.loads(result.stdout)["steps"]}
    assert outputs == {"w": {"words": 3}, "s": "HI"}


def test_run_needs_a_plan_or_a_goal(cli):
    both = cli("run", "x.yaml", "--goal", "g", "--planner", "p")
    assert both.returncode == 2 and "not both or neither" in both.stderr
    assert cli("run", "--goal", "g").returncode == 2
