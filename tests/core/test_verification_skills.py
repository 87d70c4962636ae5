"""Verification steps (shell, python, llm verdicts), require_verification, and skills."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

import pytest

from core import PlanError, validate_plan
from core.model.skills import available_skills
from tests.chat_server import ChatServer
from tests.conftest import plan
from tests.core.helpers import wait_event


async def run(orch, p) -> dict:
    run_id = await orch.create_run(p)
    await orch.drive(run_id)
    return await orch.snapshot(run_id)


def step(snap: dict, key: str) -> dict:
    return next(s for s in snap["steps"] if s["key"] == key)


SHELL = {"sh": {"kind": "shell"}, "sim": {"kind": "sim", "latency_ms": 0}}


async def test_shell_verifier_passes_by_exit_code_zero(orch):
    snap = await run(
        orch,
        plan(
            [
                {"key": "work", "agent": "sim"},
                {
                    "key": "check",
                    "type": "verification",
                    "agent": "sh",
                    "depends_on": ["work"],
                    "input": {"argv": [sys.executable, "-c", "print('3 tests passed')"]},
                },
            ],
            SHELL,
            require_verification=True,
        ),
    )
    assert snap["run"]["status"] == "succeeded"
    assert step(snap, "check")["output"] == {"passed": True, "reason": "3 tests passed"}


async def test_a_failed_shell_check_fails_the_run_saying_which_check_and_is_not_retried(orch):
    snap = await run(
        orch,
        plan(
            [
                {"key": "work", "agent": "sim"},
                {
                    "key": "tests",
                    "type": "verification",
                    "agent": "sh",
                    "depends_on": ["work"],
                    "input": {"argv": [sys.executable, "-c", "import sys; sys.exit('2 tests failed')"]},
                },
            ],
            {**SHELL, "sh": {"kind": "shell", "breaker": {"failure_threshold": 1}}},
            max_step_attempts=3,
        ),
    )
    check = step(snap, "tests")
    assert check["status"] == "failed" and check["attempts"] == 1  # the work has not changed: no retry
    assert snap["run"]["status"] == "failed"
    assert snap["run"]["reason"] == 'verification "tests" failed: check failed: 2 tests failed'
    # a failed check judges the work, not the agent: its breaker (threshold 1) stays closed
    assert not [e for e in snap["events"] if e["type"] == "breaker_changed"]


async def test_python_verifier_by_return_value(orch):
    agents = {"py": {"kind": "python", "call": "tests.fixtures.agents:verdict_from_input"}}
    ok = await run(
        orch,
        plan(
            [
                {"key": "v1", "type": "verification", "input": {"answer": True}},
                {"key": "v2", "type": "verification", "input": {"answer": {"passed": True, "reason": "all good"}}},
            ],
            agents,
            require_verification=True,
        ),
    )
    assert ok["run"]["status"] == "succeeded"
    assert step(ok, "v2")["output"] == {"passed": True, "reason": "all good"}
    bad = await run(
        orch,
        plan(
            [{"key": "v", "type": "verification", "input": {"answer": {"passed": False, "reason": "totals differ"}}}],
            agents,
        ),
    )
    assert bad["run"]["reason"] == 'verification "v" failed: check failed: totals differ'
    odd = await run(orch, plan([{"key": "v", "type": "verification", "input": {"answer": "yes"}}], agents))
    assert "a verifier answers true/false" in step(odd, "v")["error"]


async def test_llm_verifier_by_structured_verdict(orch):
    server = ChatServer().start()
    try:
        server.answer('{"passed": false, "reason": "the summary omits the 2023 figures"}')
        p = plan(
            [{"key": "judge", "type": "verification", "input": {"claim": "summary is complete"}}],
            {"llm": {"kind": "llm", "base_url": server.url, "model": "m"}},
        )
        snap = await run(orch, p)
        request = server.requests[0].json
    finally:
        server.stop()
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["passed", "reason"]
    assert snap["run"]["reason"] == 'verification "judge" failed: check failed: the summary omits the 2023 figures'


async def test_require_verification_needs_a_check_that_passed(orch):
    none = await run(orch, plan([{"key": "a"}], require_verification=True))
    assert none["run"]["status"] == "failed"
    assert none["run"]["reason"] == "require_verification is set, but the plan has no verification step"

    run_id = await orch.create_run(
        plan(
            [
                {"key": "a"},
                {"key": "gate", "approval": "required", "depends_on": ["a"]},
                {"key": "check", "type": "verification", "depends_on": ["gate"], "dependency_policy": "allow_skipped"},
                {"key": "final", "depends_on": ["check"], "dependency_policy": "allow_skipped"},
            ],
            require_verification=True,
        )
    )
    await orch.skip(run_id, "check", reason="no time")  # offline: nobody drives it yet
    task = asyncio.create_task(orch.drive(run_id))
    await wait_event(orch, run_id, "step_waiting", "gate")
    await orch.approve(run_id, "gate")
    await task
    snap = await orch.snapshot(run_id)
    assert snap["run"]["status"] == "failed"
    assert snap["run"]["reason"].startswith('require_verification: verification "check" did not pass (it is skipped')


async def test_skills_from_the_plan_map(orch):
    snap = await run(
        orch,
        validate_plan(
            {
                "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
                "skills": {"count": "tests.fixtures.agents:word_count", "shout": "tests.fixtures.agents:shout"},
                "steps": [
                    {"key": "c", "type": "skill", "skill": "count", "input": {"text": "one two three"}},
                    {"key": "s", "type": "skill", "skill": "shout", "input": {"text": "hey"}},
                ],
            }
        ),
    )
    assert step(snap, "c")["output"] == {"words": 3}
    assert step(snap, "s")["output"] == "HEY"


def test_unknown_skills_and_misplaced_skill_fields_are_plan_errors():
    with pytest.raises(PlanError) as err:
        validate_plan(
            {
                "skills": {"count": "tests.fixtures.agents:word_count", "bad": "no colon"},
                "steps": [{"key": "a", "type": "skill", "skill": "cuont"}, {"key": "b", "skill": "count"}],
            }
        )
    text = str(err.value)
    assert 'steps[0].skill: unknown skill "cuont"; did you mean "count"?' in text
    assert "steps[1].skill: only a step of type skill calls a skill" in text
    assert "skills.bad: a skill is module:function" in text


@pytest.fixture
def installed_skill_package(tmp_path: Path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) that registers a skill entry point."""
    dist = tmp_path / "acme_skills-1.2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-skills\nVersion: 1.2.0\n")
    (dist / "entry_points.txt").write_text("[loopdeck.skills]\nwords = tests.fixtures.agents:word_count\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


async def test_skills_from_an_installed_package_entry_point(orch, installed_skill_package):
    skills = available_skills({})
    assert skills["words"].target == "tests.fixtures.agents:word_count"
    assert skills["words"].origin == "package acme-skills 1.2.0"
    snap = await run(
        orch, validate_plan({"steps": [{"key": "w", "type": "skill", "skill": "words", "input": {"text": "a b"}}]})
    )
    assert step(snap, "w")["output"] == {"words": 2}
    # the plan's own map wins over an installed skill of the same name
    assert available_skills({"words": "tests.fixtures.agents:shout"})["words"].origin == "plan"
