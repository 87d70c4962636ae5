"""kill -9 at random moments of a run, then `loopdeck resume`: nothing lost, nothing completed runs again.

One trial per seed; each kills the headless driver at a different point
(after a random number of steps finished, plus a random fraction of a step).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter

import pytest

from tests.e2e.conftest import Cli

TRIALS = (11, 23, 37, 41)


@pytest.mark.parametrize("seed", TRIALS)
def test_kill_9_at_a_random_moment_then_resume_loses_nothing(cli: Cli, seed: int):
    rng = random.Random(seed)
    agents = {"sim": {"kind": "sim", "latency_ms": [40, 160], "tokens": [5, 5], "seed": seed, "fail_rate": 0.15}}
    steps = [
        {"key": f"s{i:02d}", "depends_on": [f"s{j:02d}" for j in (i - 1, i - 4) if j >= 0 and rng.random() < 0.7]}
        for i in range(24)
    ]
    path = cli.write_plan(
        {
            "agents": agents,
            "policy": {
                "max_concurrency": 4,
                "max_step_attempts": 6,
                "backoff": {"base_s": 0.05, "factor": 1, "max_s": 0.05},
            },
            "steps": steps,
        }
    )
    proc = cli.spawn("run", str(path), "--headless")
    kill_after = rng.randint(1, 18)
    try:
        cli.wait_until("SELECT COUNT(*) FROM steps WHERE status='succeeded'", lambda r: r and r[0][0] >= kill_after)
        time.sleep(rng.uniform(0, 0.15))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run_id = cli.query("SELECT id FROM runs")[0][0]
    before = {k: (s, a) for k, s, a in cli.query("SELECT key, status, attempts FROM steps")}
    events_before = cli.query("SELECT id, type, step_key FROM events ORDER BY id")

    result = cli("resume", run_id, "--headless", "--json")
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    assert snap["run"]["status"] == "succeeded"
    events = snap["events"]
    assert [(e["id"], e["type"], e["step"]) for e in events[: len(events_before)]] == [tuple(e) for e in events_before]
    succeeded = Counter(e["step"] for e in events if e["type"] == "step_succeeded")
    assert len(succeeded) == 24 and set(succeeded.values()) == {1}  # each step succeeded exactly once
    after = {s["key"]: s for s in snap["steps"]}
    for key, (status, attempts) in before.items():
        if status == "succeeded":  # completed before the kill: never ran again
            assert after[key]["attempts"] == attempts
        if status == "running":  # interrupted: counted, and retried
            assert after[key]["attempts"] >= attempts + 1
    started = Counter((e["step"], e["payload"]["attempt"]) for e in events if e["type"] == "step_started")
    assert set(started.values()) == {1}  # no attempt number was started twice
