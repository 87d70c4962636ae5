"""Tool calls from the command line, across a kill -9: each call runs once, a waiting one waits again."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.fixtures.tools import SKILLS

TOOLS = ["read_file", "delete_file", "send", "broken", "slow_write"]


def tool_plan(cli, script, rules=None, steps=None, tokens=(0, 0)):
    agents = {"bot": {"kind": "sim", "latency_ms": 5, "tools": TOOLS, "tool_calls": script, "tokens": tokens}}
    data = {"skills": SKILLS, "agents": agents, "approval_rules": rules or [], "steps": steps or [{"key": "clean"}]}
    return cli.write_plan(data)


def invoked(cli) -> list[dict]:
    log = cli.tmp / "tools.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for_text(path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never said {text!r}: {content[-2000:]}")


def test_kill_9_while_a_call_waits_then_resume_runs_every_call_exactly_once(cli):
    cli.env["TOOL_LOG"] = str(cli.tmp / "tools.log")
    script = [{"tool": "delete_file", "arguments": {"path": "a"}}, {"tool": "delete_file", "arguments": {"path": "b"}}]
    rules = [{"tool": "delete_file", "arguments": {"path": "a"}, "action": "allow"}]
    path = tool_plan(cli, script, rules, tokens=(10, 5))
    proc = cli.spawn("run", str(path), "--headless")
    try:
        cli.wait_until("SELECT status FROM tool_calls WHERE id='clean.1.2.0'", lambda r: r == [("waiting_user",)])
        # the two model turns taken so far count already, durably (15 tokens each)
        cli.wait_until("SELECT prompt_tokens + completion_tokens FROM runs", lambda r: r == [(30,)])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert invoked(cli) == [{"tool": "delete_file", "path": "a", "force": False}]
    run_id = cli.query("SELECT id FROM runs")[0][0]

    resumed = cli.spawn("resume", run_id, "--headless")
    try:
        log = max(cli.tmp.glob("spawn-*.log"), key=os.path.getmtime)
        # the waiting call waits again, and the resumed run says how to answer it
        wait_for_text(log, f"loopdeck approve-call {run_id} clean.1.2.0")
        # carried to the resumed attempt (committed with the recovery, which the progress line may precede)
        cli.wait_until(
            "SELECT status, attempt FROM tool_calls WHERE id='clean.1.2.0'", lambda r: r == [("waiting_user", 2)]
        )
        answer = cli("approve-call", run_id, "clean.1.2.0", "--user", "alice")
        assert answer.returncode == 0, answer.stderr
        assert "approved by alice" in answer.stderr
        assert resumed.wait(timeout=30) == 0
    finally:
        resumed.kill()
    # the call that succeeded before the kill never ran again; the waiting one ran once, after the approval
    assert invoked(cli) == [
        {"tool": "delete_file", "path": "a", "force": False},
        {"tool": "delete_file", "path": "b", "force": False},
    ]
    snap = cli.show(run_id)
    calls = {c["id"]: c for c in snap["tool_calls"]}
    assert calls["clean.1.1.0"]["status"] == "succeeded" and calls["clean.1.1.0"]["rule"].startswith("rule 1")
    assert calls["clean.1.2.0"]["decided_by"] == "alice"
    assert set(calls["clean.1.2.0"]) >= {
        "id", "step", "attempt", "turn", "tool", "server", "arguments", "status", "result", "error",
        "decided_by", "rule", "reason",
    }  # fmt: skip
    assert '"deleted": "a"' in snap["steps"][0]["output"]  # the recorded result went to the model
    # the turns before the kill stay counted; the resumed attempt asks turn 2 again (its call was not
    # answered), then turn 3: four model calls, each a chat span under its attempt
    assert snap["run"]["tokens"]["total"] == 4 * 15
    chats = [(s["attempt"], s["turn"]) for s in snap["spans"] if s["kind"] == "chat"]
    assert chats == [(1, 1), (1, 2), (2, 2), (2, 3)]


def test_a_call_running_when_the_process_dies_is_interrupted_and_runs_again_only_when_approved(cli):
    cli.env["TOOL_LOG"] = str(cli.tmp / "tools.log")
    script = [{"tool": "slow_write", "arguments": {"path": "out.txt", "seconds": 30}}]
    path = tool_plan(cli, script, rules=[{"tool": "slow_write", "action": "allow"}])
    proc = cli.spawn("run", str(path), "--headless")
    try:
        cli.wait_until("SELECT status FROM tool_calls WHERE id='clean.1.1.0'", lambda r: r == [("running",)])
        deadline = time.monotonic() + 30
        while not invoked(cli) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert invoked(cli) == [{"tool": "slow_write", "path": "out.txt", "phase": "start"}]
    run_id = cli.query("SELECT id FROM runs")[0][0]
    resumed = cli.spawn("resume", run_id, "--headless")
    try:
        log = max(cli.tmp.glob("spawn-*.log"), key=os.path.getmtime)
        wait_for_text(log, "was interrupted while it ran, and waits")
        assert cli.query("SELECT status FROM tool_calls WHERE id='clean.1.1.0'") == [("interrupted",)]
        assert len(invoked(cli)) == 1  # not run again by itself: it is neither read-only nor idempotent
        assert cli("approve-call", run_id, "clean.1.1.0", "--args", '{"path": "out.txt", "seconds": 0}').returncode == 0
        assert resumed.wait(timeout=30) == 0
    finally:
        resumed.kill()
    assert [e["phase"] for e in invoked(cli)] == ["start", "start", "done"]


def test_calls_and_approve_call_answer_with_the_exit_codes_tools_rely_on(cli):
    script = [
        {"tool": "send", "arguments": {"message": {"to": "ops"}}},
        {"tool": "delete_file", "arguments": {"path": "x"}},
    ]
    path = tool_plan(cli, script)
    proc = cli.spawn("run", str(path), "--headless")
    try:
        cli.wait_until("SELECT status FROM tool_calls WHERE id='clean.1.1.0'", lambda r: r == [("waiting_user",)])
        run_id = cli.query("SELECT id FROM runs")[0][0]
        listed = cli("calls", run_id, "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout)[0]["status"] == "waiting_user"
        assert "clean.1.1.0" in cli("calls", run_id).stdout
        not_json = cli("approve-call", run_id, "clean.1.1.0", "--args", "{nope")
        assert not_json.returncode == 2
        invalid = cli("approve-call", run_id, "clean.1.1.0", "--args", '{"message": {"to": 5}}')
        assert invalid.returncode == 2 and "message.to: 5 is not of type 'string'" in invalid.stderr
        unknown = cli("approve-call", run_id, "clean.9.9.9")
        assert unknown.returncode == 2 and "has no tool call 'clean.9.9.9'" in unknown.stderr
        rejected = cli("approve-call", run_id, "clean.1.1.0", "--reject", "--reason", "wrong channel")
        assert rejected.returncode == 0, rejected.stderr
        cli.wait_until("SELECT status FROM tool_calls WHERE id='clean.1.2.0'", lambda r: r == [("waiting_user",)])
        again = cli("approve-call", run_id, "clean.1.1.0")  # the run is live (the next call waits): refused
        assert again.returncode == 1 and 'tool call "clean.1.1.0" is rejected' in again.stderr
        assert cli("approve-call", run_id, "clean.1.2.0").returncode == 0
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    output = cli.show(run_id)["steps"][0]["output"]
    assert "refused this call: wrong channel" in output


def test_tools_lists_skills_and_each_mcp_servers_tools_with_their_hints(cli):
    import sys
    from pathlib import Path

    server = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py")
    data = {
        "skills": SKILLS,
        "mcp_servers": {"notes": {"command": [sys.executable, server]}},
        "agents": {"bot": {"kind": "sim", "tools": ["notes:*"]}},
        "steps": [{"key": "s", "agent": "bot"}],
    }
    path = cli.write_plan(data)
    listed = cli("tools", "--plan", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    tools = {t["name"]: t for t in json.loads(listed.stdout)}
    assert tools["notes:delete_note"]["destructive"] and tools["notes:read_note"]["read_only"]
    assert tools["delete_file"]["origin"] == "plan" and tools["notes:tag_note"]["origin"] == "MCP server notes"
    data["mcp_servers"]["notes"]["command"] = [str(cli.tmp / "missing-server")]
    broken = cli("tools", "--plan", str(cli.write_plan(data, "broken.yaml")))
    assert broken.returncode == 2 and 'MCP server "notes" cannot start' in broken.stderr
