"""Notifications through Apprise to a real webhook receiver on loopback: what waits, what ended, what failed."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import Orchestrator, PlanError, RunStatus, validate_plan
from core.notifications import Notifications
from tests.core.helpers import start, wait_event


class Hooks:
    """A webhook receiver: every JSON body posted to it, with the path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hooks.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self._server.server_address[1]}/{path}"

    def titles(self, path: str) -> list[str]:
        return [body["title"] for p, body in self.received if p == f"/{path}"]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hooks():
    rx = Hooks()
    try:
        yield rx
    finally:
        rx.stop()


def gated(notify: list) -> object:
    return validate_plan(
        {
            "goal": "ship it",
            "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
            "policy": {"notify": notify},
            "steps": [{"key": "draft"}, {"key": "publish", "depends_on": ["draft"], "approval": "required"}],
        }
    )


async def test_a_waiting_gate_and_the_end_of_the_run_reach_each_target_it_asked_for(db_url, hooks, monkeypatch):
    monkeypatch.setenv("ALL_HOOK", hooks.url("all"))
    monkeypatch.setenv("END_HOOK", hooks.url("end"))
    monkeypatch.setenv("LOOPDECK_NOTIFY", hooks.url("env"))  # every run's
    plan = gated([{"url": "${ALL_HOOK}"}, {"url": "${END_HOOK}", "events": ["run_ended"]}])
    orch = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        run_id, task = await start(orch, plan)
        await wait_event(orch, run_id, "notification_sent")
        (_, waiting), *_ = hooks.received
        assert waiting["title"] == 'loopdeck: step "publish" waits for approval'
        assert f"loopdeck approve {run_id} publish" in waiting["message"]  # the exact line that answers it
        await orch.approve(run_id, "publish", user="ann")
        assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
        await orch.close()  # delivers what is still queued
        async with await Orchestrator.open(db_url) as reader:
            sent = [e["payload"] for e in (await reader.snapshot(run_id))["events"] if e["type"] == "notification_sent"]
    finally:
        await orch.close()
    ended = f"loopdeck: run {run_id} succeeded"
    assert hooks.titles("all") == [waiting["title"], ended]
    assert hooks.titles("env") == [waiting["title"], ended]
    assert hooks.titles("end") == [ended]  # it asked for run_ended only
    assert sorted((p["event"], p["target"]) for p in sent) == sorted(
        [("gate_waiting", "json://127.0.0.1")] * 2 + [("run_ended", "json://127.0.0.1")] * 3
    )


async def test_a_target_that_is_down_never_fails_the_run_and_its_url_is_never_shown(db_url, monkeypatch, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HOOK", f"json://alice:s3cret@127.0.0.1:{port}/t0ken-path")
    monkeypatch.setattr(Notifications, "backoff_s", 0.01)
    plan = gated([{"url": "${HOOK}", "events": ["run_ended"]}])
    plan.steps[1].approval = "auto"
    orch = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        run_id, task = await start(orch, plan)
        assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
        failed = await wait_event(orch, run_id, "notification_failed")
        text = json.dumps((await orch.snapshot(run_id))["events"]) + caplog.text
    finally:
        await orch.close()
    assert failed.payload["attempts"] == 3 and failed.payload["target"] == "json://127.0.0.1"
    assert "did not accept it" in failed.payload["error"]
    assert "s3cret" not in text and "t0ken" not in text and "alice" not in text


def test_a_plan_that_writes_a_notification_url_is_refused_without_echoing_it():
    with pytest.raises(PlanError) as caught:
        gated([{"url": "slack://T000/B000/s3cret"}])
    assert "write ${NAME}" in str(caught.value) and "s3cret" not in str(caught.value)


def test_each_happening_has_its_message_and_the_rest_none():
    from core.notifications import message_for

    call = message_for("R1", "", "tool_call_waiting", "tidy", {"call": "tidy.1.1.0", "tool": "fs:delete"})
    assert call is not None and call.kind == "gate_waiting"
    assert "loopdeck approve-call R1 tidy.1.1.0\n" in call.body and "--reject --reason TEXT" in call.body
    paused = message_for("R1", "g", "budget_exhausted", None, {"reason": "token budget 10 exhausted"})
    assert paused is not None and paused.kind == "budget_paused" and "token budget 10 exhausted" in paused.body
    opened = message_for("R1", "g", "breaker_changed", None, {"agent": "api", "to": "open", "reason": "5 failures"})
    assert opened is not None and opened.kind == "breaker_opened" and "api: 5 failures" in opened.body
    assert message_for("R1", "g", "breaker_changed", None, {"agent": "api", "to": "closed"}) is None
    assert message_for("R1", "g", "step_succeeded", "a", {}) is None
    late = message_for("R1", "g", "approval_timed_out", "pub", {"gate": "step", "deadline": "T", "action": "reject"})
    assert late is not None and late.kind == "approval_timed_out" and "nobody answered by T: reject" in late.body
