"""The llm agent's tool loop against a real chat-completions server on loopback: parallel calls, answers, limits."""

from __future__ import annotations

import asyncio
import json

from core import RunStatus, validate_plan
from tests.chat_server import ChatServer, completion
from tests.core.helpers import start, wait_event
from tests.fixtures.tools import INVOKED, SKILLS


def asks(*calls: tuple[str, str, dict], text: str | None = None, usage=(20, 5)) -> dict:
    """A chat completion whose answer is tool calls: (model id, function name, arguments)."""
    body = completion(text or "", usage)
    message = body["choices"][0]["message"]
    message["content"] = text
    message["tool_calls"] = [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for cid, name, args in calls
    ]
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def tool_plan(server: ChatServer, **agent) -> object:
    cfg = {"kind": "llm", "base_url": server.url, "model": "m", "timeout_s": 5, "tools": ["read_file", "delete_file"]}
    return validate_plan(
        {
            "skills": SKILLS,
            "agents": {"writer": {**cfg, **agent}},
            "policy": {"max_step_attempts": 1},
            "steps": [{"key": "tidy", "title": "Tidy the folder"}],
        }
    )


async def test_parallel_calls_are_gated_run_and_answered_then_the_model_answers(orch, server):
    INVOKED.clear()
    server.reply(
        body=asks(("m1", "read_file", {"path": "a"}), ("m1", "delete_file", {"path": "b"}), text="Let me look.")
    )
    server.reply(body=completion("All tidy.", (40, 6)))
    run_id, task = await start(orch, tool_plan(server))
    await wait_event(orch, run_id, "tool_call_waiting")
    await orch.decide_call(run_id, "tidy.1.1.1", user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED

    snap = await orch.snapshot(run_id)
    step = snap["steps"][0]
    assert step["output"] == "All tidy." and step["tokens"] == {"prompt": 60, "completion": 11, "total": 71}
    first, second = (r.json for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["read_file", "delete_file"]
    assert first["tools"][1]["function"]["parameters"]["required"] == ["path"]
    asked, *answers = second["messages"][-3:]
    assert asked["role"] == "assistant" and asked["content"] == "Let me look."
    ids = [c["id"] for c in asked["tool_calls"]]
    assert ids == ["m1", "m1"]  # the model's ids collide; loopdeck's never do
    assert [a["role"] for a in answers] == ["tool", "tool"]
    assert answers[0]["content"] == "contents of a" and json.loads(answers[1]["content"]) == {"deleted": "b"}
    assert {c["id"] for c in snap["tool_calls"]} == {"tidy.1.1.0", "tidy.1.1.1"}
    assert snap["tool_calls"][0]["text"] == "Let me look."


async def test_a_rejected_call_tells_the_model_why_and_bad_arguments_are_refused_to_it(orch, server):
    server.reply(body=asks(("c1", "delete_file", {"path": "b"})))
    server.reply(body=asks(("c2", "read_file", {"pathh": "x"}), ("c3", "nope", {})))
    server.reply(body=completion("fine"))
    run_id, task = await start(orch, tool_plan(server))
    await wait_event(orch, run_id, "tool_call_waiting")
    await orch.decide_call(run_id, "tidy.1.1.0", approve=False, reason="keep b", user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    second, third = (r.json["messages"] for r in server.requests[1:])
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "the operator alice refused this call: keep b",
    }
    assert "'path' is a required property" in third[-2]["content"]
    assert third[-1]["content"] == 'this call is not allowed: "nope" is not one of this agent\'s tools'


async def test_max_turns_fails_the_attempt_saying_so(orch, server):
    for i in range(3):
        server.reply(body=asks((f"c{i}", "read_file", {"path": str(i)})))
    run_id, task = await start(orch, tool_plan(server, max_turns=2))
    assert await asyncio.wait_for(task, 10) == RunStatus.FAILED
    step = (await orch.snapshot(run_id))["steps"][0]
    assert "still calling tools after max_turns (2) turns" in step["error"]
    assert step["tokens"]["total"] == 50  # both turns counted


async def test_streamed_tool_calls_arrive_in_pieces_and_are_put_together(orch, server):
    INVOKED.clear()

    def piece(index: int, **fields) -> dict:
        return {"tool_calls": [{"index": index, **fields}]}

    server.stream(
        [
            "Reading ",
            piece(0, id="c1", type="function", function={"name": "read_file", "arguments": ""}),
            piece(0, function={"arguments": '{"pa'}),
            piece(0, function={"arguments": 'th": "a"}'}),
            piece(1, id="c2", type="function", function={"name": "read_file", "arguments": '{"path": "b"}'}),
        ]
    )
    server.stream(["both ", "read"])
    run_id, task = await start(orch, tool_plan(server, stream=True))
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    assert sorted(i["path"] for i in INVOKED) == ["a", "b"]
    calls = await orch.tool_calls(run_id)
    assert [(c.arguments, c.model_call_id, c.text) for c in calls] == [
        ({"path": "a"}, "c1", "Reading "),
        ({"path": "b"}, "c2", "Reading "),
    ]
    assert (await orch.snapshot(run_id))["steps"][0]["output"] == "both read"


def looping_plan(server: ChatServer, budget: int, on_exhausted: str) -> object:
    """A model that reads a file every turn: 25 tokens a turn, 30 reserved before each."""
    for i in range(6):
        server.reply(body=asks((f"c{i}", "read_file", {"path": str(i)})))
    server.reply(body=completion("read them all", (20, 5)))
    plan = tool_plan(server, reserve_tokens=30)
    plan.policy.token_budget = budget
    plan.policy.on_budget_exhausted = on_exhausted
    return plan


async def test_a_tool_loop_reserves_every_turn_so_it_stops_inside_the_budget(orch, server):
    run_id, task = await start(orch, looping_plan(server, 80, "fail"))
    assert await asyncio.wait_for(task, 10) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    # turns 1-3 fit (25 + 25 + 25, each with 30 reserved first); turn 4 would need 75 + 30 > 80
    assert len(server.requests) == 3
    assert snap["run"]["tokens"]["total"] == 75 <= 80
    assert "token budget 80 exhausted: 75 tokens used" in snap["run"]["reason"]
    assert "model turn 4" in snap["run"]["reason"]


async def test_a_tool_loop_waits_for_a_raised_budget_and_goes_on_in_the_same_attempt(orch, server):
    run_id, task = await start(orch, looping_plan(server, 80, "pause"))
    await wait_event(orch, run_id, "budget_exhausted")
    assert len(server.requests) == 3
    run = (await orch.snapshot(run_id))["run"]
    assert run["status"] == "waiting_user" and "model turn 4" in run["reason"]
    assert run["tokens"]["total"] == 75  # counted turn by turn, durably
    await orch.set_budget(run_id, 1000)
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    step = (await orch.snapshot(run_id))["steps"][0]
    assert step["attempts"] == 1 and step["output"] == "read them all"
    assert step["tokens"]["total"] == 7 * 25 and len(server.requests) == 7


async def test_each_model_call_and_tool_call_is_a_span_under_its_attempt(orch, server):
    server.reply(body=asks(("m1", "read_file", {"path": "a"}), ("m2", "delete_file", {"path": "b"})))
    server.reply(body=completion("done", (40, 6)))
    run_id, task = await start(orch, tool_plan(server))
    await wait_event(orch, run_id, "tool_call_waiting")
    run = (await orch.snapshot(run_id))["run"]
    assert run["tokens"]["total"] == 25  # the first turn counts while its call waits
    await orch.decide_call(run_id, "tidy.1.1.1", approve=False, reason="keep b", user="alice")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED

    spans = (await orch.snapshot(run_id))["spans"]
    # a turn's calls start together (the model asked for both at once): between them, either order
    spans[2:4] = sorted(spans[2:4], key=lambda s: s["name"], reverse=True)
    assert [(s["kind"], s["name"], s["turn"], s["status"], s["tokens"]["total"]) for s in spans] == [
        ("attempt", None, None, "succeeded", 71),
        ("chat", "m", 1, "succeeded", 25),
        ("tool", "read_file", 1, "succeeded", 0),
        ("tool", "delete_file", 1, "rejected", 0),
        ("chat", "m", 2, "succeeded", 46),
    ]
    assert spans[2]["started_at"] == spans[3]["started_at"]
    assert spans[3]["error"] == "keep b"
    otlp = await orch.export_otlp(run_id)
    root, *out = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attempt, *children = out
    assert attempt["name"] == "invoke_agent writer" and attempt["parentSpanId"] == root["spanId"]
    assert all(s["parentSpanId"] == attempt["spanId"] for s in children)
    names = [s["name"] for s in children]
    assert names[0] == names[3] == "chat m"
    assert sorted(names[1:3]) == ["execute_tool delete_file", "execute_tool read_file"]
    deleting = next(s for s in children if s["name"] == "execute_tool delete_file")
    chat = {a["key"]: a["value"] for a in children[0]["attributes"]}
    assert chat["gen_ai.operation.name"] == {"stringValue": "chat"}
    assert chat["gen_ai.provider.name"] == {"stringValue": "openai"}
    assert chat["gen_ai.request.model"] == {"stringValue": "m"}
    assert chat["gen_ai.response.model"] == {"stringValue": "test-model"}
    assert chat["gen_ai.usage.input_tokens"] == {"intValue": "20"}
    tool = {a["key"]: a["value"] for a in deleting["attributes"]}
    assert tool["gen_ai.tool.name"] == {"stringValue": "delete_file"}
    assert tool["gen_ai.tool.call.id"] == {"stringValue": "m2"}
    assert tool["loopdeck.tool_call_id"] == {"stringValue": "tidy.1.1.1"}
    assert deleting["status"] == {"code": 2, "message": "keep b"}
    assert (await orch.store.agent_summary(run_id))["writer"]["attempts"] == 1  # turns and calls are not attempts


async def test_what_was_said_reaches_the_chat_spans_only_when_the_operator_opts_in(orch, server, monkeypatch):
    for opted_in in (False, True):
        if opted_in:
            monkeypatch.setenv("LOOPDECK_OTEL_CAPTURE_CONTENT", "1")
        server.reply(body=asks(("c1", "read_file", {"path": "a"}), text="Looking."))
        server.reply(body=completion("All tidy."))
        run_id, task = await start(orch, tool_plan(server))
        assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
        chats = [s["attributes"] for s in (await orch.snapshot(run_id))["spans"] if s["kind"] == "chat"]
        if not opted_in:
            assert not any("gen_ai.input.messages" in a or "gen_ai.output.messages" in a for a in chats)
            continue
        first, second = chats
        assert "Tidy the folder" in json.loads(first["gen_ai.input.messages"])[0]["content"]
        said = json.loads(first["gen_ai.output.messages"])[0]
        assert said["content"] == "Looking." and said["tool_calls"][0]["name"] == "read_file"
        assert json.loads(second["gen_ai.output.messages"])[0]["content"] == "All tidy."
