"""Crash safety: kill -9 the driving process mid-run, then `loopdeck resume`."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter


def test_kill_9_mid_run_then_resume_loses_nothing_and_reruns_nothing_completed(cli):
    agents = {"sim": {"kind": "sim", "latency_ms": [100, 250], "tokens": [10, 10]}}
    steps = [{"key": f"s{i:02d}", "depends_on": [f"s{i - 3:02d}"] if i >= 3 else []} for i in range(30)]
    path = cli.write_plan({"agents": agents, "policy": {"max_concurrency": 3}, "steps": steps})
    proc = cli.spawn("run", str(path), "--headless")
    try:
        cli.wait_until("SELECT COUNT(*) FROM steps WHERE status='succeeded'", lambda r: r and r[0][0] >= 8)
        cli.wait_until("SELECT COUNT(*) FROM steps WHERE status='running'", lambda r: r and r[0][0] >= 1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run_id = cli.query("SELECT id FROM runs")[0][0]
    before = dict((k, (s, a)) for k, s, a in cli.query("SELECT key, status, attempts FROM steps"))
    events_before = cli.query("SELECT id, type, step_key FROM events ORDER BY id")
    done_before = {k for k, (s, _) in before.items() if s == "succeeded"}
    running_before = {k for k, (s, _) in before.items() if s == "running"}
    assert done_before and running_before

    # nobody drives it now, and every reader says so (with the dead driver's pid)
    shown = cli("show", run_id)
    assert f"driver gone — pid {proc.pid} on host" in shown.stdout and "has exited" in shown.stdout, shown.stdout
    assert f"loopdeck resume {run_id}" in shown.stdout
    assert cli.show(run_id)["run"]["driver"]["state"] == "gone"
    listed = json.loads(cli("runs", "--json").stdout)
    assert listed[0]["driver"]["pid"] == proc.pid and listed[0]["driver"]["state"] == "gone"
    assert "running, driver gone" in cli("runs").stdout

    result = cli("resume", run_id, "--headless", "--json")
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    assert snap["run"]["status"] == "succeeded" and snap["run"]["driver"] is None  # ended: nobody needs to drive it
    steps_after = {s["key"]: s for s in snap["steps"]}
    events = snap["events"]

    # no event lost: everything committed before the kill is still there, unchanged
    assert [(e["id"], e["type"], e["step"]) for e in events[: len(events_before)]] == [tuple(e) for e in events_before]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    succeeded = Counter(e["step"] for e in events if e["type"] == "step_succeeded")
    started = Counter(e["step"] for e in events if e["type"] == "step_started")
    assert all(n == 1 for n in succeeded.values()) and len(succeeded) == 30
    for key in done_before:  # completed steps never ran again
        assert started[key] == before[key][1] and steps_after[key]["attempts"] == before[key][1]
    for key in running_before:  # interrupted attempts were counted and retried
        assert steps_after[key]["attempts"] == before[key][1] + 1
        assert any(e["type"] == "step_requeued" and e["step"] == key for e in events)
    assert any(e["type"] == "run_resumed" for e in events)
    interrupted = {(sp["step"], sp["attempt"]) for sp in snap["spans"] if sp["status"] == "interrupted"}
    assert interrupted == {(key, before[key][1]) for key in running_before}  # the lost attempts have spans too


def test_resume_refuses_while_the_driver_lives_and_takes_over_once_it_is_dead(cli):
    agents = {"sim": {"kind": "sim", "latency_ms": 300}}
    path = cli.write_plan(
        {"agents": agents, "steps": [{"key": f"s{i}", "depends_on": [f"s{i - 1}"] if i else []} for i in range(6)]}
    )
    proc = cli.spawn("run", str(path), "--headless")
    try:
        cli.wait_until("SELECT COUNT(*) FROM steps WHERE status='running'", lambda r: r and r[0][0] >= 1)
        run_id = cli.query("SELECT id FROM runs")[0][0]
        result = cli("resume", run_id, "--headless")
        assert result.returncode == 1
        assert f"is being driven by pid {proc.pid} on this machine" in result.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    result = cli("resume", run_id, "--headless")
    assert result.returncode == 0, result.stderr
