"""Shared fixtures: a real SQLite file per test, an orchestrator on it, and plan helpers."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core import Orchestrator, validate_plan
from core.model.events import Event

PG_ENV = "LOOPDECK_TEST_PG"  # e.g. postgresql+asyncpg://postgres@127.0.0.1:55432/postgres (.ci/postgres.sh prints it)
# one template per xdist worker: workers creating the same template at once would drop it under each other
PG_TEMPLATE = "loopdeck_test_template_" + os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(autouse=True, scope="session")
def no_personal_configuration(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The suite never reads the configuration of whoever runs it (~/.config/loopdeck/config.toml): every test,
    and every CLI it starts (which inherits the environment), sees an empty configuration directory."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    os.environ.pop("LOOPDECK_CONFIG", None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set ``ON_POSTGRES = True`` run every test that uses ``db_url`` on SQLite and on PostgreSQL."""
    if "db_url" in metafunc.fixturenames and getattr(metafunc.module, "ON_POSTGRES", False):
        metafunc.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest schema, copied for each test (a copy takes 3 ms, migrating a new
    file 45 ms: the suite's SQLite tests were spending some 15 s creating the same empty database)."""
    import asyncio

    from core.store import Store

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def create() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{path}")
        await store.close()

    asyncio.run(create())
    return path


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "loopdeck.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'loopdeck.db'}"


def _pg_server_url() -> str:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    why = f"PostgreSQL tests need ${PG_ENV} (bash .ci/postgres.sh starts a server and prints the URL)"
    if os.environ.get("CI"):
        pytest.fail(why + "; with CI=true a missing server is a failure", pytrace=False)
    pytest.skip(why)


async def _admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> str:
    """A database migrated to the newest schema, copied for each test (CREATE DATABASE ... TEMPLATE)."""
    import asyncio

    from core.store import Store

    server = _pg_server_url()
    template_url = server.rsplit("/", 1)[0] + f"/{PG_TEMPLATE}"

    async def build() -> None:
        await _admin(server, f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {PG_TEMPLATE}")
        store = await Store.open(template_url)
        await store.close()

    asyncio.run(build())
    return server


@pytest.fixture
async def pg_url(pg_template: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"loopdeck_t_{uuid.uuid4().hex[:12]}"
    await _admin(pg_template, f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}")
    try:
        yield pg_template.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _admin(pg_template, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
    return validate_plan(
        {
            "goal": "test",
            "agents": agents or {"sim": {"kind": "sim", "latency_ms": 0}},
            "policy": {"backoff": {"base_s": 0.01, "factor": 1, "max_s": 0.01, "jitter": False}, **policy},
            "steps": steps,
        }
    )


async def events_of(orch: Orchestrator, run_id: str) -> list[Event]:
    return await orch.store.events_since(run_id, 0)


def types_for(events: list[Event], key: str) -> list[str]:
    return [e.type for e in events if e.step_key == key]


async def drive_until(orch: Orchestrator, run_id: str, event_type: str = "run_waiting") -> None:
    """Drive a run until it emits ``event_type`` (by default: it waits for an operator), then stop driving it;
    what waits stays open in the store, and nobody drives the run."""
    driving = asyncio.create_task(orch.drive(run_id))
    async for event in orch.follow(run_id):
        if event.type == event_type:
            break
    driving.cancel()
    await asyncio.gather(driving, return_exceptions=True)
