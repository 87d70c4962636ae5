"""On SQLite, a process waiting on another is woken by a datagram once the other commits (core.store.wakes)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import core.cluster.commands as commands
from core import Delivery, Orchestrator, StepStatus, validate_plan
from core.store import COMMANDS_CHANNEL, Notifier, Store, WriteBatch, notify, wakes

ROOT = Path(__file__).resolve().parents[2]
DRIVER = """
import asyncio, sys
from core import Orchestrator
async def main():
    async with await Orchestrator.open(sys.argv[1], poll_s=120) as orch:  # it reads its inbox every 2 minutes
        print((await orch.drive(sys.argv[2])).value, flush=True)
asyncio.run(main())
"""
HOLDER = """
import pathlib, sys, time
from core.store import wakes
sock = wakes.WakeSocket(pathlib.Path(sys.argv[1]))
print(sock.path, flush=True)
time.sleep(120)
"""


async def test_an_approval_from_another_process_is_answered_at_once_by_a_driver_that_polls_rarely(
    tmp_path, monkeypatch
):
    """The driver polls its inbox every 120 s, the sender its answer every 60 s: only the wakes make this quick
    (without them the approval would time out, and its answer would be read only at the deadline)."""
    monkeypatch.setattr(commands, "SEND_POLL_S", 60.0)
    db = tmp_path / "w.db"
    plan = {"steps": [{"key": "gate", "approval": "required"}, {"key": "after", "depends_on": ["gate"]}]}
    async with await Orchestrator.open(str(db)) as orch:
        run_id = await orch.create_run(validate_plan(plan))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(db), run_id], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while (await orch.step(run_id, "gate")).status != StepStatus.WAITING_USER:
                assert time.monotonic() < deadline and proc.poll() is None, "the gate never waited"
                await asyncio.sleep(0.02)
            delivery = await asyncio.wait_for(orch.approve(run_id, "gate", timeout_s=30), 20)
            assert delivery == Delivery.REMOTE
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait()
    assert out.strip() == "succeeded"


async def test_a_commit_wakes_a_waiter_and_a_rolled_back_one_does_not(tmp_path):
    store = await Store.open(str(tmp_path / "n.db"))
    notifier = Notifier.for_url(store.url)
    try:
        assert await notifier.listen()

        def refused(conn):
            notify(conn, COMMANDS_CHANNEL, "r1")
            raise RuntimeError("refused")

        waiting = asyncio.ensure_future(notifier.wait(COMMANDS_CHANNEL, "r1", 1.0))
        await asyncio.sleep(0)
        with pytest.raises(Exception, match="refused"):
            await store.write(WriteBatch(extras=[refused]))
        assert await waiting is False  # rolled back: nobody was told

        waiting = asyncio.ensure_future(notifier.wait(COMMANDS_CHANNEL, "r1", 30))
        other = asyncio.ensure_future(notifier.wait(COMMANDS_CHANNEL, "r2", 0.5))
        await asyncio.sleep(0)
        await store.write(WriteBatch(extras=[lambda conn: notify(conn, COMMANDS_CHANNEL, "r1")]))
        assert await asyncio.wait_for(waiting, 20) is True
        assert await other is False  # a wake names its run: another run's waiter sleeps on
    finally:
        await notifier.close()
        await store.close()


def test_a_socket_left_by_a_killed_process_is_removed_by_the_next_sender(tmp_path):
    directory = wakes.wake_dir(tmp_path / "k.db")
    assert directory is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        left = Path(proc.stdout.readline().strip())
        assert left.exists()
        mine = wakes.WakeSocket(directory)
        wakes.send(directory, [(COMMANDS_CHANNEL, "run")])
        assert left.exists()  # alive: it was sent to, not removed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wakes.send(directory, [(COMMANDS_CHANNEL, "run")])
        assert not left.exists()  # killed: its socket refused, and was removed
        assert mine.received() == [(COMMANDS_CHANNEL, "run"), (COMMANDS_CHANNEL, "run")]
        mine.close()
        assert not directory.exists()  # the last one out removes the directory
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_wake_directory_others_can_write_to_is_not_used(monkeypatch):
    tmp = Path(tempfile.mkdtemp(dir="/tmp"))  # (a short path: a Unix socket's is limited to ~108 bytes)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(wakes, "_dirs", {})
    base = tmp / f"loopdeck-{os.getuid()}"
    base.mkdir(mode=0o777)
    base.chmod(0o777)
    assert wakes.wake_dir(tmp / "x.db") is None
    base.chmod(0o700)
    monkeypatch.setattr(wakes, "_dirs", {})
    directory = wakes.wake_dir(tmp / "x.db")
    assert directory is not None and directory.parent == base and not directory.exists()  # (made by a socket)
    sock = wakes.WakeSocket(directory)
    assert directory.stat().st_mode & 0o077 == 0
    sock.close()
    assert not directory.exists()
    shutil.rmtree(tmp)
