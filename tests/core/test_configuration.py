"""The configuration file and the environment under every plan, harness profiles, and plan templates."""

from __future__ import annotations

import getpass
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import BadInput, Orchestrator, PlanError, RunStatus, available_templates, load_settings, resolve_plan
from core.cluster.lease import default_ttl_s
from core.config import default_token_budget
from core.locations import OTHER_SETTINGS, plain_setting
from core.model.layers import Defaults, layered
from core.model.profile import Profile
from core.notifications import targets
from core.orchestrator.base import default_user
from core.settings import Settings

CONFIG = """
db = "/from/the/file.db"
user = "file-user"
notify = ["json://hooks.example.com/t0ken"]

[policy]
max_step_attempts = 4
token_budget = 9000

[agents.writer]
kind = "sim"
latency_ms = 0
output = "from the library"

[agents.critic]
kind = "llm"
base_url = "http://127.0.0.1:9/v1"
model = "small"

[mcp_servers.fs]
command = ["python", "-m", "tests.fixtures.mcp_server"]

[[approval_rules]]
tool = "fs:*"
action = "deny"
reason = "the configuration's rule"

[profiles.careful]
description = "one at a time"
policy = { max_concurrency = 1, max_step_attempts = 6, plan_approval = "required" }

[profiles.careful.agents."*"]
temperature = 0

[profiles.careful.agents.critic]
max_tokens = 256

[profiles.big.agents.critic]
model = "large"
"""

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("LOOPDECK_CONFIG", str(path))
    for name in ("LOOPDECK_DB", "LOOPDECK_USER", "LOOPDECK_TOKEN_BUDGET", "LOOPDECK_NOTIFY"):
        monkeypatch.delenv(name, raising=False)
    return path


# -- precedence: flags, the plan, the profile, the environment, the file, the defaults ------------------


def attempts_with(config: Path, monkeypatch, *, file: bool, env: bool, profile: bool, plan: bool) -> int:
    if not file:
        config.write_text(CONFIG.replace("max_step_attempts = 4\n", ""))
    if env:
        monkeypatch.setenv("LOOPDECK_POLICY__MAX_STEP_ATTEMPTS", "5")
    else:
        monkeypatch.delenv("LOOPDECK_POLICY__MAX_STEP_ATTEMPTS", raising=False)
    data = {"steps": [{"key": "a"}], "policy": {"max_step_attempts": 7} if plan else {}}
    plan_, _ = resolve_plan(data, "test", "careful" if profile else None)
    return plan_.policy.max_step_attempts


@pytest.mark.parametrize(
    ("file", "env", "profile", "plan", "expected"),
    [
        (True, True, True, True, 7),  # the plan's own value wins
        (True, True, True, False, 6),  # then the profile's
        (True, True, False, False, 5),  # then the environment's
        (True, False, False, False, 4),  # then the file's
        (False, False, False, False, 3),  # then the built-in default
        (False, True, False, False, 5),
        (True, False, True, False, 6),
    ],
)
def test_a_policy_field_comes_from_the_highest_layer_that_sets_it(
    config, monkeypatch, file, env, profile, plan, expected
):
    assert attempts_with(config, monkeypatch, file=file, env=env, profile=profile, plan=plan) == expected


def test_db_and_user_come_from_a_flag_then_the_environment_then_the_file(config, monkeypatch):
    assert load_settings().db == "/from/the/file.db"
    assert default_user() == "file-user"
    monkeypatch.setenv("LOOPDECK_DB", "/from/the/env.db")
    monkeypatch.setenv("LOOPDECK_USER", "env-user")
    assert load_settings().db == "/from/the/env.db"
    assert default_user() == "env-user"
    assert load_settings(db="/from/the/flag.db").db == "/from/the/flag.db"


def test_the_legacy_token_budget_variable_is_the_policys_token_budget(config, monkeypatch):
    assert load_settings().policy_defaults()["token_budget"] == 9000
    monkeypatch.setenv("LOOPDECK_TOKEN_BUDGET", "123")
    assert load_settings().policy_defaults()["token_budget"] == 123


def test_without_a_file_the_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("LOOPDECK_CONFIG", raising=False)
    settings = load_settings()
    assert settings.db is None and settings.profiles == {} and settings.policy_defaults() == {}


