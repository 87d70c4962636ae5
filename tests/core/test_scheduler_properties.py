"""Property tests of the scheduler's invariants over random DAGs with random failures.

For any plan: dependencies are respected, the run's and each agent's
concurrency limits hold, every step ends in a final status, no step is
attempted more often than allowed, and an open breaker admits nothing but
one probe at a time.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import Orchestrator, RunStatus, validate_plan
from tests.core.helpers import running_profile

FINAL = {"succeeded", "failed", "skipped", "rejected"}


@st.composite
def random_plans(draw):
    n = draw(st.integers(1, 25))
    breaker = {"failure_threshold": draw(st.integers(1, 6)), "cooldown_s": 0.005}
    agents = {
        "a": {
            "kind": "sim",
            "latency_ms": [0, 3],
            "fail_rate": draw(st.sampled_from([0, 0.2, 0.5])),
            "seed": draw(st.integers(0, 1000)),
            "max_concurrency": draw(st.integers(1, 3)),
            "breaker": breaker,
            "alternatives": draw(st.sampled_from([[], ["b"]])),
        },
        "b": {
            "kind": "sim",
            "latency_ms": [0, 3],
            "fail_rate": draw(st.sampled_from([0, 0.3])),
            "seed": draw(st.integers(0, 1000)),
            "breaker": breaker,
        },
    }
    steps = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        steps.append(
            {
                "key": f"s{i}",
                "agent": draw(st.sampled_from(["a", "b"])),
                "depends_on": [f"s{d}" for d in deps],
                "dependency_policy": draw(st.sampled_from(["all_succeeded", "allow_skipped"])),
                "max_attempts": draw(st.one_of(st.none(), st.integers(1, 3))),
            }
        )
    order = draw(st.permutations(range(n)))  # plan order need not be topological
    return {
        "agents": agents,
        "policy": {
            "max_concurrency": draw(st.integers(1, 4)),
            "start_order": draw(st.sampled_from(["plan", "critical_path"])),
            "max_step_attempts": 2,
            "backoff": {"base_s": 0.001, "factor": 1, "max_s": 0.001, "jitter": False},
        },
        "steps": [steps[i] for i in order],
    }


async def _drive(data: dict) -> tuple[dict, list]:
    with tempfile.TemporaryDirectory() as tmp:
        async with await Orchestrator.open(str(Path(tmp) / "p.db"), lease_ttl_s=5, poll_s=1) as orch:
            run_id = await orch.create_run(validate_plan(data))
            status = await orch.drive(run_id)
            assert status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
            return await orch.snapshot(run_id), await orch.store.events_since(run_id)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_plans())
def test_scheduler_invariants_hold_on_random_dags(data):
    snap, events = asyncio.run(_drive(data))
    spec = {s["key"]: s for s in data["steps"]}
    steps = {s["key"]: s for s in snap["steps"]}

    # every step ends
    assert all(s["status"] in FINAL for s in steps.values())

    # attempts never exceed the maximum
    for key, s in steps.items():
        assert s["attempts"] <= (spec[key]["max_attempts"] or data["policy"]["max_step_attempts"])

    # dependencies respected: a step starts only after each dependency ended well enough
    ended: dict[str, str] = {}
    for e in events:
        if e.type == "step_succeeded":
            ended[e.step_key] = "succeeded"
        elif e.type in ("step_failed", "step_skipped"):
            ended[e.step_key] = e.type.removeprefix("step_")
        elif e.type == "step_started":
            s = spec[e.step_key]
            for dep in s["depends_on"]:
                ok = {"succeeded", "skipped"} if s["dependency_policy"] == "allow_skipped" else {"succeeded"}
                assert ended.get(dep) in ok, f"{e.step_key} started before {dep} ended well"

    # a step that never ran was skipped because a dependency could not satisfy it
    for s in steps.values():
        if s["status"] == "skipped":
            assert s["attempts"] == 0

    # limits respected
    peak, by_agent = running_profile(events)
    assert peak <= data["policy"]["max_concurrency"]
    assert by_agent.get("a", 0) <= data["agents"]["a"]["max_concurrency"]

    # while a breaker is open nothing starts on its agent; half-open lets one probe at a time
    state = {"a": "closed", "b": "closed"}
    probes: dict[str, int] = {"a": 0, "b": 0}
    for e in events:
        if e.type == "breaker_changed":
            state[e.payload["agent"]] = e.payload["to"]
        elif e.type == "step_started":
            agent = e.payload["agent"]
            assert state[agent] != "open", f"{e.step_key} started on {agent} while its breaker was open"
            if e.payload.get("probe"):
                assert state[agent] == "half_open" and probes[agent] == 0
                probes[agent] += 1
        elif e.type in ("step_succeeded", "step_failed", "step_retrying") and any(probes.values()):
            probes = {k: 0 for k in probes}  # a probe's outcome moves the breaker on (checked by the next start)

    # run verdict agrees with the steps
    failed = any(s["status"] == "failed" for s in steps.values())
    assert snap["run"]["status"] == ("failed" if failed else "succeeded")
