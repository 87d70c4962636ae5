"""The database is never lost or refused for no reason: racing openers, a kill -9 mid-migration, old damage."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import StoreError
from core.store import Store
from core.store.migrate import head_revision
from tests.e2e.conftest import ROOT, Cli

PLAN = {"agents": {"sim": {"kind": "sim", "latency_ms": 0}}, "steps": [{"key": "a"}]}
OPENERS = 10
KILL_TRIALS = 16
OPENER = """
import asyncio, pathlib, sys, time
from core import Orchestrator, validate_plan
ready, go, db = map(pathlib.Path, sys.argv[1:4])
ready.touch()
while not go.exists():
    time.sleep(0.001)
async def main():
    async with await Orchestrator.open(str(db)) as orch:
        await orch.create_run(validate_plan({"steps": [{"key": "a"}]}))
asyncio.run(main())
"""


def test_processes_opening_a_new_database_at_once_all_succeed(cli: Cli):
    """They once failed often (`table runs already exists`, `database is locked`): all open at the same instant."""
    db, go = cli.tmp / "fresh" / "new.db", cli.tmp / "go"
    ready = [cli.tmp / f"ready{i}" for i in range(OPENERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(r), str(go), str(db)],
            env=cli.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # every process has imported loopdeck: they open the new file together
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    assert [code for code, _ in results] == [0] * OPENERS, [err[-300:] for code, err in results if code]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == OPENERS
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]


def test_a_kill_9_during_the_first_open_never_leaves_a_database_that_is_refused(cli: Cli):
    """Killed at random moments of its first open, the database is either untouched or migrated whole.

    The migration's window is short (~10 ms here), so trials go on, up to ``KILL_TRIALS``, until at least
    one kill has landed before its end: a fixed few once all landed after it on a faster machine.
    """
    path = cli.write_plan(PLAN)
    rng = random.Random(7)
    outcomes: list[str | None] = []
    for trial in range(KILL_TRIALS):
        if len(outcomes) >= 4 and any(o != head_revision() for o in outcomes):
            break
        db = cli.tmp / f"trial{trial}.db"
        proc = subprocess.Popen(
            cli.argv("--db", str(db), "submit", str(path)),
            env=cli.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not db.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.015))  # somewhere in the migration, or just after it
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        outcomes.append(_revision(db))
        again = cli("--db", str(db), "submit", str(path))  # the next open migrates what the crash left
        assert again.returncode == 0, (trial, again.stderr)
        with sqlite3.connect(db) as conn:  # the run it submitted is there, in a database at the newest schema
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 1
    assert any(o != head_revision() for o in outcomes), outcomes  # at least one kill landed before the end


def _revision(db: Path) -> str | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return row[0] if row else None
    except sqlite3.Error:
        return None


def _old_first_open_crash(db: Path, runs: int = 0) -> None:
    """What an older loopdeck left when killed in its first open: the first schema's tables, no revision."""
    from sqlalchemy import create_engine

    from core.store import migrate

    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        migrate.upgrade(conn, "0001")
    engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM alembic_version")
        for i in range(runs):
            conn.execute(
                "INSERT INTO runs (id, goal, status, plan_json, prompt_tokens, completion_tokens, created_at, "
                "updated_at) VALUES (?, 'g', 'running', '{}', 0, 0, 0, 0)",
                (f"r{i}",),
            )


def test_tables_without_a_revision_left_by_an_old_crash_are_rebuilt_when_empty(tmp_path):
    db = tmp_path / "damaged.db"
    _old_first_open_crash(db)

    async def scenario() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{db}")
        await store.close()

    asyncio.run(scenario())
    assert _revision(db) == head_revision()


def test_tables_without_a_revision_that_hold_runs_are_refused_not_guessed_at(tmp_path):
    db = tmp_path / "foreign.db"
    _old_first_open_crash(db, runs=2)

    async def scenario() -> None:
        await Store.open(f"sqlite+aiosqlite:///{db}")

    with pytest.raises(
        StoreError, match=r"not a loopdeck database: it holds tables .* but no loopdeck schema revision"
    ):
        asyncio.run(scenario())
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2  # untouched


def test_a_database_that_is_not_loopdecks_is_refused_untouched_even_with_a_table_loopdeck_would_use(cli: Cli):
    """An unversioned file's tables were dropped when their names were on loopdeck's list."""
    db = cli.tmp / "theirs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
        conn.executemany("INSERT INTO events (what) VALUES (?)", [("a",), ("b",)])
    for argv in (["runs"], ["submit", str(cli.write_plan(PLAN))]):
        result = cli("--db", str(db), *argv)
        assert result.returncode == 2 and "not a loopdeck database" in result.stderr, result.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["events"]


def test_a_read_only_command_never_builds_a_schema_in_an_empty_file(cli: Cli):
    db = cli.tmp / "empty.db"
    db.touch()
    result = cli("--db", str(db), "runs")
    assert result.returncode == 2 and "no loopdeck schema yet" in result.stderr
    assert db.stat().st_size == 0
