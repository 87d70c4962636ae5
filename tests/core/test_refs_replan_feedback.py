"""Input references, replanning, feedback, spans and their OTLP export."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from core import PlanError, RunStatus, TransitionError, validate_plan
from core.model.refs import RefError, resolve
from tests.conftest import events_of, plan
from tests.core.helpers import start, wait_event


def test_resolve_whole_values_text_and_json_paths():
    outputs = {"fetch": {"items": [{"name": "alpha"}, {"name": "beta"}]}, "raw": '{"n": 3}', "text": "hello"}
    assert resolve("{{steps.fetch.output.items[1].name}}", outputs) == "beta"
    assert resolve({"all": "{{ steps.fetch.output.items }}"}, outputs) == {"all": [{"name": "alpha"}, {"name": "beta"}]}
    assert resolve("say {{steps.text.output}} x{{steps.raw.output.n}}", outputs) == "say hello x3"
    with pytest.raises(RefError, match=r"steps.fetch.output.items has 2 items, so \[5\] does not exist"):
        resolve("{{steps.fetch.output.items[5]}}", outputs)
    with pytest.raises(RefError, match="has no field 'nope'; it has items"):
        resolve("{{steps.fetch.output.nope}}", outputs)


def test_an_unknown_or_non_upstream_reference_is_a_plan_error():
    with pytest.raises(PlanError) as info:
        validate_plan(
            {
                "steps": [
                    {"key": "fetch"},
                    {
                        "key": "use",
                        "depends_on": ["fetch"],
                        "input": {"q": "{{steps.fetc.output}}", "r": "{{steps.late.output}}"},
                    },
                    {"key": "late"},
                ]
            }
        )
    text = str(info.value)
    assert 'references an unknown step "fetc"; did you mean "fetch"?' in text
    assert 'references step "late", which is not upstream of "use"; add it to depends_on' in text


async def test_a_step_runs_with_its_references_resolved(orch, tmp_path, monkeypatch):
    (tmp_path / "echo_agent.py").write_text(
        textwrap.dedent("""
        def produce(input, context, step):
            return {"items": [{"name": "alpha"}, {"name": "beta"}]}
        def echo(input, context, step):
            return input
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agents = {"p": {"kind": "python", "call": "echo_agent:produce"}, "e": {"kind": "python", "call": "echo_agent:echo"}}
    p = plan(
        [
            {"key": "fetch", "agent": "p"},
            {
                "key": "use",
                "agent": "e",
                "depends_on": ["fetch"],
                "input": {
                    "first": "{{steps.fetch.output.items[0].name}}",
                    "line": "got {{steps.fetch.output.items[1]}}",
                },
            },
            {"key": "bad", "agent": "e", "depends_on": ["fetch"], "input": "{{steps.fetch.output.items[9]}}"},
        ],
        agents=agents,
    )
    run_id = await orch.create_run(p)
    await orch.drive(run_id)
    steps = {s["key"]: s for s in (await orch.snapshot(run_id))["steps"]}
    assert steps["use"]["output"] == {"first": "alpha", "line": 'got {"name": "beta"}'}
    assert (
        steps["use"]["input"]["first"] == "{{steps.fetch.output.items[0].name}}"
    )  # the plan's input is kept as written
    assert steps["bad"]["status"] == "failed" and steps["bad"]["attempts"] == 1  # not retryable
    assert "has 2 items, so [9] does not exist" in steps["bad"]["error"]


async def test_replan_append_adds_steps_that_run_after_existing_ones(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 200}}
    run_id, task = await start(orch, plan([{"key": "a"}, {"key": "b", "depends_on": ["a"]}], agents=agents))
    await wait_event(orch, run_id, "step_started", "a")
    await orch.replan(
        run_id,
        [{"key": "c", "depends_on": ["a"]}, {"key": "d", "depends_on": ["c", "b"]}],
        mode="append",
        user="planner",
        reason="more coverage",
    )
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["a", "b", "c", "d"]
    assert all(s["status"] == "succeeded" for s in snap["steps"])
    event = next(e for e in snap["events"] if e["type"] == "run_replanned")
    assert event["payload"] == {
        "mode": "append",
        "user": "planner",
        "reason": "more coverage",
        "added": ["c", "d"],
        "removed": [],
    }


