"""The controller: work-conserving scheduling, limits, retries, failures, stale results."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time

import pytest

from core import RunStatus, TransitionError
from tests.conftest import events_of, plan
from tests.core.helpers import running_profile, start, wait_event

ON_POSTGRES = True  # every test here runs on SQLite and on PostgreSQL (tests/conftest.py)


async def test_a_run_of_independent_and_chained_steps_succeeds(orch):
    p = plan(
        [
            {"key": "a"},
            {"key": "b", "depends_on": ["a"]},
            {"key": "c", "depends_on": ["a"]},
            {"key": "d", "depends_on": ["b", "c"]},
        ]
    )
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["status"] for s in snap["steps"]] == ["succeeded"] * 4
    events = await events_of(orch, run_id)
    order = [e.step_key for e in events if e.type == "step_succeeded"]
    assert order.index("a") < order.index("b") < order.index("d") and order.index("c") < order.index("d")
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[0].type == "run_created" and events[-1].type == "run_ended"


async def test_ready_steps_start_in_plan_order_or_with_critical_path_the_longest_chain_first(orch):
    steps = [{"key": "a"}, {"key": "b"}, {"key": "c", "depends_on": ["b"]}, {"key": "d", "depends_on": ["c"]}]
    for order, expected in (({}, ["a", "b", "c", "d"]), ({"start_order": "critical_path"}, ["b", "c", "a", "d"])):
        run_id = await orch.create_run(plan(steps, max_concurrency=1, **order))
        assert await orch.drive(run_id) == RunStatus.SUCCEEDED
        assert [e.step_key for e in await events_of(orch, run_id) if e.type == "step_started"] == expected


async def test_a_ready_step_never_waits_for_unrelated_slow_steps(orch):
    agents = {"slow": {"kind": "sim", "latency_ms": 600}, "fast": {"kind": "sim", "latency_ms": 10}}
    p = plan(
        [
            {"key": "slow", "agent": "slow"},
            {"key": "f1", "agent": "fast"},
            {"key": "f2", "agent": "fast", "depends_on": ["f1"]},
            {"key": "f3", "agent": "fast", "depends_on": ["f2"]},
        ],
        agents=agents,
        max_concurrency=2,
    )
    run_id = await orch.create_run(p)
    await orch.drive(run_id)
    done = [e.step_key for e in await events_of(orch, run_id) if e.type == "step_succeeded"]
    # no batch barrier: the whole fast chain finishes while the slow step still runs
    assert done == ["f1", "f2", "f3", "slow"]


async def test_a_retry_backoff_never_delays_other_steps(orch):
    agents = {"flaky": {"kind": "sim", "latency_ms": 0, "fail_times": 1}, "ok": {"kind": "sim", "latency_ms": 20}}
    p = validate_with_backoff(
        agents,
        [
            {"key": "flaky", "agent": "flaky"},
            {"key": "o1", "agent": "ok"},
            {"key": "o2", "agent": "ok", "depends_on": ["o1"]},
            {"key": "o3", "agent": "ok", "depends_on": ["o2"]},
        ],
    )
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    events = await events_of(orch, run_id)
    retry_started = [e for e in events if e.type == "step_started" and e.step_key == "flaky"][1]
    o3_done = next(e for e in events if e.type == "step_succeeded" and e.step_key == "o3")
    assert o3_done.id < retry_started.id  # the chain ran to its end during flaky's 0.5 s backoff


def validate_with_backoff(agents, steps):
    from core import validate_plan

    return validate_plan(
        {
            "agents": agents,
            "steps": steps,
            "policy": {"max_concurrency": 2, "backoff": {"base_s": 0.5, "jitter": False}},
        }
    )


async def test_run_and_agent_concurrency_limits_are_never_exceeded(orch):
    agents = {
        "a": {"kind": "sim", "latency_ms": [1, 15], "max_concurrency": 2},
        "b": {"kind": "sim", "latency_ms": [1, 15]},
    }
    steps = [{"key": f"s{i}", "agent": "a" if i % 2 else "b"} for i in range(40)]
    run_id = await orch.create_run(plan(steps, agents=agents, max_concurrency=3))
    await orch.drive(run_id)
    peak, by_agent = running_profile(await events_of(orch, run_id))
    assert peak == 3  # reached, never passed
    assert by_agent["a"] == 2


async def test_a_permanent_failure_skips_dependents_while_other_branches_finish(orch):
    agents = {"bad": {"kind": "sim", "latency_ms": 0, "fail_rate": 1.0}, "sim": {"kind": "sim", "latency_ms": 0}}
    p = plan(
        [
            {"key": "bad", "agent": "bad"},
            {"key": "after_bad", "agent": "sim", "depends_on": ["bad"]},
            {"key": "lenient", "agent": "sim", "depends_on": ["after_bad"], "dependency_policy": "allow_skipped"},
            {"key": "other", "agent": "sim"},
        ],
        agents=agents,
        max_step_attempts=2,
    )
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    by_key = {s["key"]: s for s in snap["steps"]}
    assert by_key["bad"]["status"] == "failed" and by_key["bad"]["attempts"] == 2
    assert by_key["after_bad"]["status"] == "skipped" and by_key["after_bad"]["error"] == 'dependency "bad" failed'
    assert by_key["lenient"]["status"] == "succeeded"  # allow_skipped: a skipped dependency is fine
    assert by_key["other"]["status"] == "succeeded"
    assert snap["run"]["reason"].startswith('step "bad" failed')


async def test_max_iterations_fails_the_run_with_that_reason(orch):
    p = plan([{"key": f"s{i}"} for i in range(10)], max_iterations=4, max_concurrency=1)
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["reason"].startswith("max_iterations (4) reached")
    assert sum(s["attempts"] for s in snap["steps"]) == 4


async def test_a_step_timeout_fails_the_attempt_and_retries(orch):
    agents = {"slow": {"kind": "sim", "latency_ms": 2000}}
    p = plan([{"key": "s", "agent": "slow", "timeout_s": 0.05, "max_attempts": 2}], agents=agents)
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.FAILED
    snap = await orch.snapshot(run_id)
    assert snap["steps"][0]["attempts"] == 2
    assert snap["steps"][0]["error"] == "timed out after 0.05s"


async def test_a_late_result_of_a_timed_out_attempt_is_recorded_and_never_applied(orch, tmp_path, monkeypatch):
    (tmp_path / "late_agent.py").write_text(
        textwrap.dedent("""
        import time
        def work(input, context, step):
            if step["attempt"] == 1:
                time.sleep(0.4)          # a sync function cannot be interrupted
                return "stale output"
            return "fresh output"
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # "other" keeps the run alive past the late result (a run that has ended waits for no late result)
    agents = {"py": {"kind": "python", "call": "late_agent:work"}, "sim": {"kind": "sim", "latency_ms": 1500}}
    p = plan([{"key": "s", "agent": "py", "timeout_s": 0.1}, {"key": "other", "agent": "sim"}], agents=agents)
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert snap["steps"][0]["output"] == "fresh output"
    stale = [e for e in snap["events"] if e["type"] == "step_result_stale"]
    assert len(stale) == 1 and stale[0]["payload"]["attempt"] == 1 and stale[0]["payload"]["current_attempt"] == 2


