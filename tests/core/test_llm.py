"""The llm agent against a real chat-completions server on loopback (tests/chat_server.py)."""

from __future__ import annotations

import itertools
import json
import logging
import socket
from pathlib import Path

import pytest

from core import Orchestrator, validate_plan
from tests.chat_server import ChatServer, error_body
from tests.conftest import events_of

KEY = "sk-test-9f8e7d6c5b4a-SECRET"


def llm_plan(server: ChatServer, steps: list[dict], attempts: int = 3, **agent: object):
    cfg = {
        "kind": "llm",
        "base_url": server.url,
        "model": "test-model",
        "api_key_env": "LOOPDECK_TEST_KEY",
        "timeout_s": 5,
        **agent,
    }
    return validate_plan(
        {
            "goal": "llm test",
            "agents": {"writer": cfg},
            "policy": {
                "max_step_attempts": attempts,
                "backoff": {"base_s": 0.01, "factor": 1, "max_s": 0.01, "jitter": False},
            },
            "steps": steps,
        }
    )


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("LOOPDECK_TEST_KEY", KEY)


async def run(orch: Orchestrator, plan) -> tuple[str, dict]:
    run_id = await orch.create_run(plan)
    await orch.drive(run_id)
    return run_id, await orch.snapshot(run_id)


def step(snap: dict, key: str) -> dict:
    return next(s for s in snap["steps"] if s["key"] == key)


async def test_request_shape_prompt_and_usage(orch, server):
    server.answer("An outline in three parts.", usage=(120, 30))
    server.answer("The draft.", usage=(200, 80))
    plan = llm_plan(
        server,
        [
            {"key": "outline", "title": "Outline the essay", "input": {"topic": "tides"}},
            {"key": "draft", "title": "Draft it", "depends_on": ["outline"], "input": "write 300 words"},
        ],
        system="You are terse.",
        temperature=0.2,
        max_tokens=256,
        headers={"X-Team": "ops"},
    )
    _run_id, snap = await run(orch, plan)

    assert snap["run"]["status"] == "succeeded"
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2
    first, second = server.requests
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["x-team"] == "ops"
    assert first.json["model"] == "test-model"
    assert first.json["temperature"] == 0.2 and first.json["max_tokens"] == 256
    assert "stream" not in first.json
    system, user = first.json["messages"]
    assert system == {"role": "system", "content": "You are terse."}
    assert "Outline the essay" in user["content"] and '"topic": "tides"' in user["content"]
    # the second step's prompt carries the first step's output as context
    assert "An outline in three parts." in second.json["messages"][1]["content"]
    assert "write 300 words" in second.json["messages"][1]["content"]
    assert step(snap, "outline")["output"] == "An outline in three parts."
    assert step(snap, "outline")["tokens"] == {"prompt": 120, "completion": 30, "total": 150}
    assert snap["run"]["tokens"]["total"] == 150 + 280


async def test_usage_is_estimated_and_marked_when_the_server_sends_none(orch, server):
    server.answer("x" * 400, usage=None)
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a", "input": "hello"}]))
    assert snap["run"]["status"] == "succeeded"
    tokens = step(snap, "a")["tokens"]
    assert tokens["completion"] == 100 and tokens["prompt"] > 0
    done = next(e for e in snap["events"] if e["type"] == "step_succeeded")
    assert done["payload"]["tokens"]["estimated"] is True


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_fail_at_once_with_the_servers_words(orch, server, status):
    server.reply(status, error_body(f"nope-{status}"))
    plan = llm_plan(server, [{"key": "a"}], attempts=3, breaker={"failure_threshold": 1, "cooldown_s": 60})
    _run_id, snap = await run(orch, plan)
    a = step(snap, "a")
    assert a["status"] == "failed" and a["attempts"] == 1  # no further attempts spent
    assert f"answered {status}" in a["error"] and f"nope-{status}" in a["error"]
    assert len(server.requests) == 1
    # it still counts toward the agent's breaker (threshold 1: open after this one failure)
    assert any(e["type"] == "breaker_changed" and e["payload"]["to"] == "open" for e in snap["events"])


async def test_429_honours_retry_after_then_succeeds(orch, server):
    server.reply(429, error_body("slow down"), headers={"Retry-After": "1"})
    server.answer("finally")
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}]))
    assert step(snap, "a")["status"] == "succeeded" and step(snap, "a")["attempts"] == 2
    retrying = next(e for e in snap["events"] if e["type"] == "step_retrying")
    assert retrying["payload"]["delay_s"] >= 1.0  # backoff alone would be 0.01 s
    assert "429" in retrying["payload"]["error"] and "slow down" in retrying["payload"]["error"]