@pytest.mark.parametrize(
    "env",
    [{}, {"LOOPDECK_DB": "/env.db", "LOOPDECK_USER": "env-user", "LOOPDECK_LEASE_S": "4"}, {"loopdeck_user": "lower"}],
)
def test_without_a_file_db_user_and_lease_are_read_as_the_settings_read_them(tmp_path, monkeypatch, env):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("LOOPDECK_CONFIG", "LOOPDECK_DB", "LOOPDECK_USER", "LOOPDECK_LEASE_S"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert plain_setting("db") == (True, settings.db)
    assert plain_setting("user") == (True, settings.user)
    assert default_user() == (settings.user or getpass.getuser())
    assert default_ttl_s() == settings.lease_s


@pytest.mark.parametrize("env", [{}, {"LOOPDECK_TOKEN_BUDGET": "1_000"}, {"LOOPDECK_POLICY__TOKEN_BUDGET": "77"}])
def test_without_a_file_the_default_token_budget_is_the_settings_one(tmp_path, monkeypatch, env):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("LOOPDECK_CONFIG", "LOOPDECK_TOKEN_BUDGET", "LOOPDECK_POLICY__TOKEN_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_token_budget() == load_settings().policy_defaults().get("token_budget")


def test_a_run_created_and_driven_with_nothing_configured_loads_no_settings(tmp_path):
    """Creating a run asks for the default budget, driving it for the URLs told about every run: with no file
    and no variable, the settings (pydantic-settings) stay unloaded."""
    code = (
        "import asyncio, sys\n"
        "from core import Orchestrator, validate_plan\n"
        "async def main():\n"
        f"    async with await Orchestrator.open({str(tmp_path / 'r.db')!r}) as orch:\n"
        "        run = await orch.create_run(validate_plan({'steps': [{'key': 'a'}]}))\n"
        "        print((await orch.drive(run)).value)\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('core.settings', 'pydantic_settings') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOPDECK_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["succeeded", "[]"], done.stdout + done.stderr


def test_the_quick_read_knows_every_other_settings_variable():
    others = {name.upper() for name in Settings.model_fields} - {"DB", "USER", "LEASE_S"}
    assert others | {"TOKEN_BUDGET"} <= OTHER_SETTINGS  # (LOOPDECK_AGENTS names the agents file)


def test_a_file_or_a_doubtful_variable_leaves_it_to_the_settings(config, tmp_path, monkeypatch):
    assert plain_setting("user") == (False, None)  # a file exists: it may set the user
    assert default_user() == "file-user"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    monkeypatch.delenv("LOOPDECK_CONFIG")
    monkeypatch.setenv("LOOPDECK_USER", "upper")
    monkeypatch.setenv("loopdeck_user", "lower")
    assert plain_setting("user") == (False, None)  # which one wins is the settings' to say
    monkeypatch.delenv("loopdeck_user")
    monkeypatch.setenv("LOOPDECK_POLICY__MAX_CONCURRENCY", "many")
    assert plain_setting("user") == (False, None)  # another setting is set: every command checks it, as before
    with pytest.raises(BadInput, match="LOOPDECK_POLICY__MAX_CONCURRENCY"):
        default_user()
    monkeypatch.delenv("LOOPDECK_POLICY__MAX_CONCURRENCY")
    monkeypatch.setenv("LOOPDECK_LEASE_S", "0")
    with pytest.raises(BadInput, match="LOOPDECK_LEASE_S='0' is not valid"):
        default_ttl_s()  # a value is checked by the settings, as before


# -- an invalid file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[policy]\nmax_concurrency = 0\n", ":2: policy.max_concurrency: Input should be greater than or equal to 1"),
        ("db = 'x'\n\n[profiles.fast]\npolicy = { max_concurency = 9 }\n", ":4: profiles.fast.policy.max_concurency"),
        ("[agents.w]\nkind = 'llm'\nmodel = 'm'\n", ":1: agents.w.base_url: Field required"),
        ("colour = 'blue'\n", ":1: colour: Extra inputs are not permitted"),
        (
            "[mcp_servers.v]\nurl = 'http://h/mcp'\nenv = { T = 's3cret' }\n",
            ":1: mcp_servers: mcp_servers.v.env.T: write ${NAME}",
        ),
        ("[policy]\nmax_concurrency = \n", ":2: not valid TOML"),
    ],
)
def test_an_invalid_file_names_its_file_line_and_field(tmp_path, monkeypatch, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    monkeypatch.setenv("LOOPDECK_CONFIG", str(path))
    with pytest.raises(BadInput) as caught:
        load_settings()
    assert f"{path}{expected}" in str(caught.value)


def test_a_file_the_variable_names_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPDECK_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(BadInput, match=r"LOOPDECK_CONFIG names .*nope\.toml, which does not exist"):
        load_settings()


def test_a_bad_variable_is_named_with_its_value(config, monkeypatch):
    monkeypatch.setenv("LOOPDECK_LEASE_S", "0")
    with pytest.raises(BadInput, match=r"LOOPDECK_LEASE_S='0' is not valid: Input should be greater than or equal"):
        load_settings()


# -- what the file puts under plans ---------------------------------------------------------------


def test_a_plan_gets_the_agents_and_servers_it_names_but_lacks_and_keeps_its_own(config):
    plan, _ = resolve_plan(
        {
            "agents": {"sim": {"kind": "sim", "latency_ms": 0, "tools": ["fs:read_note"]}},
            "steps": [{"key": "a", "agent": "writer"}, {"key": "b", "agent": "sim"}],
        }
    )
    assert plan.agents["writer"].output == "from the library"
    assert plan.agents["sim"].tools == ["fs:read_note"]  # its own
    assert "fs" in plan.mcp_servers  # its tools name fs; the configuration declares it
    # the plan's rules first, the configuration's after (the first match wins)
    assert [r.reason for r in plan.approval_rules] == ["the configuration's rule"]
    own, _ = resolve_plan({"agents": {"writer": {"kind": "sim", "output": "mine"}}, "steps": [{"key": "a"}]})
    assert own.agents["writer"].output == "mine"
    assert "critic" not in own.agents  # only what the plan names


def test_notify_urls_of_the_file_reach_every_run_but_never_the_plan(config):
    plan, _ = resolve_plan({"steps": [{"key": "a"}]})
    found, _ = targets(plan.policy)
    assert [t.url for t in found] == ["json://hooks.example.com/t0ken"]
    assert "t0ken" not in plan.model_dump_json()


async def test_the_library_agent_runs_and_the_stored_plan_holds_it(config, db_url):
    plan, _ = resolve_plan({"goal": "g", "steps": [{"key": "a", "agent": "writer"}]})
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan)
        assert await orch.drive(run_id) == RunStatus.SUCCEEDED
        snap = await orch.snapshot(run_id)
    assert snap["steps"][0]["output"] == "from the library"
    assert snap["plan"]["agents"]["writer"]["output"] == "from the library"  # a resume never re-reads the file


# -- profiles ----------------------------------------------------------------------------------------


def test_a_profile_fills_in_what_the_plan_leaves_unsaid_and_is_recorded(config):
    plan, record = resolve_plan(
        {
            "agents": {
                "critic": {"kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "m", "temperature": 0.9},
                "sim": {"kind": "sim", "latency_ms": 0},
            },
            "policy": {"max_concurrency": 3},
            "steps": [{"key": "a", "agent": "critic"}, {"key": "b", "agent": "sim"}],
        },
        profile="careful",
    )
    assert plan.policy.max_concurrency == 3  # the plan's own
    assert plan.policy.plan_approval == "required"  # the profile's
    assert plan.agents["critic"].temperature == 0.9  # the plan's own
    assert plan.agents["critic"].max_tokens == 256  # the profile's, for this agent
    assert record is not None
    assert record["name"] == "careful" and record["from"].startswith("config ")
    assert record["policy"] == {"max_concurrency": 1, "max_step_attempts": 6, "plan_approval": "required"}
    assert record["kept_from_plan"] == {"max_concurrency": 3}
    assert record["agents"] == {"critic": {"max_tokens": 256}}


def test_a_plans_own_profile_wins_over_the_configurations_of_that_name(config):
    plan, record = resolve_plan(
        {
            "profiles": {"careful": {"policy": {"max_concurrency": 2}}},
            "steps": [{"key": "a"}],
        },
        profile="careful",
    )
    assert plan.policy.max_concurrency == 2 and record is not None and record["from"] == "plan"
    assert plan.policy.plan_approval == "auto"  # nothing of the configuration's careful


def test_an_unknown_profile_names_the_closest(config):
    with pytest.raises(BadInput, match=r'unknown profile "carefull".*did you mean "careful"'):
        resolve_plan({"steps": [{"key": "a"}]}, profile="carefull")


def test_a_profile_setting_a_field_the_agents_kind_lacks_is_refused():
    defaults = Defaults(profiles={"p": Profile.model_validate({"agents": {"sim": {"model": "big"}}})})
    with pytest.raises(PlanError, match='agent "sim" is a sim agent, which has no model'):
        layered({"agents": {"sim": {"kind": "sim"}}, "steps": [{"key": "a"}]}, defaults, "p")
    # "*" passes over agents whose kind lacks the field
    defaults = Defaults(profiles={"p": Profile.model_validate({"agents": {"*": {"model": "big"}}})})
    data, record = layered({"agents": {"sim": {"kind": "sim"}}, "steps": [{"key": "a"}]}, defaults, "p")
    assert "model" not in data["agents"]["sim"] and record is not None and record["agents"] == {}


async def test_the_run_records_its_profile(config, db_url):
    plan, record = resolve_plan({"goal": "g", "steps": [{"key": "a"}]}, profile="careful")
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan, profile=record)
        snap = await orch.snapshot(run_id)
        listed = (await orch.runs(1))[0]
    assert snap["run"]["profile"]["name"] == "careful"
    assert snap["run"]["profile"]["policy"]["max_concurrency"] == 1
    assert snap["run"]["status"] == "awaiting_plan_approval"  # the profile's plan_approval, applied
    assert listed["profile"] == "careful"


# -- templates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plan-execute-verify", "research-draft-review", "fix-until-green"])
async def test_each_built_in_template_is_a_valid_plan_that_runs_on_sim_agents(name, db_url):
    templates, problems = available_templates()
    assert problems == []
    text = templates[name].render('Fix the "login" bug')
    from core import parse_plan_data

    data = parse_plan_data(text, name)
    assert data["goal"] == 'Fix the "login" bug'
    for agent in data["agents"].values():
        agent["latency_ms"] = 0  # the same sim agents, without the wait
    plan, _ = resolve_plan(data, name)
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan)
        task = orch.drive(run_id)
        if any(s.approval == "required" for s in plan.steps):  # research-draft-review's human gate
            import asyncio

            from tests.core.helpers import wait_event

            driving = asyncio.ensure_future(task)
            await wait_event(orch, run_id, "step_waiting", "publish")
            await orch.approve(run_id, "publish", user="editor")
            status = await driving
        else:
            status = await task
        snap = await orch.snapshot(run_id)
    assert status == RunStatus.SUCCEEDED, snap["run"]["reason"]
    verdicts = snap["run"]["result"]["evidence"]["verifications"]
    assert verdicts and set(verdicts.values()) == {"passed"}  # each has a check, and it passed


