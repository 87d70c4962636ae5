"""MCP servers as tool sources: a real server over stdio and one over streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import RunStatus, validate_plan
from tests.core.helpers import start, wait_event

SERVER = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py")


def logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def mcp_plan(server: dict, script: list, tools: list[str] | None = None, rules: list | None = None):
    agent = {"kind": "sim", "latency_ms": 0, "tools": tools or ["notes:*"], "tool_calls": script}
    return validate_plan(
        {
            "mcp_servers": {"notes": server},
            "agents": {"bot": agent},
            "approval_rules": rules or [],
            "policy": {"max_step_attempts": 1},
            "steps": [{"key": "tidy", "agent": "bot"}],
        }
    )


@pytest.fixture
def stdio_server(tmp_path: Path) -> tuple[dict, Path]:
    log = tmp_path / "mcp.log"
    return {"command": [sys.executable, SERVER], "env": {"TOOL_LOG": str(log)}}, log


@pytest.fixture
def http_server(tmp_path: Path):
    log = tmp_path / "mcp.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port)],
        env={**__import__("os").environ, "TOOL_LOG": str(log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield {"url": f"http://127.0.0.1:{port}/mcp"}, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("transport", ["stdio_server", "http_server"])
async def test_a_servers_tools_are_gated_by_their_annotations_and_each_runs_once(orch, transport, request):
    server, log = request.getfixturevalue(transport)
    script = [
        [
            {"tool": "notes:read_note", "arguments": {"name": "a"}},
            {"tool": "notes:tag_note", "arguments": {"name": "a", "tags": ["x"]}},
        ],
        {"tool": "notes:delete_note", "arguments": {"name": "a"}},
    ]
    run_id, task = await start(orch, mcp_plan(server, script, rules=[{"tool": "notes:tag_*", "action": "allow"}]))
    waiting = await wait_event(orch, run_id, "tool_call_waiting", timeout=30)
    assert waiting.payload["call"] == "tidy.1.2.0" and waiting.payload["server"] == "notes"
    assert waiting.payload["annotations"]["destructive"] is True
    assert waiting.payload["schema"]["required"] == ["name"]
    assert sorted(e["tool"] for e in logged(log)) == ["read_note", "tag_note"]  # read-only, allowed: ran at once
    await orch.decide_call(run_id, "tidy.1.2.0", user="alice")
    assert await asyncio.wait_for(task, 30) == RunStatus.SUCCEEDED
    assert sorted(e["tool"] for e in logged(log)[:2]) == ["read_note", "tag_note"]  # (one turn, run together)
    assert [e["tool"] for e in logged(log)[2:]] == ["delete_note"]
    output = (await orch.snapshot(run_id))["steps"][0]["output"]
    assert "remember the milk" in output and '"deleted": "a"' in output


async def test_a_server_that_cannot_start_fails_the_attempt_naming_it(orch, tmp_path):
    missing = {"command": [str(tmp_path / "no-such-server")]}
    run_id, task = await start(orch, mcp_plan(missing, [{"tool": "notes:read_note", "arguments": {"name": "a"}}]))
    assert await asyncio.wait_for(task, 30) == RunStatus.FAILED
    error = (await orch.snapshot(run_id))["steps"][0]["error"]
    assert error.startswith('MCP server "notes" cannot start:')


async def test_an_unknown_tool_of_a_server_is_refused_to_the_model(orch, stdio_server):
    server, log = stdio_server
    run_id, task = await start(orch, mcp_plan(server, [{"tool": "notes:burn_note", "arguments": {}}]))
    assert await asyncio.wait_for(task, 30) == RunStatus.SUCCEEDED
    output = (await orch.snapshot(run_id))["steps"][0]["output"]
    assert 'MCP server \\"notes\\" has no tool \\"burn_note\\"' in output
    assert logged(log) == []


def test_a_plan_naming_an_undeclared_server_or_both_transports_is_refused():
    from core import PlanError

    agent = {"kind": "sim", "tools": ["fs:read"]}
    with pytest.raises(PlanError, match='unknown MCP server "fs"'):
        validate_plan({"agents": {"bot": agent}, "steps": [{"key": "s"}]})
    with pytest.raises(PlanError, match="a command \\(stdio\\) or a url"):
        validate_plan(
            {
                "mcp_servers": {"fs": {"command": ["x"], "url": "http://x"}},
                "agents": {"bot": agent},
                "steps": [{"key": "s"}],
            }
        )


async def test_an_llm_agent_is_offered_a_servers_tools_and_calls_them_by_their_wire_names(orch, server, stdio_server):
    from tests.core.test_llm_tools import asks

    mcp, log = stdio_server
    server.reply(body=asks(("c1", "notes__read_note", {"name": "a"})))
    server.reply(body=__import__("tests.chat_server", fromlist=["completion"]).completion("done"))
    plan = validate_plan(
        {
            "mcp_servers": {"notes": mcp},
            "agents": {"writer": {"kind": "llm", "base_url": server.url, "model": "m", "tools": ["notes:*"]}},
            "steps": [{"key": "tidy"}],
        }
    )
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 30) == RunStatus.SUCCEEDED
    offered = [t["function"]["name"] for t in server.requests[0].json["tools"]]
    assert offered == ["notes__delete_note", "notes__read_note", "notes__tag_note"]
    assert server.requests[1].json["messages"][-1]["content"] == '{"result": "note a: remember the milk"}'
    assert [e["tool"] for e in logged(log)] == ["read_note"]
    assert (await orch.tool_calls(run_id))[0].tool == "notes:read_note"


async def test_each_server_has_a_circuit_breaker_that_opens_after_it_fails_in_a_row(orch):
    from tests.conftest import events_of

    broken = {"command": [sys.executable, "-c", "import sys; sys.exit(3)"], "breaker_failures": 2}
    plan = validate_plan(
        {
            "mcp_servers": {"notes": broken},
            "agents": {
                "bot": {
                    "kind": "sim",
                    "latency_ms": 0,
                    "tools": ["notes:*"],
                    "tool_calls": [{"tool": "notes:read_note", "arguments": {"name": "a"}}],
                }
            },
            "policy": {
                "max_step_attempts": 3,
                "backoff": {"base_s": 0.01, "factor": 1, "max_s": 0.01, "jitter": False},
            },
            "steps": [{"key": "tidy", "agent": "bot"}],
        }
    )
    run_id, task = await start(orch, plan)
    assert await asyncio.wait_for(task, 60) == RunStatus.FAILED
    step = (await orch.snapshot(run_id))["steps"][0]
    assert step["attempts"] == 3 and "its circuit breaker is open (2 failures in a row)" in step["error"]
    opened = [e.payload for e in await events_of(orch, run_id) if e.type == "breaker_changed"]
    assert opened[0]["agent"] == "mcp:notes" and opened[0]["to"] == "open"
    assert opened[0]["target"].startswith("mcp notes #")