async def test_5xx_and_malformed_answers_are_retried(orch, server):
    server.reply(503, b"upstream busy")
    server.reply(200, b"this is not json")
    server.reply(200, {"choices": []})
    server.answer("good")
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}], attempts=4))
    a = step(snap, "a")
    assert a["status"] == "succeeded" and a["attempts"] == 4 and a["output"] == "good"
    errors = [e["payload"]["error"] for e in snap["events"] if e["type"] == "step_retrying"]
    assert "503" in errors[0] and "upstream busy" in errors[0]
    assert errors[1].startswith("malformed answer") and "not JSON" in errors[1]
    assert "no choices" in errors[2]


async def test_connection_errors_and_timeouts_are_retryable(orch, server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = validate_plan(
        {
            "agents": {
                "gone": {"kind": "llm", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m"},
                "slow": {"kind": "llm", "base_url": server.url, "model": "m", "timeout_s": 0.3},
            },
            "policy": {"max_step_attempts": 2, "backoff": {"base_s": 0.01, "jitter": False}},
            "steps": [{"key": "a", "agent": "gone"}, {"key": "b", "agent": "slow"}],
        }
    )
    server.default.delay_s = 1.0
    _run_id, snap = await run(orch, plan)
    assert step(snap, "a")["attempts"] == 2 and "cannot reach" in step(snap, "a")["error"]
    assert step(snap, "b")["attempts"] == 2 and "no answer from" in step(snap, "b")["error"]


async def test_streaming_fills_in_partial_output_coalesced(orch, server):
    pieces = [f"w{i} " for i in range(60)]
    server.stream(pieces, chunk_delay_s=0.01, usage=(40, 60))
    run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}], stream=True))
    a = step(snap, "a")
    assert a["status"] == "succeeded" and a["output"] == "".join(pieces)
    assert a["tokens"] == {"prompt": 40, "completion": 60, "total": 100}
    assert server.requests[0].json["stream"] is True
    partial = [e for e in await events_of(orch, run_id) if e.type == "step_output_partial"]
    assert "".join(e.payload["text"] for e in partial) == "".join(pieces)
    assert 2 <= len(partial) < len(pieces)  # coalesced, not one event per piece (the gaps below bound the rate)
    gaps = [b.created_at - a.created_at for a, b in itertools.pairwise(partial)]
    assert min(gaps[:-1]) >= 0.09  # at most ~10 per second (the last one flushes the tail as the stream ends)
    kinds = [e.type for e in await events_of(orch, run_id) if e.step_key == "a"]
    assert kinds.index("step_output_partial") > kinds.index("step_started")
    assert kinds[-1] == "step_succeeded"  # every partial event comes before the result


async def test_a_streaming_agent_accepts_a_server_that_answers_in_one_piece(orch, server):
    server.answer("whole answer", usage=(3, 2))  # plain JSON although the request asked for a stream
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}], stream=True))
    assert server.requests[0].json["stream"] is True
    assert step(snap, "a")["output"] == "whole answer" and step(snap, "a")["tokens"]["total"] == 5


async def test_json_output_is_parsed(orch, server):
    server.answer('```json\n{"title": "Tides", "parts": 3}\n```')
    plan = llm_plan(
        server,
        [{"key": "a"}, {"key": "b", "depends_on": ["a"], "input": {"n": "{{steps.a.output.parts}}"}}],
        json_output=True,
    )
    server.answer('{"ok": true}')
    _run_id, snap = await run(orch, plan)
    assert step(snap, "a")["output"] == {"title": "Tides", "parts": 3}
    assert server.requests[0].json["response_format"] == {"type": "json_object"}
    assert '"n": 3' in server.requests[1].json["messages"][-1]["content"]


async def test_the_key_never_reaches_the_database_events_exports_or_logs(orch, server, db_url, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    server.reply(401, echo_auth=True)  # a server that echoes the key back in its error
    server.reply(500, echo_auth=True)
    plan = llm_plan(server, [{"key": "a"}, {"key": "b"}], attempts=1)
    run_id, snap = await run(orch, plan)
    errors = [step(snap, "a")["error"], step(snap, "b")["error"]]  # a and b run at once: either gets the 401
    assert all("bad key: Bearer [redacted]" in e for e in errors)
    texts = [
        json.dumps(snap),
        json.dumps(await orch.export_otlp(run_id)),
        caplog.text,
        json.dumps(await orch.runs()),
        json.dumps(await orch.agents()),
    ]
    await orch.close()
    db_file = Path(db_url.split("///", 1)[1])
    for path in db_file.parent.glob(db_file.name + "*"):  # the database, its WAL and shared memory
        assert KEY.encode() not in path.read_bytes(), path
    for text in texts:
        assert KEY not in text
    assert any("check the key in $LOOPDECK_TEST_KEY" in e for e in errors)


async def test_a_missing_key_variable_fails_without_calling(orch, server, monkeypatch):
    monkeypatch.delenv("LOOPDECK_TEST_KEY")
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}]))
    a = step(snap, "a")
    assert a["attempts"] == 1 and "$LOOPDECK_TEST_KEY, which is not set" in a["error"]
    assert server.requests == []


