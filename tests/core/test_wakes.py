"""On SQLite, a process waiting on another is woken by a datagram once the other commits (core.store.wakes)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import core.cluster.commands as commands
import core.orchestrator.reading as reading
from core import Delivery, Orchestrator, StepStatus, validate_plan
from core.store import COMMANDS_CHANNEL, EVENTS_CHANNEL, Notifier, Store, WriteBatch, notify, wakes
from core.store.notify import EVENTS_GAP_S

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
sock = wakes.WakeSocket(pathlib.Path(sys.argv[1]), 'cmd')
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


SUBMITTED_DRIVER = """
import asyncio, sys
from core import Orchestrator
async def main():
    async with await Orchestrator.open(sys.argv[1]) as orch:
        print((await orch.drive(sys.argv[2])).value, flush=True)
asyncio.run(main())
"""


async def test_a_follower_hears_of_events_committed_by_another_process_at_once(tmp_path, monkeypatch):
    """The follower re-reads the store every 120 s: only the wakes bring it the other process's events."""
    monkeypatch.setattr(reading, "FOLLOW_POLL_S", 120.0)
    db = tmp_path / "f.db"
    plan = {
        "agents": {"sim": {"kind": "sim", "latency_ms": 200}},
        "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}],
    }
    async with await Orchestrator.open(str(db)) as orch:
        run_id = await orch.create_run(validate_plan(plan))
        seen: list[str] = []

        async def follow() -> None:
            async for event in orch.follow(run_id):
                seen.append(event.type)
                if event.type == "run_ended":
                    return

        following = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)  # it has read the store and waits
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", SUBMITTED_DRIVER, str(db), run_id], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            await asyncio.wait_for(following, 30)
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait()
    assert out.strip() == "succeeded"
    assert seen.count("step_succeeded") == 2 and seen[-1] == "run_ended"


async def test_a_stream_of_commits_wakes_a_follower_at_most_once_per_gap_not_once_per_commit(tmp_path):
    """Each wake makes a follower read the store again: 200 commits' wakes a millisecond apart come as at most
    one per ``EVENTS_GAP_S`` (without the gap, one each)."""
    store = await Store.open(str(tmp_path / "b.db"))
    notifier = Notifier.for_url(store.url)
    woken = 0
    try:
        assert await notifier.listen(EVENTS_CHANNEL)
        (follower,) = wakes.wake_dir(store.url.split("///", 1)[1]).glob("*.ev.sock")

        async def count() -> None:
            nonlocal woken
            async with notifier.interest(EVENTS_CHANNEL, "r1") as committed:
                while True:
                    if await committed.wait(5):
                        woken += 1

        counting = asyncio.ensure_future(count())
        await asyncio.sleep(0)
        started = time.monotonic()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:  # as another process's commits send them
            for i in range(200):
                other.sendto(f"{EVENTS_CHANNEL} r1 {i}".encode(), str(follower))
                await asyncio.sleep(0.001)
        elapsed = time.monotonic() - started
        await asyncio.sleep(3 * EVENTS_GAP_S)
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
    finally:
        await notifier.close()
        await store.close()
    assert 1 <= woken <= elapsed / EVENTS_GAP_S + 2, (woken, elapsed)


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
        mine = wakes.WakeSocket(directory, wakes.OTHERS)
        wakes.send(directory, [(COMMANDS_CHANNEL, "run")], EVENTS_CHANNEL)
        assert left.exists()  # alive: it was sent to, not removed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wakes.send(directory, [(COMMANDS_CHANNEL, "run")], EVENTS_CHANNEL)
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
    sock = wakes.WakeSocket(directory, wakes.OTHERS)
    assert directory.stat().st_mode & 0o077 == 0
    sock.close()
    assert not directory.exists()
    shutil.rmtree(tmp)


