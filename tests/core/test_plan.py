"""Plan validation: every problem reported at once, each with its location."""

from __future__ import annotations

import json

import pytest

from core import PlanError, load_plan, parse_plan_text, plan_json_schema, validate_plan
from core.model.dag import find_cycle


def issues_of(data) -> list[str]:
    with pytest.raises(PlanError) as info:
        validate_plan(data)
    return [str(i) for i in info.value.issues]


def test_a_cycle_is_named_in_order():
    found = issues_of(
        {
            "steps": [
                {"key": "a", "depends_on": ["c"]},
                {"key": "b", "depends_on": ["a"]},
                {"key": "c", "depends_on": ["b"]},
            ]
        }
    )
    assert len(found) == 1
    assert "dependency cycle: a -> c -> b -> a" in found[0]
    assert found[0].startswith("steps[0].depends_on")


def test_unknown_dependency_suggests_the_closest_key():
    found = issues_of({"steps": [{"key": "fetch_data"}, {"key": "b", "depends_on": ["fetch_dta"]}]})
    assert found == ['steps[1].depends_on[0]: unknown step "fetch_dta"; did you mean "fetch_data"?']


def test_all_problems_are_reported_at_once_with_locations():
    found = issues_of(
        {
            "agents": {"coder": {"kind": "sim"}},
            "policy": {"max_concurrency": 0, "on_budget_exhausted": "explode"},
            "steps": [
                {"key": "a"},
                {"key": "a"},
                {"key": "b", "agent": "codr", "timeout_s": -1},
            ],
        }
    )
    text = "\n".join(found)
    assert "policy.max_concurrency: Input should be greater than or equal to 1" in text
    assert "policy.on_budget_exhausted:" in text
    assert 'steps[1].key: duplicate key "a" (first used at steps[0])' in text
    assert 'steps[2].agent: unknown agent "codr"; did you mean "coder"?' in text
    assert "steps[2].timeout_s:" in text
    assert len(found) == 5


def test_unknown_fields_are_errors_not_silently_ignored():
    found = issues_of({"steps": [{"key": "a", "depends": ["b"]}]})
    assert found == ["steps[0].depends: Extra inputs are not permitted"]


def test_steps_need_an_agent_when_several_exist_and_none_is_default():
    found = issues_of({"agents": {"x": {"kind": "sim"}, "y": {"kind": "sim"}}, "steps": [{"key": "a"}]})
    assert found == ["steps[0].agent: no agent named and no default_agent; choose one of x, y"]


def test_defaults_match_the_documented_policy():
    p = validate_plan({"steps": [{"key": "a"}]})
    pol = p.policy
    assert (pol.max_concurrency, pol.max_step_attempts, pol.max_context_tokens) == (5, 3, 4000)
    assert pol.allow_replan and pol.stop_on_approval_required and pol.include_step_outputs
    assert pol.on_budget_exhausted == "fail" and pol.context_summary_strategy == "last_n"
    assert pol.backoff.model_dump() == {"base_s": 1.0, "factor": 2.0, "max_s": 60.0, "jitter": True}
    assert p.steps[0].approval == "auto" and p.steps[0].dependency_policy == "all_succeeded"


def test_yaml_syntax_errors_name_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps:\n  - key: a\n    depends_on: [b\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "line 4" in str(info.value) and "not valid YAML" in str(info.value)


def test_json_plan_files_are_read_strictly(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"goal": "g", "steps": [{"key": "a"}]}))
    assert load_plan(path).goal == "g"
    path.write_text('{"steps": [}')
    with pytest.raises(PlanError, match="line 1, column 12"):
        load_plan(path)


def test_missing_file_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match="file not found"):
        load_plan(tmp_path / "nope.yaml")


def test_schema_describes_steps_and_policy():
    schema = plan_json_schema()
    assert schema["title"] == "loopdeck plan"
    step = schema["$defs"]["StepSpec"]["properties"]
    for field in (
        "key",
        "title",
        "type",
        "agent",
        "input",
        "depends_on",
        "dependency_policy",
        "approval",
        "max_attempts",
        "timeout_s",
    ):
        assert field in step
    assert "max_concurrency" in schema["$defs"]["Policy"]["properties"]


def test_a_plan_that_is_not_a_mapping_is_refused():
    with pytest.raises(PlanError, match="a plan is a mapping"):
        parse_plan_text("- just\n- a list\n")


def test_find_cycle_handles_long_chains_without_recursion():
    n = 20_000
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}
    assert find_cycle(chain) is None
    chain["s0"] = [f"s{n - 1}"]
    cycle = find_cycle(chain)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == n + 1