def test_a_key_in_the_headers_is_refused_at_plan_time():
    from core import PlanError

    with pytest.raises(PlanError) as err:
        validate_plan(
            {
                "agents": {
                    "x": {
                        "kind": "llm",
                        "base_url": "http://h/v1",
                        "model": "m",
                        "headers": {"Authorization": "Bearer sk-1"},
                    }
                },
                "steps": [{"key": "a"}],
            }
        )
    assert "api_key_env" in str(err.value) and "agents.x.headers" in str(err.value)


def test_retry_after_parses_seconds_and_dates():
    from core.executors.chat import retry_after

    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after("soon") is None and retry_after(None) is None


async def test_a_stream_that_breaks_off_fails_the_attempt_and_the_retry_succeeds(orch, server):
    server.stream(["The first half of an ans"], end="break")  # the connection closes without [DONE]
    server.stream(["A whole ", "answer."])
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}], stream=True))
    a = step(snap, "a")
    assert a["status"] == "succeeded" and a["output"] == "A whole answer." and a["attempts"] == 2
    retry = next(e for e in snap["events"] if e["type"] == "step_retrying")
    assert "broke off after 24 characters" in retry["payload"]["error"]


async def test_an_error_event_in_a_stream_fails_the_attempt_with_the_servers_words(orch, server):
    server.stream(["Partial"], end="error")
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "a"}], attempts=1, stream=True))
    a = step(snap, "a")
    assert a["status"] == "failed" and a["output"] is None
    assert "sent an error in the stream: the model is overloaded" in a["error"]


async def test_a_key_cut_by_the_error_length_limit_is_redacted_before_the_cut(orch, server, db_url):
    """The server's error text was cut to 300 characters and then redacted: a key across the cut leaked in part."""
    for offset in (285, 290, 296):  # the key straddles the 300th character
        server.reply(400, body=error_body("x" * offset + KEY + " and more text after it"))
    plan = llm_plan(server, [{"key": f"s{i}", "max_attempts": 1} for i in range(3)], attempts=1)
    _run_id, snap = await run(orch, plan)
    assert all(s["status"] == "failed" and "more chars]" in s["error"] for s in snap["steps"])  # cut, visibly
    assert any("x[redacted] and" in s["error"] for s in snap["steps"])  # redacted whole where the cut allows
    assert_no_part_of_the_key(json.dumps(snap), db_url)


async def test_a_key_echoed_in_an_answer_or_a_stream_is_redacted_before_it_is_stored(orch, server, db_url):
    server.answer(f"your key is {KEY}, keep it safe")
    _run_id, snap = await run(orch, llm_plan(server, [{"key": "plain"}]))
    assert step(snap, "plain")["output"] == "your key is [redacted], keep it safe"
    half = len(KEY) // 2  # streamed in two pieces: the key arrives split across chunks
    server.stream(["the key: ", KEY[:half], KEY[half:], " (again)"], chunk_delay_s=0.15)
    _run2, snap2 = await run(orch, llm_plan(server, [{"key": "streamed"}], stream=True))
    assert step(snap2, "streamed")["output"] == "the key: [redacted] (again)"
    partials = [e["payload"]["text"] for e in snap2["events"] if e["type"] == "step_output_partial"]
    assert "".join(partials) == "the key: [redacted] (again)" and len(partials) >= 2
    assert_no_part_of_the_key(json.dumps(snap) + json.dumps(snap2), db_url)


def assert_no_part_of_the_key(text: str, db_url: str) -> None:
    """Neither the key nor any 12-character piece of it, in ``text`` or in the database files."""
    pieces = {KEY[i : i + 12] for i in range(len(KEY) - 11)}
    blobs = [text.encode()]
    db_file = Path(db_url.split("///", 1)[1]) if db_url.startswith("sqlite") else None
    if db_file is not None:
        blobs += [path.read_bytes() for path in db_file.parent.glob(db_file.name + "*")]
    for blob in blobs:
        assert not any(piece.encode() in blob for piece in pieces)
