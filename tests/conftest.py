"""Shared fixtures: a real SQLite file per test, an orchestrator on it, and plan helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core import Orchestrator, validate_plan
from core.events import Event


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'loopdeck.db'}"


@pytest.fixture
def server():
    """A real chat-completions server on loopback (tests/chat_server.py), stopped after the test."""
    from tests.chat_server import ChatServer

    srv = ChatServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def orch(db_url: str):
    orchestrator = await Orchestrator.open(db_url, user="tester", lease_ttl_s=3.0, poll_s=0.05)
    try:
        yield orchestrator
    finally:
        await orchestrator.close()


def plan(steps: list[dict[str, Any]], agents: dict[str, Any] | None = None, **policy: Any):
    """A validated plan; agents default to one zero-latency sim agent."""
    return validate_plan({
        "goal": "test",
        "agents": agents or {"sim": {"kind": "sim", "latency_ms": 0}},
        "policy": {"backoff": {"base_s": 0.01, "factor": 1, "max_s": 0.01, "jitter": False}, **policy},
        "steps": steps,
    })


async def events_of(orch: Orchestrator, run_id: str) -> list[Event]:
    return await orch.store.events_since(run_id, 0)


def types_for(events: list[Event], key: str) -> list[str]:
    return [e.type for e in events if e.step_key == key]