async def test_fix_until_green_goes_round_again_until_the_checks_pass(db_url):
    """The loop as the template describes it: the checks fail in round 1, triage answers with the next
    round as a replan (replacing the pending verify), round 2 passes, the verification passes."""
    templates, _ = available_templates()
    from core import parse_plan_data

    data = parse_plan_data(templates["fix-until-green"].render("make the tests pass"), "t")
    data["agents"] = {
        "fixer": {"kind": "sim", "latency_ms": 0},
        "checker": {"kind": "python", "call": "tests.fixtures.agents:checks_failing_in_round_one"},
        "triage": {"kind": "python", "call": "tests.fixtures.agents:triage_next_round"},
    }
    next(s for s in data["steps"] if s["key"] == "triage_1")["agent"] = "triage"
    plan, _ = resolve_plan(data, "t")
    async with await Orchestrator.open(db_url) as orch:
        run_id = await orch.create_run(plan)
        status = await orch.drive(run_id)
        snap = await orch.snapshot(run_id)
    keys = {s["key"]: s["status"] for s in snap["steps"]}
    assert status == RunStatus.SUCCEEDED, snap["run"]["reason"]
    rounds = ["fix_1", "checks_1", "triage_1", "fix_2", "checks_2", "triage_2", "verify"]
    assert keys == dict.fromkeys(rounds, "succeeded")
    assert snap["steps"][1]["output"]["passed"] is False  # round 1 really failed