async def test_a_replan_ranks_the_steps_of_a_critical_path_run_again(orch):
    """Steps appended under ``a`` make its chain the longest: once ``first`` ends, ``a`` starts before ``b``."""
    steps = [{"key": "first", "approval": "required"}] + [
        {"key": key, "depends_on": [dep]} for key, dep in (("a", "first"), ("b", "first"), ("c", "b"))
    ]
    run_id, task = await start(orch, plan(steps, max_concurrency=1, start_order="critical_path"))
    await wait_event(orch, run_id, "step_waiting", "first")  # (held there until the replan is in)
    chain = [{"key": key, "depends_on": [dep]} for key, dep in (("x1", "a"), ("x2", "x1"), ("x3", "x2"))]
    await orch.replan(run_id, chain, mode="append", user="planner")
    await orch.approve(run_id, "first", user="ops")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    started = [e.step_key for e in await events_of(orch, run_id) if e.type == "step_started"]
    assert started[:3] == ["first", "a", "x1"]  # (x1's chain is 3, b's 2)


async def test_a_steps_context_reads_the_plan_parsed_once_until_a_replan_changes_it(orch):
    """``step_context`` (each cursor move of the dashboard) reuses the run's parsed plan while its text is
    unchanged, and reads the new plan once a replan changed it."""
    agents = {"sim": {"kind": "sim", "latency_ms": 0}}
    gated = plan([{"key": "a"}, {"key": "b", "depends_on": ["a"], "approval": "required"}], agents=agents)
    run_id, task = await start(orch, gated)
    await wait_event(orch, run_id, "step_waiting", "b")  # (b waits for its approval until the test gives it)
    assert [c["key"] for c in await orch.step_context(run_id, "b")] == ["a"]
    assert await orch.store.plan_outline(run_id) is await orch.store.plan_outline(run_id)  # (not parsed again)
    await orch.replan(run_id, [{"key": "c", "depends_on": ["a", "b"]}], mode="append", user="ops")
    assert [c["key"] for c in await orch.step_context(run_id, "c")] == ["a"]  # (b has not run)
    await orch.approve(run_id, "b", user="ops")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    assert [c["key"] for c in await orch.step_context(run_id, "c")] == ["a", "b"]


async def test_replan_replace_pending_swaps_steps_that_never_started(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 300}}
    run_id, task = await start(
        orch,
        plan(
            [{"key": "a"}, {"key": "old1", "depends_on": ["a"]}, {"key": "old2", "depends_on": ["old1"]}], agents=agents
        ),
    )
    await wait_event(orch, run_id, "step_started", "a")
    await orch.replan(run_id, {"steps": [{"key": "new", "depends_on": ["a"]}]}, mode="replace_pending", user="ops")
    assert await asyncio.wait_for(task, 10) == RunStatus.SUCCEEDED
    snap = await orch.snapshot(run_id)
    assert [s["key"] for s in snap["steps"]] == ["a", "new"]
    event = next(e for e in snap["events"] if e["type"] == "run_replanned")
    assert event["payload"]["removed"] == ["old1", "old2"]


async def test_replan_is_validated_like_a_plan_and_refused_when_not_allowed(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 300}}
    run_id, task = await start(orch, plan([{"key": "a"}, {"key": "b", "depends_on": ["a"]}], agents=agents))
    await wait_event(orch, run_id, "step_started", "a")
    with pytest.raises(PlanError) as info:
        await orch.replan(run_id, [{"key": "a"}, {"key": "x", "depends_on": ["zz"]}, {"key": "y", "agent": "nope"}])
    text = str(info.value)
    assert 'replan.steps[0].key: duplicate key "a"' in text
    assert 'replan.steps[1].depends_on[0]: unknown step "zz"' in text
    assert 'replan.steps[2].agent: unknown agent "nope"' in text
    with pytest.raises(PlanError, match="dependency cycle: x -> y -> x"):
        await orch.replan(run_id, [{"key": "x", "depends_on": ["y", "a"]}, {"key": "y", "depends_on": ["x"]}])
    await asyncio.wait_for(task, 10)
    locked = await orch.create_run(plan([{"key": "a"}], agents=agents, allow_replan=False))
    task = asyncio.create_task(orch.drive(locked))
    await wait_event(orch, locked, "step_started", "a")
    with pytest.raises(TransitionError, match="allow_replan: false"):
        await orch.replan(locked, [{"key": "b"}])
    await asyncio.wait_for(task, 10)