async def test_a_timed_out_function_that_never_returns_does_not_keep_the_run_alive(orch, tmp_path, monkeypatch):
    (tmp_path / "stuck_agent.py").write_text(
        textwrap.dedent("""
        import threading
        def work(input, context, step):
            threading.Event().wait()     # never returns, and a thread cannot be stopped
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    p = plan(
        [{"key": "s", "agent": "py", "timeout_s": 0.2, "max_attempts": 1}],
        agents={"py": {"kind": "python", "call": "stuck_agent:work"}},
    )
    run_id = await orch.create_run(p)
    started = time.monotonic()
    assert await asyncio.wait_for(orch.drive(run_id), 10) == RunStatus.FAILED
    assert time.monotonic() - started < 8  # the run ends with its timeout, not with the function
    snap = await orch.snapshot(run_id)
    assert snap["steps"][0]["error"] == "timed out after 0.2s"
    pool = [t for t in threading.enumerate() if t.name.startswith("loopdeck-python-")]
    assert pool and all(t.daemon for t in pool)  # left behind in a daemon thread: it cannot hold the process either


async def test_cancel_stops_running_steps_and_ends_the_run_canceled(orch):
    agents = {"slow": {"kind": "sim", "latency_ms": 5000}}
    run_id, task = await start(
        orch, plan([{"key": "a", "agent": "slow"}, {"key": "b", "agent": "slow", "depends_on": ["a"]}], agents=agents)
    )
    await wait_event(orch, run_id, "step_started", "a")
    await orch.cancel(run_id, user="ops", reason="wrong plan")
    assert await asyncio.wait_for(task, 5) == RunStatus.CANCELED
    snap = await orch.snapshot(run_id)
    assert snap["run"]["reason"] == "canceled by ops: wrong plan"
    assert [s["status"] for s in snap["steps"]] == ["skipped", "skipped"]
    with pytest.raises(TransitionError, match="is canceled"):
        await orch.cancel(run_id)


async def test_usage_from_executors_is_totalled_per_step_and_run(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [100, 20], "fail_times": 1}}
    run_id = await orch.create_run(plan([{"key": "a"}, {"key": "b"}], agents=agents))
    await orch.drive(run_id)
    snap = await orch.snapshot(run_id)
    # every attempt spends tokens, failed ones included
    assert [s["tokens"] for s in snap["steps"]] == [{"prompt": 200, "completion": 40, "total": 240}] * 2
    assert snap["run"]["tokens"] == {"prompt": 400, "completion": 80, "total": 480}


async def test_shell_agent_runs_argv_without_a_shell_and_fails_with_stderr_tail(orch):
    agents = {"sh": {"kind": "shell"}}
    p = plan(
        [
            {"key": "echo", "agent": "sh", "input": {"argv": ["echo", "$HOME;", "ok"]}},
            {
                "key": "bad",
                "agent": "sh",
                "input": {"argv": [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]},
                "max_attempts": 1,
            },
        ],
        agents=agents,
    )
    run_id = await orch.create_run(p)
    await orch.drive(run_id)
    steps = {s["key"]: s for s in (await orch.snapshot(run_id))["steps"]}
    assert steps["echo"]["output"] == "$HOME; ok\n"  # literal: no shell expanded it
    assert steps["bad"]["error"] == "exit code 3: boom"


async def test_shell_timeout_kills_the_process(orch, tmp_path):
    marker = tmp_path / "finished"
    agents = {"sh": {"kind": "shell", "timeout_s": 0.2}}
    code = f"import time, pathlib; time.sleep(1); pathlib.Path({str(marker)!r}).write_text('x')"
    run_id = await orch.create_run(
        plan(
            [{"key": "s", "agent": "sh", "input": {"argv": [sys.executable, "-c", code]}, "max_attempts": 1}],
            agents=agents,
        )
    )
    await orch.drive(run_id)
    step = (await orch.snapshot(run_id))["steps"][0]
    assert step["error"] == "timed out after 0.2s; the process was killed"
    await asyncio.sleep(1.3)  # past the moment it would have written, had it lived
    assert not marker.exists()


async def test_python_agent_receives_input_context_and_step_and_reports_usage(orch, tmp_path, monkeypatch):
    (tmp_path / "my_agent.py").write_text(
        textwrap.dedent("""
        async def first(input, context, step):
            return {"n": input["n"] * 2}, {"prompt_tokens": 7, "completion_tokens": 3}
        def second(input, context, step):
            return {"saw": [c["key"] for c in context], "attempt": step["attempt"], "upstream": context[0]["output"]}
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agents = {"one": {"kind": "python", "call": "my_agent:first"}, "two": {"kind": "python", "call": "my_agent:second"}}
    p = plan(
        [{"key": "a", "agent": "one", "input": {"n": 21}}, {"key": "b", "agent": "two", "depends_on": ["a"]}],
        agents=agents,
    )
    run_id = await orch.create_run(p)
    assert await orch.drive(run_id) == RunStatus.SUCCEEDED
    steps = {s["key"]: s for s in (await orch.snapshot(run_id))["steps"]}
    assert steps["a"]["output"] == {"n": 42} and steps["a"]["tokens"]["total"] == 10
    assert steps["b"]["output"] == {"saw": ["a"], "attempt": 1, "upstream": '{"n": 42}'}