async def test_a_wake_that_cannot_be_sent_never_fails_the_commit_it_follows(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(wakes, "send", broken)
    orch = await Orchestrator.open(str(tmp_path / "s.db"))
    try:
        run_id = await orch.create_run(validate_plan({"steps": [{"key": "a"}]}))  # (its commit notifies)
        assert await orch.drive(run_id) == "succeeded"
    finally:
        await orch.close()


async def test_a_wake_that_comes_while_its_holder_reads_is_kept_for_its_next_wait(tmp_path):
    """A driver reading its inbox, a sender reading its command: the wake meanwhile is not lost (it would cost
    a whole poll)."""
    store = await Store.open(str(tmp_path / "i.db"))
    notifier = Notifier.for_url(store.url)
    try:
        async with notifier.interest(COMMANDS_CHANNEL, "r1") as queued:
            (inbox,) = wakes.wake_dir(store.url.split("///", 1)[1]).glob("*.cmd.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
                other.sendto(f"{COMMANDS_CHANNEL} r1".encode(), str(inbox))
            await asyncio.sleep(0.1)  # it arrives while nobody waits (the holder is reading)
            assert await asyncio.wait_for(queued.wait(60), 10) is True
            assert await queued.wait(0.05) is False  # and it counts once
    finally:
        await notifier.close()
        await store.close()


def test_a_wake_directory_that_is_a_link_is_not_used(monkeypatch):
    """Another user may plant /tmp/loopdeck-<uid> as a link to a directory of this user's: it is refused."""
    tmp = Path(tempfile.mkdtemp(dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(wakes, "_dirs", {})
    private = tmp / "private"
    private.mkdir(mode=0o700)
    (tmp / f"loopdeck-{os.getuid()}").symlink_to(private)
    assert wakes.wake_dir(tmp / "x.db") is None
    shutil.rmtree(tmp)


async def test_the_dashboards_feed_keeps_what_was_committed_while_it_read(tmp_path):
    """``events_coming``: events published here, or committed by another process, while the feed reads the
    store are kept for its next wait (each would otherwise cost a 50 ms poll)."""
    db = tmp_path / "d.db"
    async with await Orchestrator.open(str(db)) as orch:
        run_id = await orch.create_run(validate_plan({"steps": [{"key": "a"}]}))
        async with orch.events_coming(run_id) as coming:
            (feed,) = wakes.wake_dir(db).glob("*.ev.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
                other.sendto(f"{EVENTS_CHANNEL} {run_id} 9".encode(), str(feed))
            await asyncio.sleep(0.1)  # committed elsewhere while nobody waits
            assert await asyncio.wait_for(coming.wait(60), 10) is True
            assert await coming.wait(0.05) is False
            await orch.cancel(run_id)  # published here while nobody waits
            assert await asyncio.wait_for(coming.wait(60), 10) is True


async def test_a_listener_that_could_not_bind_polls_a_while_then_binds_again(tmp_path, monkeypatch):
    """A bind that fails (the directory removed under it, a full disk) turns wakes off for ``REBIND_S``, not
    for good, and not into a bind attempt at every wait."""
    directory = wakes.wake_dir(tmp_path / "r.db")
    assert directory is not None
    monkeypatch.setattr(wakes, "REBIND_S", 0.5)
    real, attempts = wakes.WakeSocket, []

    def flaky(where, kind):
        attempts.append(kind)
        if len(attempts) == 1:
            raise OSError("No space left on device")
        return real(where, kind)

    monkeypatch.setattr(wakes, "WakeSocket", flaky)
    heard: list[tuple[str, str]] = []
    listener = wakes.Listener(directory, lambda channel, payload: heard.append((channel, payload)), 0.01)
    try:
        assert not listener.bound(wakes.OTHERS)  # failed: polling for now
        assert not listener.bound(wakes.OTHERS) and len(attempts) == 1  # no second try within REBIND_S
        await asyncio.sleep(0.55)
        assert listener.bound(wakes.OTHERS) and len(attempts) == 2  # then bound again
        wakes.send(directory, [(COMMANDS_CHANNEL, "run")], EVENTS_CHANNEL)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard == [(COMMANDS_CHANNEL, "run")]  # and woken
    finally:
        listener.close()


def test_the_process_sends_from_one_socket_whichever_threads_send_first(monkeypatch):
    """Wakes are sent from the event loop and from the writer's thread: both must make one socket, not two
    (one would leak)."""
    monkeypatch.setattr(wakes, "_sending", None)
    real, made = socket.socket, []

    def slow_socket(*args):  # a socket slow to make: every thread arrives while the first makes it
        time.sleep(0.02)
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(
        wakes, "socket", SimpleNamespace(socket=slow_socket, AF_UNIX=socket.AF_UNIX, SOCK_DGRAM=socket.SOCK_DGRAM)
    )
    start, got = threading.Barrier(4), []

    def send_first():
        start.wait()
        got.append(wakes._sender())

    threads = [threading.Thread(target=send_first) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(made) == 1 and len(got) == 4 and all(sock is made[0] for sock in got)
    finally:
        for sock in made:
            sock.close()
