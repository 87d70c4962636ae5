"""Live traces: spans reach a real OTLP/HTTP receiver on loopback while the run goes; a dead collector costs nothing."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from core import Orchestrator, RunStatus, validate_plan
from tests.core.helpers import start, wait_event
from tests.fixtures.tools import SKILLS
from tests.otlp_receiver import OtlpReceiver, attributes


def reader_plan() -> object:
    """A sim model that reads a file (allowed), then asks to delete one (asks the operator), then answers."""
    script = [{"tool": "read_file", "arguments": {"path": "a"}}, {"tool": "delete_file", "arguments": {"path": "b"}}]
    bot = {"kind": "sim", "latency_ms": 0, "tokens": [7, 3], "tools": ["read_file", "delete_file"]}
    return validate_plan(
        {
            "goal": "traced",
            "skills": SKILLS,
            "agents": {"bot": {**bot, "tool_calls": script}},
            "steps": [{"key": "tidy", "agent": "bot"}],
        }
    )


@pytest.fixture
def receiver(monkeypatch):
    rx = OtlpReceiver().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")  # the batch processor's default waits 5 s
    try:
        yield rx
    finally:
        rx.stop()


async def test_spans_reach_the_collector_as_they_end_with_their_parents_and_typed_attributes(db_url, receiver):
    orch = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        run_id, task = await start(orch, reader_plan())
        await wait_event(orch, run_id, "tool_call_waiting")
        # live: the first model turn and the read arrive while the run still waits for the operator
        await asyncio.to_thread(
            receiver.wait_for, lambda spans: {"chat sim", "execute_tool read_file"} <= {s.name for s in spans}
        )
        assert not receiver.named("invoke_agent bot") and not receiver.named("run traced")
        await orch.decide_call(run_id, "tidy.1.2.0", user="alice")
        assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
        exported = {
            s["name"]: s for s in (await orch.export_otlp(run_id))["resourceSpans"][0]["scopeSpans"][0]["spans"]
        }
    finally:
        await orch.close()  # delivers what is still queued

    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert receiver.resources[0]["service.name"] == "loopdeck"
    names = sorted(s.name for s in receiver.spans)
    assert names == sorted(
        [
            "run traced",
            "invoke_agent bot",
            "chat sim",
            "chat sim",
            "chat sim",
            "execute_tool read_file",
            "execute_tool delete_file",
        ]
    )
    (root,) = receiver.named("run traced")
    (attempt,) = receiver.named("invoke_agent bot")
    children = [s for s in receiver.spans if s.name not in ("run traced", "invoke_agent bot")]
    assert root.parent_span_id == b"" and attempt.parent_span_id == root.span_id
    assert all(s.parent_span_id == attempt.span_id and s.trace_id == root.trace_id for s in children)
    # the same ids as `loopdeck export` writes from the store
    assert (
        attempt.span_id.hex() == exported["invoke_agent bot"]["spanId"]
        and root.trace_id.hex() == exported["invoke_agent bot"]["traceId"]
    )

    chat = attributes(receiver.named("chat sim")[0])
    assert chat["gen_ai.operation.name"] == ("string_value", "chat")
    assert chat["gen_ai.provider.name"] == ("string_value", "sim")
    assert chat["gen_ai.usage.input_tokens"] == ("int_value", 7)
    assert chat["gen_ai.usage.output_tokens"] == ("int_value", 3)
    assert chat["loopdeck.turn"][0] == "int_value"
    tool = attributes(receiver.named("execute_tool delete_file")[0])
    assert tool["gen_ai.tool.name"] == ("string_value", "delete_file")
    assert tool["loopdeck.tool_call_id"] == ("string_value", "tidy.1.2.0")
    assert tool["loopdeck.decided_by"] == ("string_value", "alice")
    assert attributes(attempt)["gen_ai.usage.input_tokens"] == ("int_value", 21)
    assert attributes(attempt)["gen_ai.operation.name"] == ("string_value", "invoke_agent")


async def test_a_collector_that_is_down_never_fails_the_run_and_the_loss_is_counted(db_url, monkeypatch, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://user:secret@127.0.0.1:{port}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    orch = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        plan = reader_plan()
        plan.approval_rules = []
        plan.policy.default_tool_approval = "allow"
        plan.agents["bot"].tool_calls = plan.agents["bot"].tool_calls[:1]
        _, task = await start(orch, plan)
        assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
        assert orch.traces is not None
        with caplog.at_level(logging.WARNING, logger="loopdeck.telemetry"):
            await orch.close()
    finally:
        await orch.close()
    assert orch.traces.handed == 5 and orch.traces.delivered == 0  # two turns, a read, the attempt, the run
    text = caplog.text
    assert "5 of 5 spans were not delivered" in text and text.count("5 of 5") == 1
    assert f"http://127.0.0.1:{port}" in text
    assert "secret" not in text


def test_no_endpoint_means_no_traces_and_no_sdk_import():
    import subprocess
    import sys

    code = (
        "import sys, core; from core.telemetry import LiveTraces; "
        "assert LiveTraces.from_env({}) is None; "
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported the SDK'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