async def test_feedback_on_finished_steps_is_stored_and_summarised_per_agent(orch):
    agents = {
        "good": {"kind": "sim", "latency_ms": 0, "tokens": [5, 5]},
        "bad": {"kind": "sim", "latency_ms": 0, "fail_rate": 1},
    }
    run_id = await orch.create_run(
        plan(
            [
                {"key": "a", "agent": "good"},
                {"key": "b", "agent": "good"},
                {"key": "c", "agent": "bad", "max_attempts": 1},
                {"key": "d", "agent": "good", "depends_on": ["c"]},
            ],
            agents=agents,
        )
    )
    await orch.drive(run_id)
    await orch.feedback(run_id, "a", "up", comment="crisp", category="quality", user="ann")
    await orch.feedback(run_id, "b", "down", user="ann")
    await orch.feedback(run_id, "b", "up", user="bo")
    await orch.feedback(run_id, "c", "down", category="wrong")
    with pytest.raises(TransitionError, match='step "d" is skipped; only a finished'):
        await orch.feedback(run_id, "d", "up")
    snap = await orch.snapshot(run_id)
    assert snap["feedback"][0] == {
        "step": "a",
        "agent": "good",
        "rating": "up",
        "comment": "crisp",
        "category": "quality",
        "user": "ann",
        "created_at": snap["feedback"][0]["created_at"],
    }
    assert snap["agents"]["good"]["feedback"] == {"up": 2, "down": 1, "rate": 0.6667}
    assert snap["agents"]["bad"] == {
        "attempts": 1,
        "failures": 1,
        "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "cost_usd": 0.0,
        "unpriced_attempts": 0,
        "feedback": {"up": 0, "down": 1, "rate": 0.0},
    }
    assert snap["agents"]["good"]["tokens"]["total"] == 20
    assert any(e["type"] == "step_feedback" for e in snap["events"])


async def test_one_span_per_attempt_and_otlp_export(orch):
    agents = {"sim": {"kind": "sim", "latency_ms": 0, "tokens": [3, 2], "fail_times": 1}}
    run_id = await orch.create_run(plan([{"key": "a"}], agents=agents))
    await orch.drive(run_id)
    spans = (await orch.snapshot(run_id))["spans"]
    assert [(s["step"], s["attempt"], s["status"], s["tokens"]["total"]) for s in spans] == [
        ("a", 1, "failed", 5),
        ("a", 2, "succeeded", 5),
    ]
    assert spans[0]["error"].startswith("simulated failure")
    whole, lighter = await orch.snapshot(run_id), await orch.snapshot(run_id, spans=False, events=False)
    assert "spans" not in lighter and "events" not in lighter  # (the dashboard folds events; shows no spans)
    assert lighter == {k: v for k, v in whole.items() if k not in ("spans", "events")}
    assert list(whole) == ["run", "plan", "proposal", "steps", "spans", "feedback", "agents", "tool_calls", "events"]
    otlp = await orch.export_otlp(run_id)
    out = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]
    root, first, second = out
    assert len(root["traceId"]) == 32 and len(root["spanId"]) == 16 and "parentSpanId" not in root
    assert first["parentSpanId"] == root["spanId"] and first["traceId"] == root["traceId"]
    assert first["status"]["code"] == 2 and second["status"]["code"] == 1
    attrs = {a["key"]: a["value"] for a in second["attributes"]}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "3"} and attrs["loopdeck.attempt"] == {"intValue": "2"}
    assert int(second["endTimeUnixNano"]) >= int(second["startTimeUnixNano"]) > 0


def test_the_plan_outlines_kept_are_those_read_last():
    from core.store.records import PlanOutline
    from core.store.runs import PlanOutlines

    outlines = PlanOutlines()
    plan = '{"policy": {"context": "none"}, "steps": [{"key": "a"}, {"key": "b", "depends_on": ["a"]}]}'
    first = outlines.outline("r1", plan)
    assert first == PlanOutline({"context": "none"}, {"a": (), "b": ("a",)})
    for run in ("r2", "r3", "r4"):
        outlines.outline(run, plan)
    assert outlines.outline("r1", plan) is first  # read again: kept, and now the last read
    outlines.outline("r5", plan)  # one too many: the one read longest ago goes (r2)
    assert outlines.outline("r1", plan) is first
    assert outlines.outline("r1", '{"steps": [{"key": "c"}]}').depends_on == {"c": ()}  # another text: made again
    assert outlines.outline("r6", "") == outlines.outline("r7", "null") == PlanOutline({}, {})