def test_a_package_adds_templates_and_a_broken_one_is_reported(tmp_path, monkeypatch):
    (tmp_path / "acme_plans.py").write_text(
        "TRIAGE = '# triage: sort the inbox\\ngoal: \"{{goal}}\"\\nsteps:\\n  - key: sort\\n'\n"
        "def mapping():\n    return {'goal': '{{goal}}', 'steps': [{'key': 'one'}]}\n"
    )
    dist = tmp_path / "acme_plans-3.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plans\nVersion: 3.1\n")
    (dist / "entry_points.txt").write_text(
        "[loopdeck.templates]\ntriage = acme_plans:TRIAGE\nmapped = acme_plans:mapping\n"
        "broken = acme_plans:MISSING\nplan-execute-verify = acme_plans:TRIAGE\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    templates, problems = available_templates()
    assert templates["triage"].origin == "package acme-plans 3.1"
    assert templates["triage"].description == "sort the inbox"
    assert resolve_plan(parse_yaml(templates["triage"].render("inbox zero")))[0].goal == "inbox zero"
    mapped = resolve_plan(parse_yaml(templates["mapped"].render("a mapped goal")))[0]
    assert mapped.steps[0].key == "one" and mapped.goal == "a mapped goal"
    assert templates["plan-execute-verify"].origin == "built in"
    assert any('"broken"' in p and "cannot be loaded" in p for p in problems)
    assert any("hidden by the built-in" in p for p in problems)


def parse_yaml(text: str) -> dict:
    from core import parse_plan_data

    return parse_plan_data(text, "t")


def test_a_profile_outranks_the_files_values_of_a_library_agent_but_not_the_plans_own(config):
    plan, _ = resolve_plan({"steps": [{"key": "a", "agent": "critic"}]}, profile="big")
    assert plan.agents["critic"].model == "large"  # the profile over the file
    own = {"critic": {"kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "mine"}}
    plan, _ = resolve_plan({"agents": own, "steps": [{"key": "a", "agent": "critic"}]}, profile="big")
    assert plan.agents["critic"].model == "mine"  # the plan over the profile


def test_a_child_plan_on_its_parents_agents_gets_the_library_agents_it_names(config):
    plan, _ = resolve_plan(
        {"steps": [{"key": "research", "type": "sub_agent", "steps": [{"key": "dig", "agent": "writer"}]}]}
    )
    assert plan.agents["writer"].output == "from the library"


def test_a_bad_variable_is_blamed_on_the_variable_even_when_the_file_sets_the_same_table(config, monkeypatch):
    monkeypatch.setenv("LOOPDECK_POLICY__MAX_STEP_ATTEMPTS", "0")
    with pytest.raises(BadInput, match=r"^LOOPDECK_POLICY__MAX_STEP_ATTEMPTS='0' is not valid"):
        load_settings()
    monkeypatch.setenv("LOOPDECK_POLICY__MAX_STEP_ATTEMPTS", "2")
    monkeypatch.setenv("LOOPDECK_POLICY", "not json")  # the wrong shape altogether: said, never a traceback
    with pytest.raises(BadInput, match="cannot read the LOOPDECK_ variables"):
        load_settings()


def test_variables_cannot_set_the_files_tables_and_agent_names_survive_in_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("LOOPDECK_CONFIG", raising=False)
    monkeypatch.setenv("LOOPDECK_AGENTS__W__KIND", "sim")
    assert load_settings().agents == {}
    path = tmp_path / "c.toml"
    path.write_text("[agents.llm]\nkind = 'sim'\nfail_rate = 2\n")
    monkeypatch.setenv("LOOPDECK_CONFIG", str(path))
    with pytest.raises(BadInput, match=r"c\.toml:3: agents\.llm\.fail_rate: Input should be less than or equal to 1"):
        load_settings()


def test_the_readmes_configuration_example_is_valid_and_means_what_it_says(tmp_path, monkeypatch):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "config.toml"
    path.write_text(example)
    monkeypatch.setenv("LOOPDECK_CONFIG", str(path))
    for name in ("LOOPDECK_DB", "LOOPDECK_USER", "LOOPDECK_TOKEN_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.policy_defaults()["max_concurrency"] == 3 and settings.theme == "textual-light"
    plan, record = resolve_plan({"steps": [{"key": "a", "agent": "writer"}]}, profile="careful")
    assert plan.agents["writer"].temperature == 0 and plan.policy.plan_approval == "required"
    assert record is not None and record["kept_from_plan"] == {}
